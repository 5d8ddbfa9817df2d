// A PassthroughFs of a temporary directory, mounted in-process.
//
// Tests run once with kernel passthrough (when the kernel and our
// privileges allow it) and once with I/O served by the daemon. Next to the
// source sits `twin`, an unmounted directory the tests give the same
// history, so an operation's result and errno through the mount can be
// compared with the same operation on a plain directory.

#ifndef LAMINA_INTEGRATION_PASSTHROUGH_PASSTHROUGH_FIXTURE_H_
#define LAMINA_INTEGRATION_PASSTHROUGH_PASSTHROUGH_FIXTURE_H_

#include <dirent.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/fuse_server.h"
#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"
#include "passthrough/passthrough_fs.h"

namespace lamina::testing {

struct PassthroughParam {
  PassthroughMode mode;
  const char* name;
};

inline void PrintTo(const PassthroughParam& param, std::ostream* os) {
  *os << param.name;
}

inline std::string ParamName(const ::testing::TestParamInfo<PassthroughParam>& info) {
  return info.param.name;
}

// The result of one syscall: its return value and errno when it failed.
struct Outcome {
  long rc;
  int error;
  bool operator==(const Outcome&) const = default;
  friend std::ostream& operator<<(std::ostream& os, const Outcome& o) {
    return os << "rc=" << o.rc << " errno=" << o.error;
  }
};
inline Outcome Call(long rc) {
  return Outcome{rc < 0 ? -1 : rc, rc < 0 ? errno : 0};
}

// How to mount, beyond the passthrough mode.
struct MountSetup {
  double timeout = 0;  // entry, attribute and negative timeouts
  std::optional<size_t> max_nodes;
  std::optional<size_t> max_cached_nodes;
  // A tmpfs at the source: large trees are then made and removed without
  // disk I/O, which other jobs on the machine can slow down a hundredfold.
  bool tmpfs_source = false;
  // A loop-mounted ext4 at the source instead (MountExt4Image): it gives a
  // freed inode number to the next new file at once.
  bool ext4_source = false;
  std::vector<std::string> mount_options = {"default_permissions", "allow_other"};
  // PassthroughOptions::posix_acl; false (and no default_permissions above)
  // leaves every check to the daemon, as an embedder may choose.
  bool posix_acl = true;
};

class MountedPassthrough {
 public:
  explicit MountedPassthrough(PassthroughMode mode, double timeout = 0)
      : MountedPassthrough(mode, WithTimeout(timeout)) {}
  MountedPassthrough(PassthroughMode mode, MountSetup setup) {
    chmod(dir_.path().c_str(), 0755);  // other users reach the mount too
    source_ = dir_.Subdir("source");
    twin_ = dir_.Subdir("twin");
    mountpoint_ = dir_.Subdir("mnt");
    // TempDir detaches it again.
    if (setup.tmpfs_source &&
        mount("lamina-test-tmpfs", source_.c_str(), "tmpfs", 0, "mode=0755") != 0) {
      throw std::runtime_error("mounting a tmpfs at the source failed");
    }
    std::string error;
    if (setup.ext4_source && !MountExt4Image(source_, 64, &error)) {
      throw std::runtime_error(error);
    }
    PassthroughOptions options;
    options.source = source_;
    options.passthrough = mode;
    options.entry_timeout = options.attr_timeout = options.negative_timeout = setup.timeout;
    options.max_nodes = setup.max_nodes;
    if (setup.max_cached_nodes) options.max_cached_nodes = *setup.max_cached_nodes;
    // On by default, as in `laminafs passthrough`: the kernel checks
    // permissions, with ACLs, whatever the mount options.
    options.posix_acl = setup.posix_acl;
    auto fs = PassthroughFs::Create(options);
    if (!fs.ok()) throw std::runtime_error(fs.status().ToString());
    fs_ = std::move(*fs);
    ServerOptions server_options;
    server_options.mount_options = std::move(setup.mount_options);
    server_options.mount_options.push_back("fsname=lamina-passthrough-test");
    auto server = FuseServer::Start(*fs_, mountpoint_, server_options);
    if (!server.ok()) throw std::runtime_error(server.status().ToString());
    server_ = std::move(*server);
  }
  // The server unmounts and joins before the filesystem goes away.
  ~MountedPassthrough() { server_.reset(); }

  const std::string& source() const { return source_; }
  const std::string& twin() const { return twin_; }
  const std::string& mnt() const { return mountpoint_; }
  PassthroughFs& fs() { return *fs_; }
  FuseServer& server() { return *server_; }

 private:
  static MountSetup WithTimeout(double timeout) {
    MountSetup setup;
    setup.timeout = timeout;
    return setup;
  }

  TempDir dir_{"lamina-pt"};
  std::string source_, twin_, mountpoint_;
  std::unique_ptr<PassthroughFs> fs_;
  std::unique_ptr<FuseServer> server_;
};

class PassthroughTest : public ::testing::TestWithParam<PassthroughParam> {
 protected:
  void SetUp() override {
    umask(022);
    mount_ = std::make_unique<MountedPassthrough>(GetParam().mode, Timeout());
  }
  void TearDown() override { mount_.reset(); }
  virtual double Timeout() const { return 0; }

  std::string Mnt(const std::string& rel = "") const { return Join(mount_->mnt(), rel); }
  std::string Src(const std::string& rel = "") const { return Join(mount_->source(), rel); }
  std::string Twin(const std::string& rel = "") const { return Join(mount_->twin(), rel); }

  // Runs `op` under the mount and under the twin; both outcomes must match.
  void ExpectSame(const std::function<long(const std::string& root)>& op) {
    Outcome mounted = Call(op(mount_->mnt()));
    Outcome plain = Call(op(mount_->twin()));
    EXPECT_EQ(mounted, plain);
  }

  std::unique_ptr<MountedPassthrough> mount_;

 private:
  static std::string Join(const std::string& a, const std::string& b) {
    return b.empty() ? a : a + "/" + b;
  }
};

#define LAMINA_PASSTHROUGH_PARAMS                                       \
  ::testing::Values(PassthroughParam{PassthroughMode::kAuto, "Kernel"}, \
                    PassthroughParam{PassthroughMode::kOff, "Daemon"})

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_PASSTHROUGH_PASSTHROUGH_FIXTURE_H_

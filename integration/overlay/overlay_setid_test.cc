// Writes drop set-user-ID and set-group-ID exactly when the kernel drops
// them, with FUSE passthrough on or off and over either transport.
//
// A writable set-user-ID file that keeps its bit after someone else
// rewrote it is a privilege escalation. With FUSE passthrough the write
// never reaches the daemon (the kernel writes the backing file with the
// daemon's credentials, which may keep set-ID bits); the kernel asks the
// daemon first, with a SETATTR that changes nothing (file_remove_privs
// under HANDLE_KILLPRIV_V2). Each case runs on Lamina, on kernel overlayfs
// over identical layers, and on a plain directory.

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

constexpr uid_t kStranger = 65534;
constexpr uid_t kOwner = 1000;

// Set-ID modes and who writes.
struct Case {
  const char* name;
  mode_t mode;
  uid_t writer;
};
const Case kCases[] = {
    {"suid-by-stranger", 04777, kStranger},
    {"sgid-x-by-stranger", 02777, kStranger},
    {"sgid-nox-by-stranger", 02767, kStranger},
    {"both-by-owner", 06777, kOwner},
    {"suid-by-root", 04777, 0},
};

// Writes one byte as `uid` (group = uid, no supplementary groups): the
// mode fstat saw on the descriptor after the write, then stat's.
std::string WriteAs(uid_t uid, const std::string& path) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return "pipe";
  pid_t pid = fork();
  if (pid == 0) {
    close(pipe_fds[0]);
    if (uid != 0 && (setgroups(0, nullptr) != 0 || setresgid(uid, uid, uid) != 0 ||
                     setresuid(uid, uid, uid) != 0)) {
      _exit(1);
    }
    char out[128];
    int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    struct stat st {};
    int n = 0;
    if (fd < 0) {
      n = snprintf(out, sizeof(out), "open:%s", strerrorname_np(errno));
    } else if (write(fd, "+", 1) != 1) {
      n = snprintf(out, sizeof(out), "write:%s", strerrorname_np(errno));
    } else {
      fstat(fd, &st);
      n = snprintf(out, sizeof(out), "fstat=%o", st.st_mode & 07777);
    }
    if (write(pipe_fds[1], out, static_cast<size_t>(n)) != n) _exit(1);
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string result;
  char buf[128];
  ssize_t n;
  while ((n = read(pipe_fds[0], buf, sizeof(buf))) > 0) result.append(buf, static_cast<size_t>(n));
  close(pipe_fds[0]);
  waitpid(pid, nullptr, 0);
  struct stat st {};
  stat(path.c_str(), &st);
  char mode[32];
  snprintf(mode, sizeof(mode), " stat=%o", st.st_mode & 07777);
  return result + mode;
}

enum class Transport { kDevFuse, kIoUring };
using Param = std::tuple<Transport, bool /*passthrough*/>;

class OverlaySetIdTest : public OverlayPair, public ::testing::WithParamInterface<Param> {
 protected:
  void SetUp() override {
    if (std::get<Transport>(GetParam()) == Transport::kIoUring) {
      uring_ = std::make_unique<FuseUringSetting>(true);
      if (!uring_->supported()) GTEST_SKIP() << uring_->unsupported_reason();
      ASSERT_TRUE(uring_->applied()) << "cannot set enable_uring";
      lamina_io_uring_ = true;
    }
    lamina_options_.passthrough =
        std::get<bool>(GetParam()) ? PassthroughMode::kAuto : PassthroughMode::kOff;
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);  // other users reach the mounts
    plain_ = dir_.Subdir("plain");
    std::vector<std::string> lower = {"d lower"}, upper = {"d upper"};
    for (const Case& c : kCases) {
      lower.push_back(std::string("f lower/") + c.name + " data");
      upper.push_back(std::string("f upper/") + c.name + " data");
    }
    BuildLayers({lower}, upper);
    mkdir((plain_ + "/lower").c_str(), 0755);
    mkdir((plain_ + "/upper").c_str(), 0755);
    // Where each case's files are: (layer root, directory in it).
    std::vector<std::pair<std::string, const char*>> places = {{set_[0] + "/lower0", "/lower/"},
                                                               {set_[0] + "/upper", "/upper/"},
                                                               {set_[1] + "/lower0", "/lower/"},
                                                               {set_[1] + "/upper", "/upper/"},
                                                               {plain_, "/lower/"},
                                                               {plain_, "/upper/"}};
    for (const auto& [root, dir] : places) {
      for (const Case& c : kCases) {
        const std::string path = root + dir + c.name;
        int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
        close(fd);
        ASSERT_EQ(chown(path.c_str(), c.writer == kOwner ? kOwner : 0, 0), 0);
        ASSERT_EQ(chmod(path.c_str(), c.mode), 0);
      }
    }
    MountBoth();
    if (lamina_io_uring_) {
      ASSERT_NE(server_->io_uring(), nullptr);
      ASSERT_TRUE(server_->io_uring()->active()) << "the kernel did not take the rings";
    }
  }

  std::string plain_;
  std::unique_ptr<FuseUringSetting> uring_;
};

TEST_P(OverlaySetIdTest, WritesDropSetIdBitsAsThePlainDirectoryAndTheKernelDo) {
  for (const char* dir : {"/lower/", "/upper/"}) {
    for (const Case& c : kCases) {
      const std::string name = std::string(dir) + c.name;
      SCOPED_TRACE(name);
      const std::string plain = WriteAs(c.writer, plain_ + name);
      const std::string kernel = WriteAs(c.writer, kernel_root() + name);
      const std::string lamina = WriteAs(c.writer, lamina_root() + name);
      EXPECT_EQ(kernel, plain) << "kernel overlayfs differs from the plain directory";
      EXPECT_EQ(lamina, kernel) << "Lamina differs from kernel overlayfs";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, OverlaySetIdTest,
                         ::testing::Combine(::testing::Values(Transport::kDevFuse,
                                                              Transport::kIoUring),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           std::string name = std::get<Transport>(info.param) == Transport::kIoUring
                                                  ? "IoUring"
                                                  : "DevFuse";
                           return name + (std::get<bool>(info.param) ? "Passthrough" : "Daemon");
                         });

}  // namespace
}  // namespace lamina::testing

// Layers written by the other overlays, mounted by Lamina: an upper that
// kernel overlayfs or fuse-overlayfs wrote (whiteouts, opaque directories,
// redirects, copied-up files, hard links) must show the view its writer
// showed, both as Lamina's upper and as one of its read-only lowers.

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"
#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

using namespace std::chrono_literals;

const std::vector<std::string> kBase = {
    "f etc/config v1",
    "f etc/hostname base",
    "f etc/motd hello",
    "f usr/lib/libfoo.so foo-1",
    "l usr/lib/libfoo.so.1 libfoo.so",
    "f usr/share/doc/pkg/README readme",
    "f usr/share/doc/pkg/COPYING copying",
    "f var/cache/pkgcache cache",
    "f var/cache/keep keep",
    "f opt/app/bin/tool tool-1",
    "f opt/app/data data-1",
    "f srv/www/index.html index",
    "d home",
};

// What a build step or a container typically does to its rootfs. Calls the
// writer refuses (fuse-overlayfs and directory renames) are part of the
// view it produces, so outcomes are recorded, not required.
std::string Workload(const std::string& r) {
  std::string out;
  auto note = [&](const std::string& what, int rc) { out += what + ":" + Outcome(rc) + " "; };
  std::error_code error;
  std::filesystem::remove_all(r + "/usr/share/doc", error);  // a lower tree: whiteouts
  note("rm-doc", error ? -1 : 0);
  note("unlink", unlink((r + "/var/cache/pkgcache").c_str()));
  int fd = open((r + "/etc/config").c_str(), O_WRONLY | O_APPEND);  // data copy-up
  note("append", fd >= 0 && write(fd, "+v2", 3) == 3 ? 0 : -1);
  if (fd >= 0) close(fd);
  note("chmod", chmod((r + "/etc/hostname").c_str(), 0600));  // metadata copy-up
  note("setxattr", setxattr((r + "/etc/motd").c_str(), "user.note", "x", 1, 0));
  note("link", link((r + "/usr/lib/libfoo.so").c_str(), (r + "/usr/lib/libfoo-compat.so").c_str()));
  note("mkdir", mkdir((r + "/home/user").c_str(), 0750));
  WriteFile(r + "/home/user/notes", "notes");
  note("link-new", link((r + "/home/user/notes").c_str(), (r + "/home/user/notes.bak").c_str()));
  note("symlink", symlink("../opt/app/bin/tool", (r + "/home/tool").c_str()));
  note("mkfifo", mkfifo((r + "/home/fifo").c_str(), 0600));
  // rmdir + mkdir over a merged directory: opaque.
  std::filesystem::remove_all(r + "/srv/www", error);
  note("rm-www", error ? -1 : 0);
  note("mkdir-www", mkdir((r + "/srv/www").c_str(), 0755));
  WriteFile(r + "/srv/www/new.html", "new");
  note("rename-dir", rename((r + "/opt/app").c_str(), (r + "/opt/app2").c_str()));
  note("rename-file", rename((r + "/etc/motd").c_str(), (r + "/etc/motd.old").c_str()));
  return out;
}

// Kernel overlayfs or fuse-overlayfs, mounted read-write on a set of layers.
class ForeignWriter {
 public:
  virtual ~ForeignWriter() = default;
  virtual bool Mount(const std::string& lower, const std::string& upper, const std::string& work,
                     const std::string& mnt) = 0;
  virtual void Unmount() = 0;
  virtual std::string output() const { return ""; }
};

class KernelWriter : public ForeignWriter {
 public:
  ~KernelWriter() override { Unmount(); }
  bool Mount(const std::string& lower, const std::string& upper, const std::string& work,
             const std::string& mnt) override {
    mnt_ = mnt;
    const std::string options = "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work +
                                ",redirect_dir=on,index=off";
    mounted_ = mount("overlay", mnt.c_str(), "overlay", 0, options.c_str()) == 0;
    return mounted_;
  }
  void Unmount() override {
    if (mounted_) umount2(mnt_.c_str(), 0);
    mounted_ = false;
  }

 private:
  std::string mnt_;
  bool mounted_ = false;
};

class FuseOverlayfsWriter : public ForeignWriter {
 public:
  ~FuseOverlayfsWriter() override { Unmount(); }
  bool Mount(const std::string& lower, const std::string& upper, const std::string& work,
             const std::string& mnt) override {
    mnt_ = mnt;
    daemon_ = std::make_unique<ChildProcess>(std::vector<std::string>{
        "/usr/bin/fuse-overlayfs", "-f", "-o",
        "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work, mnt});
    return WaitUntil([&] { return IsFuseMounted(mnt); }, 10s);
  }
  void Unmount() override {
    if (daemon_ == nullptr) return;
    if (IsFuseMounted(mnt_)) umount2(mnt_.c_str(), 0);
    daemon_->Wait(10s);
    daemon_.reset();  // kills and reaps it if it did not end
  }
  std::string output() const override { return daemon_ ? daemon_->output() : ""; }

 private:
  std::string mnt_;
  std::unique_ptr<ChildProcess> daemon_;
};

bool HaveFuseOverlayfs() {
  return access("/usr/bin/fuse-overlayfs", X_OK) == 0;
}

// The writer's view after the workload, then Lamina's on the same layers.
void CheckLaminaReadsWhatTheWriterWrote(ForeignWriter& writer, const std::string& name) {
  TempDir dir("lamina-foreign");
  const std::string lower = dir.path() + "/lower";
  BuildLayer(lower, kBase);
  const std::string upper = dir.Subdir("upper");
  const std::string work = dir.Subdir("work");
  const std::string mnt = dir.Subdir("mnt");

  ASSERT_TRUE(writer.Mount(lower, upper, work, mnt))
      << name << " did not mount: " << writer.output();
  const std::string outcomes = Workload(mnt);
  const std::string view = DescribeTree(mnt);
  writer.Unmount();
  ASSERT_FALSE(IsFuseMounted(mnt));
  SCOPED_TRACE(name + " workload: " + outcomes);
  std::cout << name << " workload: " << outcomes << "\n";

  {
    // As Lamina's upper, with a work dir of Lamina's own.
    const std::string lamina_work = dir.Subdir("lamina-work");
    LaminafsMount lamina({"-o", OverlayOptionString({lower}, upper, lamina_work)}, mnt);
    ASSERT_TRUE(lamina.mounted()) << lamina.output();
    EXPECT_EQ(DescribeTree(mnt), view) << "Lamina shows " << name << "'s upper otherwise";
    // Spot checks, so a failure reads clearly.
    EXPECT_EQ(ReadFile(mnt + "/etc/config"), "v1+v2");
    EXPECT_EQ(ReadFile(mnt + "/home/user/notes.bak"), "notes");
    EXPECT_EQ(ListDir(mnt + "/srv/www"), std::vector<std::string>{"new.html"});
    struct stat st;
    EXPECT_NE(lstat((mnt + "/usr/share/doc").c_str(), &st), 0);
    EXPECT_NE(lstat((mnt + "/var/cache/pkgcache").c_str(), &st), 0);
    char value[4] = {};
    EXPECT_EQ(getxattr((mnt + "/etc/motd.old").c_str(), "user.note", value, sizeof(value)), 1);
    EXPECT_EQ(lamina.Unmount(), 0) << lamina.output();
  }
  {
    // As a read-only lower of Lamina: the next build step's view.
    LaminafsMount lamina({"-o", OverlayOptionString({upper, lower})}, mnt);
    ASSERT_TRUE(lamina.mounted()) << lamina.output();
    EXPECT_EQ(DescribeTree(mnt), view)
        << "Lamina shows " << name << "'s upper as a lower otherwise";
    EXPECT_EQ(lamina.Unmount(), 0) << lamina.output();
  }
}

TEST(ForeignLayersTest, UpperWrittenByKernelOverlayfs) {
  KernelWriter writer;
  CheckLaminaReadsWhatTheWriterWrote(writer, "kernel overlayfs");
}

TEST(ForeignLayersTest, UpperWrittenByFuseOverlayfs) {
  if (!HaveFuseOverlayfs())
    GTEST_SKIP() << "fuse-overlayfs is not installed (scripts/install-deps --test)";
  FuseOverlayfsWriter writer;
  CheckLaminaReadsWhatTheWriterWrote(writer, "fuse-overlayfs");
}

}  // namespace
}  // namespace lamina::testing

// mount(8) and fstab: `mount -t fuse.laminafs SOURCE MOUNTPOINT -o ...`
// and `mount -T FSTAB MOUNTPOINT` go through mount.fuse3, which runs
// `laminafs SOURCE MOUNTPOINT -o OPTS` with the options it keeps (plus rw,
// dev, suid). mount(8) drops PATH before running helpers, so the shell
// mount.fuse3 starts finds laminafs only in the default PATH: each test runs
// in a private mount namespace where the build's laminafs is bind-mounted
// over /usr/local/sbin, and mounts, checks and unmounts in there.

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "gtest/gtest.h"
#include "integration/overlay/laminafs_cli_fixture.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;

class LaminafsMountHelperTest : public LaminafsCliTest {
 protected:
  void SetUp() override {
    if (access("/sbin/mount.fuse3", X_OK) != 0) GTEST_SKIP() << "fuse3's mount.fuse3 is missing";
    for (const char* name : {"bin", "lower", "upper", "work", "mnt"}) dir_.Subdir(name);
    ASSERT_EQ(symlink(BuiltBinary("cmd/laminafs").c_str(), Path("bin/laminafs").c_str()), 0);
    WriteFile(Path("lower/f"), "lower");
    WatchLower(Path("lower"));  // mounted by mount(8), not Run()
  }

  std::string Layers() const {
    return "lowerdir=" + Path("lower") + ",upperdir=" + Path("upper") + ",workdir=" + Path("work");
  }

  // Runs the shell `script` (set -e) in a private mount namespace with
  // laminafs on mount.fuse3's PATH; returns its exit status.
  int RunInNamespace(const std::string& script, std::string* output) {
    ChildProcess child({"/usr/bin/unshare", "--mount", "--propagation", "private", "--", "/bin/sh",
                        "-ec", "mount --bind " + Path("bin") + " /usr/local/sbin\n" + script});
    std::optional<int> status = child.Wait(seconds(60));
    *output = child.output();
    return status.value_or(-1);
  }

  // What every test checks inside the namespace once the mount command
  // returned: the mount serves at once, is listed as fuse.laminafs, writes
  // reach the upper; then umount(8) ends it.
  std::string CheckAndUnmount() const {
    std::string mnt = this->mnt();
    return "cat " + mnt + "/f; echo\n" + "grep ' " + mnt + " ' /proc/self/mountinfo\n" +
           "echo new > " + mnt + "/new\n" + "umount " + mnt + "\n" + "echo unmounted\n";
  }

  void ExpectServedAndGone(const std::string& output) {
    EXPECT_NE(output.find("lower\n"), std::string::npos) << output;
    EXPECT_NE(output.find(" - fuse.laminafs laminafs "), std::string::npos) << output;
    EXPECT_NE(output.find("unmounted"), std::string::npos) << output;
    EXPECT_EQ(ReadFile(Path("upper/new")), "new\n");
    // The daemon ends with its mount.
    EXPECT_TRUE(WaitUntil([&] { return DaemonsNaming(dir_.path()).empty(); }, seconds(10)));
  }
};

TEST_F(LaminafsMountHelperTest, MountTypeFuseLaminafs) {
  std::string output;
  ASSERT_EQ(RunInNamespace("mount -t fuse.laminafs laminafs " + mnt() + " -o " + Layers() + "\n" +
                               CheckAndUnmount(),
                           &output),
            0)
      << output;
  ExpectServedAndGone(output);
}

TEST_F(LaminafsMountHelperTest, FstabLine) {
  // mount(8) consumes defaults, nofail and x-* options and passes noatime
  // on; laminafs sees "rw,noatime,lowerdir=...,dev,suid".
  WriteFile(Path("fstab"), "laminafs " + mnt() + " fuse.laminafs defaults,nofail,noatime," +
                               Layers() + ",x-lamina.test=1 0 0\n");
  std::string output;
  ASSERT_EQ(RunInNamespace("mount -T " + Path("fstab") + " " + mnt() + "\n" + "grep ' " + mnt() +
                               " ' /proc/self/mountinfo | grep -q noatime\n" + CheckAndUnmount(),
                           &output),
            0)
      << output;
  ExpectServedAndGone(output);
}

TEST_F(LaminafsMountHelperTest, BadOptionsFailTheMountCommand) {
  std::string output;
  EXPECT_NE(RunInNamespace(
                "mount -t fuse.laminafs laminafs " + mnt() + " -o " + Layers() + ",frobnicate\n",
                &output),
            0);
  EXPECT_NE(output.find("unknown option 'frobnicate'"), std::string::npos) << output;
  EXPECT_TRUE(DaemonsNaming(dir_.path()).empty());
}

}  // namespace
}  // namespace lamina::testing

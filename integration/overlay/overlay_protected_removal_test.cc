// Removing names from immutable and append-only directories, and removing
// protected objects, side by side with kernel overlayfs (found by fstests'
// generic/079). The kernel's may_delete refuses with EPERM before it looks
// at the type or whether a directory is empty; FUSE inodes carry no inode
// flags for the kernel to see, so the daemon must look first: it answered
// ENOTEMPTY for rmdir of a non-empty directory in an immutable one.

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

const std::vector<std::string> kLower = {
    "d low",     "d low/full",     "f low/full/x lower",     "d low/empty", "f low/file lower",
    "d lowprot", "d lowprot/full", "f lowprot/full/x lower",
};

// Adds (or with `on` false, removes) `flag` on `path` through the mount.
std::string Chattr(const std::string& path, int flag, bool on) {
  int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return "open:" + Outcome(-1);
  int flags = 0;
  std::string out;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) {
    out = "get:" + Outcome(-1);
  } else {
    flags = on ? flags | flag : flags & ~flag;
    out = Outcome(ioctl(fd, FS_IOC_SETFLAGS, &flags));
  }
  close(fd);
  return out;
}

std::string Rmdir(const std::string& path) {
  return Outcome(rmdir(path.c_str()));
}
std::string Unlink(const std::string& path) {
  return Outcome(unlink(path.c_str()));
}

// Makes `dir` with a non-empty and an empty subdirectory and a file.
std::string MakeTree(const std::string& dir) {
  std::string out = Outcome(mkdir(dir.c_str(), 0755));
  out += Outcome(mkdir((dir + "/full").c_str(), 0755));
  out += Outcome(mkdir((dir + "/empty").c_str(), 0755));
  int fd = open((dir + "/full/x").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  out += Outcome(fd);
  if (fd >= 0) close(fd);
  fd = open((dir + "/file").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  out += Outcome(fd);
  if (fd >= 0) close(fd);
  return out;
}

// What each removal under a directory carrying `flag` answers, then the
// same once the flag is gone. (rmdir of a file and unlink of a directory are
// not compared: the VFS answers ENOTDIR and EISDIR for a FUSE inode, which
// has no S_IMMUTABLE or S_APPEND for may_delete to see first, before the
// daemon is asked; kernel overlayfs answers EPERM for a copied-up lower
// directory and ENOTDIR for one made in the upper.)
std::string RemovalsUnder(const std::string& dir, int flag) {
  std::string out = "chattr:" + Chattr(dir, flag, true);
  out += " rmdir-full:" + Rmdir(dir + "/full");
  out += " rmdir-empty:" + Rmdir(dir + "/empty");
  out += " unlink:" + Unlink(dir + "/file");
  out += " unchattr:" + Chattr(dir, flag, false);
  out += " rmdir-full:" + Rmdir(dir + "/full");
  out += " rmdir-empty:" + Rmdir(dir + "/empty");
  return out;
}

class OverlayProtectedRemovalTest : public OverlayPair {
 protected:
  void SetUp() override {
    BuildLayers({kLower}, {});
    MountBoth();
  }
  void TearDown() override {
    UnmountLamina();
    UnmountKernel();
    ExpectLowersUntouched();
    for (const std::string& set : {set_[0], set_[1]}) {
      ClearProtectionFlags(set);
    }
  }
};

TEST_F(OverlayProtectedRemovalTest, ImmutableUpperDirectory) {
  ExpectSame(
      [](const std::string& r) {
        return MakeTree(r + "/up") + " " + RemovalsUnder(r + "/up", FS_IMMUTABLE_FL);
      },
      "removals in an immutable directory made through the mount");
}

TEST_F(OverlayProtectedRemovalTest, AppendOnlyUpperDirectory) {
  ExpectSame(
      [](const std::string& r) {
        return MakeTree(r + "/up") + " " + RemovalsUnder(r + "/up", FS_APPEND_FL);
      },
      "removals in an append-only directory made through the mount");
}

TEST_F(OverlayProtectedRemovalTest, ImmutableLowerDirectory) {
  ExpectSame([](const std::string& r) { return RemovalsUnder(r + "/low", FS_IMMUTABLE_FL); },
             "removals in a lower directory made immutable (copied up)");
}

TEST_F(OverlayProtectedRemovalTest, ProtectedNonEmptyDirectoryItself) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = MakeTree(r + "/up");
        for (int flag : {FS_IMMUTABLE_FL, FS_APPEND_FL}) {
          out += " chattr:" + Chattr(r + "/up/full", flag, true);
          out += " rmdir:" + Rmdir(r + "/up/full");
          out += " unchattr:" + Chattr(r + "/up/full", flag, false);
        }
        out += " chattr:" + Chattr(r + "/lowprot/full", FS_IMMUTABLE_FL, true);
        out += " rmdir:" + Rmdir(r + "/lowprot/full");
        out += " unchattr:" + Chattr(r + "/lowprot/full", FS_IMMUTABLE_FL, false);
        out += " rmdir:" + Rmdir(r + "/up/full");
        return out;
      },
      "rmdir of a protected non-empty directory");
}

}  // namespace
}  // namespace lamina::testing

// copy_file_range(2) through the overlay, side by side with kernel
// overlayfs (found by fstests' generic/553). The overlay did not implement
// COPY_FILE_RANGE, so the kernel copied through reads and writes, and the
// check for an immutable output file, which the VFS makes on the FUSE inode
// that carries no inode flags, never happened: on an upper filesystem whose
// writes do not look again (xfs, tmpfs; ext4 does), the copy went in. The
// layers here are on tmpfs for that reason.

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

const std::vector<std::string> kLower = {"f src lower-source-data", "f dst lower-destination"};

// As xfs_io's chattr sets it (FS_IOC_FSSETXATTR), on an open descriptor.
std::string SetImmutable(int fd, bool on) {
  struct fsxattr attr {};
  if (ioctl(fd, FS_IOC_FSGETXATTR, &attr) != 0) return "get:" + Outcome(-1);
  attr.fsx_xflags =
      on ? attr.fsx_xflags | FS_XFLAG_IMMUTABLE : attr.fsx_xflags & ~FS_XFLAG_IMMUTABLE;
  return Outcome(ioctl(fd, FS_IOC_FSSETXATTR, &attr));
}

std::string Copy(int in, int out, loff_t from, loff_t to, size_t len) {
  ssize_t n = copy_file_range(in, &from, out, &to, len, 0);
  return n >= 0 ? std::to_string(n) : Outcome(-1);
}

class OverlayCopyRangeTest : public OverlayPair {
 protected:
  void SetUp() override {
    for (const char* set : {"lamina", "kernel"}) {
      ASSERT_EQ(mount("lamina-copy-range", dir_.Subdir(set).c_str(), "tmpfs", 0, "size=16m"), 0)
          << strerror(errno);
    }
  }
  void TearDown() override {
    OverlayPair::TearDown();
    for (const std::string& set : {set_[0], set_[1]}) {
      ClearProtectionFlags(set);
    }
  }
};

TEST_F(OverlayCopyRangeTest, CopiesBetweenLowerAndNewFiles) {
  Mount({kLower});
  ExpectSame(
      [](const std::string& r) {
        int in = open((r + "/src").c_str(), O_RDONLY | O_CLOEXEC);
        int out = open((r + "/new").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
        int lower_out = open((r + "/dst").c_str(), O_RDWR | O_CLOEXEC);
        std::string result = Copy(in, out, 0, 0, 5) + " " + Copy(in, out, 6, 100, 100) + " " +
                             Copy(in, lower_out, 0, 0, 5);
        close(in);
        close(out);
        close(lower_out);
        return result + " new=" + ReadFile(r + "/new").substr(0, 5) + "|" +
               ReadFile(r + "/new").substr(100) + " dst=" + ReadFile(r + "/dst");
      },
      "copy_file_range from a lower file to a new one and over a lower one");
}

TEST_F(OverlayCopyRangeTest, ImmutableOutputRefusesTheCopy) {
  Mount({kLower});
  ExpectSame(
      [](const std::string& r) {
        int in = open((r + "/src").c_str(), O_RDONLY | O_CLOEXEC);
        int out = open((r + "/new").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
        std::string result = SetImmutable(out, true);
        struct fsxattr attr {};
        ioctl(out, FS_IOC_FSGETXATTR, &attr);
        result += (attr.fsx_xflags & FS_XFLAG_IMMUTABLE) != 0 ? " immutable" : " not immutable";
        result += " copy:" + Copy(in, out, 0, 0, 8);
        close(in);
        close(out);
        return result + " new=" + ReadFile(r + "/new");
      },
      "copy_file_range into a file made immutable while open");
}

}  // namespace
}  // namespace lamina::testing

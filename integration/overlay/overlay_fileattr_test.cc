// Inode flags (chattr/lsattr ioctls) on the overlay, side by side with
// kernel overlayfs: get reads the real object, set copies up, immutable and
// append-only are recorded in overlay.protattr and enforced.

#include <fcntl.h>
#include <grp.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

const std::vector<std::string> kLower = {
    "f f lower", "d d", "f d/child lower-child", "f imm frozen", "f plain plain",
};
const std::vector<std::string> kUpper = {"f up upper"};

// Flags whose presence the tests compare (the layers' own, like the
// extents flag, are the same on both sides anyway).
constexpr int kShown = FS_APPEND_FL | FS_IMMUTABLE_FL | FS_NOATIME_FL | FS_SYNC_FL | FS_NODUMP_FL;

int OpenFor(const std::string& path) {
  return open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
}

// "flags=0x..." or the errno's name.
std::string GetFlags(const std::string& path) {
  int fd = OpenFor(path);
  if (fd < 0) return "open:" + Outcome(-1);
  int flags = 0;
  int rc = ioctl(fd, FS_IOC_GETFLAGS, &flags);
  std::string out = rc == 0 ? "flags=" + std::to_string(flags & kShown) : "get:" + Outcome(-1);
  close(fd);
  return out;
}

std::string SetFlags(const std::string& path, int add, int remove) {
  int fd = OpenFor(path);
  if (fd < 0) return "open:" + Outcome(-1);
  int flags = 0;
  std::string out;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) {
    out = "get:" + Outcome(-1);
  } else {
    flags = (flags | add) & ~remove;
    out = Outcome(ioctl(fd, FS_IOC_SETFLAGS, &flags));
  }
  close(fd);
  return out;
}

std::string GetXflags(const std::string& path) {
  int fd = OpenFor(path);
  if (fd < 0) return "open:" + Outcome(-1);
  struct fsxattr attr {};
  int rc = ioctl(fd, FS_IOC_FSGETXATTR, &attr);
  std::string out =
      rc == 0 ? "xflags=" + std::to_string(attr.fsx_xflags & (FS_XFLAG_APPEND | FS_XFLAG_IMMUTABLE |
                                                              FS_XFLAG_NOATIME))
              : "xget:" + Outcome(-1);
  close(fd);
  return out;
}

std::string SetXflags(const std::string& path, unsigned int add, unsigned int remove) {
  int fd = OpenFor(path);
  if (fd < 0) return "open:" + Outcome(-1);
  struct fsxattr attr {};
  std::string out;
  if (ioctl(fd, FS_IOC_FSGETXATTR, &attr) != 0) {
    out = "xget:" + Outcome(-1);
  } else {
    attr.fsx_xflags = (attr.fsx_xflags | add) & ~remove;
    out = Outcome(ioctl(fd, FS_IOC_FSSETXATTR, &attr));
  }
  close(fd);
  return out;
}

// What a protected object refuses: append, truncate, unlink.
std::string Writes(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_APPEND);
  std::string out = "append:" + Outcome(fd);
  if (fd >= 0) close(fd);
  fd = open(path.c_str(), O_WRONLY | O_TRUNC);
  out += " trunc:" + Outcome(fd);
  if (fd >= 0) close(fd);
  out += " chmod:" + Outcome(chmod(path.c_str(), 0600));
  return out;
}

std::string Protattr(const std::string& path) {
  char value[16] = {};
  ssize_t n = getxattr(path.c_str(), "trusted.overlay.protattr", value, sizeof(value));
  return n < 0 ? "-" : std::string(value, static_cast<size_t>(n));
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// Runs `op` as uid/gid 1000 in a child process; what it returned.
std::string AsUser1000(const std::function<std::string()>& op) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return "pipe";
  pid_t pid = fork();
  if (pid == 0) {
    close(pipe_fds[0]);
    std::string out = "setuid failed";
    if (setgroups(0, nullptr) == 0 && setgid(1000) == 0 && setuid(1000) == 0) out = op();
    (void)!write(pipe_fds[1], out.data(), out.size());
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string out;
  char buffer[256];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0)
    out.append(buffer, static_cast<size_t>(n));
  close(pipe_fds[0]);
  waitpid(pid, nullptr, 0);
  return out;
}

class OverlayFileattrTest : public OverlayPair {
 protected:
  void SetUp() override {
    BuildLayers({kLower}, kUpper);
    // Flags already on lower objects (set before either mount looks at them).
    for (const std::string& lower : {lamina_lower(0), set_[1] + "/lower0"}) {
      ASSERT_EQ(SetFlags(lower + "/f", FS_NOATIME_FL, 0), "ok");
      ASSERT_EQ(SetFlags(lower + "/imm", FS_IMMUTABLE_FL, 0), "ok");
    }
    MountBoth();
  }
  void TearDown() override {
    UnmountLamina();
    UnmountKernel();
    ExpectLowersUntouched();
    // Immutable files cannot be deleted with the test directory.
    for (const std::string& set : {set_[0], set_[1]}) {
      ClearProtectionFlags(set);
    }
  }
};

TEST_F(OverlayFileattrTest, GetReadsTheRealObjectWithoutCopyingUp) {
  ExpectSame(
      [](const std::string& r) {
        std::string out;
        for (const char* name : {"/f", "/d", "/imm", "/up", "/plain"}) {
          out += std::string(name) + " " + GetFlags(r + name) + " " + GetXflags(r + name) + "; ";
        }
        return out;
      },
      "flags of lower and upper objects");
  EXPECT_FALSE(Exists(lamina_upper() + "/f"));
  EXPECT_FALSE(Exists(lamina_upper() + "/d"));
}

TEST_F(OverlayFileattrTest, SetCopiesUpAndRecordsProtection) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = SetFlags(r + "/f", FS_APPEND_FL | FS_NODUMP_FL, 0);
        out += " " + GetFlags(r + "/f") + " " + Writes(r + "/f");
        out += " unlink:" + Outcome(unlink((r + "/f").c_str()));
        out += " " + SetFlags(r + "/f", 0, FS_APPEND_FL) + " " + GetFlags(r + "/f");
        out += " " + Writes(r + "/f");
        return out;
      },
      "append-only set through the mount");
  EXPECT_TRUE(Exists(lamina_upper() + "/f"));
  ExpectSame(
      [](const std::string& r) {
        std::string out = SetXflags(r + "/plain", FS_XFLAG_IMMUTABLE, 0);
        out += " " + GetFlags(r + "/plain") + " " + GetXflags(r + "/plain");
        out += " " + Writes(r + "/plain");
        out += " link:" + Outcome(link((r + "/plain").c_str(), (r + "/plain2").c_str()));
        out += " rename:" + Outcome(rename((r + "/plain").c_str(), (r + "/plain3").c_str()));
        return out;
      },
      "immutable set with FS_IOC_FSSETXATTR");
  EXPECT_EQ(Writes(lamina_root() + "/plain"), "append:EPERM trunc:EPERM chmod:EPERM");
  // The kernel's record of the protection flags, on both uppers.
  EXPECT_EQ(Protattr(lamina_upper() + "/plain"), "i");
  EXPECT_EQ(Protattr(kernel_upper() + "/plain"), "i");
  EXPECT_EQ(Protattr(lamina_upper() + "/f"), "-");
}

TEST_F(OverlayFileattrTest, ImmutableDirectoryAndLowerFile) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = SetFlags(r + "/d", FS_IMMUTABLE_FL, 0) + " " + GetFlags(r + "/d");
        int fd = open((r + "/d/new").c_str(), O_CREAT | O_WRONLY, 0644);
        out += " create:" + Outcome(fd);
        if (fd >= 0) close(fd);
        out += " unlink:" + Outcome(unlink((r + "/d/child").c_str()));
        out += " " + SetFlags(r + "/d", 0, FS_IMMUTABLE_FL);
        fd = open((r + "/d/new").c_str(), O_CREAT | O_WRONLY, 0644);
        out += " create:" + Outcome(fd);
        if (fd >= 0) close(fd);
        return out;
      },
      "immutable directory");
  EXPECT_TRUE(Exists(lamina_upper() + "/d/new"));
  ExpectSame(
      [](const std::string& r) {
        std::string out = GetFlags(r + "/imm");
        out += " unlink:" + Outcome(unlink((r + "/imm").c_str()));
        out += " rename:" + Outcome(rename((r + "/imm").c_str(), (r + "/imm2").c_str()));
        out += " over:" + Outcome(rename((r + "/plain").c_str(), (r + "/imm").c_str()));
        int fd = open((r + "/imm").c_str(), O_WRONLY | O_APPEND);
        out += " write:" + Outcome(fd);
        if (fd >= 0) close(fd);
        out += " " + SetFlags(r + "/imm", 0, FS_IMMUTABLE_FL) + " " + GetFlags(r + "/imm");
        fd = open((r + "/imm").c_str(), O_WRONLY | O_APPEND);
        out += " write:" + Outcome(fd);
        if (fd >= 0) close(fd);
        return out;
      },
      "lower immutable file, then cleared");
}

TEST_F(OverlayFileattrTest, UnsupportedFlagsFailAsOnTheKernel) {
  ExpectSame(
      [](const std::string& r) {
        std::string out;
        // Compression, no-copy-on-write and DAX: not for ext4 files here.
        for (int flag : {FS_COMPR_FL, FS_NOCOW_FL, FS_DAX_FL, FS_CASEFOLD_FL}) {
          out += SetFlags(r + "/up", flag, 0) + " ";
        }
        out += GetFlags(r + "/up") + " ";
        int fd = open((r + "/up").c_str(), O_RDONLY);
        int flags = 0;
        out += "garbage:" + Outcome(ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0
                                        ? ioctl(fd, FS_IOC_SETFLAGS, &(flags = -1))
                                        : -1);
        close(fd);
        return out;
      },
      "unsupported flags");
  // A refused change leaves the flags as they were. (Kernel overlayfs
  // records the protection flags in the upper before the upper refuses the
  // rest, so what it reports afterwards depends on whether its inode was
  // evicted meanwhile: not compared.)
  EXPECT_EQ(GetFlags(lamina_root() + "/up"), "flags=0");
}

TEST_F(OverlayFileattrTest, ProtectionSurvivesRemountAndReadsUnderTheKernel) {
  ASSERT_EQ(SetFlags(lamina_root() + "/f", FS_APPEND_FL, 0), "ok");
  ASSERT_EQ(SetFlags(kernel_root() + "/f", FS_APPEND_FL, 0), "ok");
  UnmountLamina();
  ASSERT_NO_FATAL_FAILURE(MountLamina());
  ExpectSame([](const std::string& r) { return GetFlags(r + "/f") + " " + Writes(r + "/f"); },
             "append-only after remount");
  EXPECT_EQ(Writes(lamina_root() + "/f"), "append:ok trunc:EPERM chmod:EPERM");
  ASSERT_NO_FATAL_FAILURE(MountKernelOnLaminaLayers());
  EXPECT_EQ(GetFlags(kernel_root() + "/f") + " " + Writes(kernel_root() + "/f"),
            "flags=" + std::to_string(FS_APPEND_FL | FS_NOATIME_FL) +
                " append:ok trunc:EPERM chmod:EPERM")
      << "kernel overlayfs on Lamina's layers";
}

TEST_F(OverlayFileattrTest, OnlyTheOwnerSetsAndOnlyRootProtects) {
  // User 1000 must be able to walk to the mounts; it owns "mine".
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  for (const std::string& r : {lamina_root(), kernel_root()}) {
    WriteFile(r + "/mine", "mine");
    ASSERT_EQ(chown((r + "/mine").c_str(), 1000, 1000), 0);
  }
  ExpectSame(
      [](const std::string& r) {
        return AsUser1000([&r] {
          return "other:" + SetFlags(r + "/plain", FS_NODUMP_FL, 0) +
                 " get:" + GetFlags(r + "/plain") +
                 " own:" + SetFlags(r + "/mine", FS_NODUMP_FL, 0) +
                 " protect:" + SetFlags(r + "/mine", FS_APPEND_FL, 0) +
                 " now:" + GetFlags(r + "/mine");
        });
      },
      "fileattr as a user");
  const std::string r = lamina_root();
  EXPECT_EQ(AsUser1000([&r] {
              return SetFlags(r + "/plain", FS_NODUMP_FL, 0) + " " +
                     SetFlags(r + "/mine", FS_APPEND_FL, 0) + " " + GetFlags(r + "/mine");
            }),
            "EPERM EPERM flags=" + std::to_string(FS_NODUMP_FL));
}

TEST_F(OverlayFileattrTest, ProtectionTheKernelRecordedIsEnforced) {
  // The kernel keeps immutable and append-only in overlay.protattr only.
  ASSERT_EQ(SetFlags(kernel_root() + "/f", FS_APPEND_FL, 0), "ok");
  ASSERT_EQ(SetFlags(kernel_root() + "/plain", FS_IMMUTABLE_FL, 0), "ok");
  const std::string kernel_view =
      GetFlags(kernel_root() + "/f") + " " + Writes(kernel_root() + "/f") + " " +
      GetFlags(kernel_root() + "/plain") + " " + Writes(kernel_root() + "/plain");
  ASSERT_NO_FATAL_FAILURE(MountLaminaOnKernelLayers());
  const std::string r = lamina_root();
  EXPECT_EQ(GetFlags(r + "/f") + " " + Writes(r + "/f") + " " + GetFlags(r + "/plain") + " " +
                Writes(r + "/plain"),
            kernel_view);
  EXPECT_EQ(Outcome(unlink((r + "/plain").c_str())), "EPERM");
}

}  // namespace
}  // namespace lamina::testing

// The upper layer's filesystem runs out of space during a copy-up: the
// caller gets ENOSPC, the view is unchanged, nothing is left in the work
// directory, and the mount works again once space is freed. Kernel
// overlayfs runs the same steps on an identical small filesystem.

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"
#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

constexpr int kSmallMiB = 4;
constexpr int kBigMiB = 16;

// Mounts a `mib` MiB filesystem at `dir` that holds trusted.* xattrs and
// char-device whiteouts: a tmpfs, else a loop-mounted ext4 image. Returns
// what it mounted, or "" (with a test failure).
std::string MountSmallFs(const std::string& dir, int mib) {
  std::string size = "size=" + std::to_string(mib) + "m";
  if (mount("tmpfs", dir.c_str(), "tmpfs", 0, size.c_str()) == 0) {
    std::string probe = dir + "/probe";
    bool ok = mknod(probe.c_str(), S_IFCHR, makedev(0, 0)) == 0 &&
              setxattr(probe.c_str(), "trusted.overlay.probe", "y", 1, 0) == 0;
    unlink(probe.c_str());
    if (ok) return "tmpfs";
    umount2(dir.c_str(), MNT_DETACH);
  }
  std::string error;
  if (!MountExt4Image(dir, mib, &error)) {
    ADD_FAILURE() << error;
    return "";
  }
  return "ext4";
}

unsigned long FreeBlocks(const std::string& path) {
  struct statvfs st;
  return statvfs(path.c_str(), &st) == 0 ? st.f_bfree : 0;
}

// One overlay (Lamina or the kernel) over its own copy of the layers.
struct Side {
  std::string lower, small, upper, work, mnt;
};

class EnospcTest : public ::testing::Test {
 protected:
  Side MakeSide(const std::string& name) {
    Side s;
    s.lower = dir_.path() + "/" + name + "-lower";
    std::string big(static_cast<size_t>(kBigMiB) << 20, 'b');
    for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('A' + (i >> 12) % 26);
    BuildLayer(s.lower, {"f medium " + std::string(512 << 10, 'm'), "f note lower note", "d dir"});
    WriteFile(s.lower + "/dir/big", big);
    s.small = dir_.Subdir(name + "-small");
    kind_ = MountSmallFs(s.small, kSmallMiB);
    s.upper = s.small + "/upper";
    s.work = s.small + "/work";
    mkdir(s.upper.c_str(), 0755);
    mkdir(s.work.c_str(), 0755);
    s.mnt = dir_.Subdir(name + "-mnt");
    return s;
  }

  TempDir dir_{"lamina-enospc"};
  std::string kind_;
};

// The steps, run on each side; their outcomes must match.
std::string FillFailAndRecover(const Side& s) {
  std::string out;
  std::string before = DescribeTree(s.mnt);
  // A copy-up that cannot fit.
  int fd = open((s.mnt + "/dir/big").c_str(), O_WRONLY | O_APPEND);
  out += "copy-up:" + Outcome(fd);
  if (fd >= 0) close(fd);
  out += " truncate:" + Outcome(truncate((s.mnt + "/dir/big").c_str(), 1));
  // The view is unchanged, the lower intact, nothing half-copied anywhere.
  out += DescribeTree(s.mnt) == before ? " view-unchanged" : " VIEW-CHANGED";
  out += ReadFile(s.mnt + "/dir/big") == ReadFileQuietly(s.lower + "/dir/big") ? " big-intact"
                                                                               : " BIG-DIFFERS";
  struct stat st;
  out += " upper-big:" + Outcome(stat((s.upper + "/dir/big").c_str(), &st));
  out += " work-leftovers:" + std::to_string(ListDir(s.work + "/work").size());
  // New data until the disk is full: ENOSPC, not EIO.
  int filler = open((s.mnt + "/filler").c_str(), O_CREAT | O_WRONLY, 0644);
  out += " filler:" + Outcome(filler);
  std::string chunk(1 << 20, 'f');
  int rc = 0;
  for (int i = 0; i < 2 * kSmallMiB && rc >= 0; ++i) {
    rc = static_cast<int>(write(filler, chunk.data(), chunk.size()));
  }
  if (rc >= 0) rc = fsync(filler);
  out += " fill:" + Outcome(rc);
  close(filler);
  int small = open((s.mnt + "/note").c_str(), O_WRONLY | O_APPEND);  // small copy-up, full disk
  out += " small-copy-up-when-full:" + Outcome(small);
  if (small >= 0) close(small);
  out += " work-leftovers:" + std::to_string(ListDir(s.work + "/work").size());
  // Space freed: everything works again. Through FUSE the daemon learns
  // that nobody holds the unlinked file any more from the kernel's FORGET
  // (and the last RELEASE), which arrive asynchronously, after unlink(2)
  // has returned; only then does it close its descriptors and the upper
  // free the blocks. So wait for them (at once on the kernel), or a copy-up
  // racing the FORGET sees a full disk (failed 2 runs in 20 here).
  const unsigned long free_when_full = FreeBlocks(s.small);
  out += " unlink-filler:" + Outcome(unlink((s.mnt + "/filler").c_str()));
  WaitUntil([&] { return FreeBlocks(s.small) > free_when_full + (1 << 20) / 4096; },
            std::chrono::seconds(5));
  int medium = open((s.mnt + "/medium").c_str(), O_WRONLY | O_APPEND);
  out += " medium-copy-up:" + Outcome(medium);
  if (medium >= 0) {
    out += Outcome(static_cast<int>(write(medium, "+", 1)));
    close(medium);
  }
  out += " medium-size:" + std::to_string(ReadFile(s.mnt + "/medium").size());
  WriteFile(s.mnt + "/after", "after");
  out += " new-file:" + ReadFile(s.mnt + "/after");
  out += ReadFile(s.mnt + "/dir/big") == ReadFileQuietly(s.lower + "/dir/big") ? " big-intact"
                                                                               : " BIG-DIFFERS";
  return out;
}

TEST_F(EnospcTest, CopyUpOnAFullUpperFailsCleanlyAndRecovers) {
  Side lamina = MakeSide("lamina");
  Side kernel = MakeSide("kernel");
  ASSERT_FALSE(kind_.empty());
  unsigned long free_before = FreeBlocks(lamina.small);

  std::string lamina_outcome, kernel_outcome;
  {
    LaminafsMount mount({"-o", OverlayOptionString({lamina.lower}, lamina.upper, lamina.work)},
                        lamina.mnt);
    ASSERT_TRUE(mount.mounted()) << mount.output();
    lamina_outcome = FillFailAndRecover(lamina);
    EXPECT_TRUE(mount.running()) << mount.output();
    EXPECT_EQ(mount.Unmount(), 0) << mount.output();
  }
  std::string options = OverlayOptionString({kernel.lower}, kernel.upper, kernel.work);
  ASSERT_EQ(mount("overlay", kernel.mnt.c_str(), "overlay", 0, options.c_str()), 0)
      << strerror(errno);
  kernel_outcome = FillFailAndRecover(kernel);
  umount2(kernel.mnt.c_str(), MNT_DETACH);

  fprintf(stderr, "upper on %s (%d MiB)\nlamina: %s\nkernel: %s\n", kind_.c_str(), kSmallMiB,
          lamina_outcome.c_str(), kernel_outcome.c_str());
  EXPECT_NE(lamina_outcome.find("copy-up:ENOSPC"), std::string::npos) << lamina_outcome;
  EXPECT_EQ(lamina_outcome, kernel_outcome);
  // The failed copy-ups released their space (the upper keeps only what
  // the recovery steps wrote: a 512 KiB copy and two small files).
  EXPECT_GE(FreeBlocks(lamina.small) + 200, free_before - (600 << 10) / 4096);
}

}  // namespace
}  // namespace lamina::testing

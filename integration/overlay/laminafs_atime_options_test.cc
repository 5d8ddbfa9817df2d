// The access-time mount options laminafs accepts reach the mount (found by
// fstests' generic/003): `-o relatime` failed the mount, since libfuse
// refuses the name ("fuse: unknown option(s)"). And they mean what they say
// in the layers too (generic/120): reads through a noatime mount moved the
// access times of upper files and of the passthrough's source, which the
// daemon opened without O_NOATIME.

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"

namespace lamina::testing {
namespace {

// The mount options /proc/self/mounts lists for `mountpoint`.
std::string MountOptionsOf(const std::string& mountpoint) {
  std::string mounts = ReadFile("/proc/self/mounts");
  size_t at = mounts.find(" " + mountpoint + " ");
  if (at == std::string::npos) return "";
  size_t type_end = mounts.find(' ', mounts.find(' ', at + 1) + 1);
  size_t end = mounts.find(' ', type_end + 1);
  std::string options = ",";
  options.append(mounts, type_end + 1, end - type_end - 1);
  options += ',';
  return options;
}

class LaminafsAtimeOptionsTest : public ::testing::TestWithParam<const char*> {};

TEST_P(LaminafsAtimeOptionsTest, MountsWithTheOption) {
  TempDir dir("lamina-atime");
  const std::string option = GetParam();
  const std::string mnt = dir.Subdir("mnt");
  LaminafsMount mount({"-o", "lowerdir=" + dir.Subdir("lower") + "," + option}, mnt);
  ASSERT_TRUE(mount.mounted()) << mount.output();
  const std::string shown = MountOptionsOf(mnt);
  // relatime and atime both leave the kernel's default, relatime.
  const std::string expected = option == "noatime" ? ",noatime," : ",relatime,";
  EXPECT_NE(shown.find(expected), std::string::npos) << shown;
  mount.Unmount();
}

INSTANTIATE_TEST_SUITE_P(Options, LaminafsAtimeOptionsTest,
                         ::testing::Values("relatime", "atime", "noatime", "noatime,relatime"));

// 2000-01-01: older than the mtime, so a relatime mount moves it on a read.
constexpr time_t kOldAtime = 946684800;

void MakeAtimeOld(const std::string& path) {
  const timespec times[2] = {{kOldAtime, 0}, {0, UTIME_OMIT}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

// "kept" or "moved" for the file `f` and the directory `d` below `root`.
std::string AtimesBelow(const std::string& root) {
  std::string out;
  for (const char* name : {"f", "d"}) {
    struct stat st;
    if (lstat((root + "/" + name).c_str(), &st) != 0) return "lstat failed";
    out += std::string(name) + (st.st_atim.tv_sec == kOldAtime ? " kept " : " moved ");
  }
  return out;
}

// Reads `f` whole and lists `d` through a mount.
void ReadAndList(const std::string& mnt) {
  EXPECT_EQ(ReadFile(mnt + "/f"), "data");
  DIR* dir = opendir((mnt + "/d").c_str());
  ASSERT_NE(dir, nullptr);
  size_t entries = 0;
  while (readdir(dir) != nullptr) ++entries;
  closedir(dir);
  EXPECT_EQ(entries, 3u);  // ., .., x
}

// f and d/x in `root`, their access times made old.
void MakeTree(const std::string& root) {
  WriteFile(root + "/f", "data");
  ASSERT_EQ(mkdir((root + "/d").c_str(), 0755), 0);
  WriteFile(root + "/d/x", "x");
  MakeAtimeOld(root + "/f");
  MakeAtimeOld(root + "/d");
}

class LaminafsReadAtimeTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    struct statvfs fs;
    ASSERT_EQ(statvfs(dir_.path().c_str(), &fs), 0);
    if ((fs.f_flag & ST_NOATIME) != 0) GTEST_SKIP() << dir_.path() << " is mounted noatime";
  }
  bool noatime() const { return std::string(GetParam()) == "noatime"; }
  std::string expected() const { return noatime() ? "f kept d kept " : "f moved d moved "; }

  TempDir dir_{"lamina-read-atime"};
};

TEST_P(LaminafsReadAtimeTest, ReadsThroughTheOverlayMoveUpperAtimesAsTheKernelDoes) {
  const std::string option = GetParam();
  std::string shown[2];
  for (int kernel = 0; kernel < 2; ++kernel) {
    const std::string set = dir_.Subdir(kernel ? "kernel" : "lamina");
    const std::string lower = dir_.Subdir((kernel ? "kernel" : "lamina") + std::string("/lower"));
    const std::string upper = dir_.Subdir((kernel ? "kernel" : "lamina") + std::string("/upper"));
    const std::string work = dir_.Subdir((kernel ? "kernel" : "lamina") + std::string("/work"));
    const std::string mnt = dir_.Subdir((kernel ? "kernel" : "lamina") + std::string("/mnt"));
    WriteFile(lower + "/other", "lower");
    MakeTree(upper);
    if (HasFatalFailure()) return;
    const std::string layers = "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work;
    if (kernel) {
      ASSERT_EQ(mount("overlay", mnt.c_str(), "overlay", noatime() ? MS_NOATIME : MS_RELATIME,
                      layers.c_str()),
                0);
      ReadAndList(mnt);
      ASSERT_EQ(umount(mnt.c_str()), 0);
    } else {
      LaminafsMount mount({"-o", layers + "," + option}, mnt);
      ASSERT_TRUE(mount.mounted()) << mount.output();
      ReadAndList(mnt);
      mount.Unmount();
    }
    shown[kernel] = AtimesBelow(upper);
  }
  EXPECT_EQ(shown[0], shown[1]) << "Lamina against kernel overlayfs";
  EXPECT_EQ(shown[0], expected());
}

TEST_P(LaminafsReadAtimeTest, ReadsThroughThePassthroughMoveSourceAtimesAsTheMountSays) {
  const std::string source = dir_.Subdir("source");
  const std::string mnt = dir_.Subdir("mnt");
  MakeTree(source);
  if (HasFatalFailure()) return;
  {
    LaminafsMount mount({"passthrough", "-o", GetParam(), source}, mnt);
    ASSERT_TRUE(mount.mounted()) << mount.output();
    ReadAndList(mnt);
    mount.Unmount();
  }
  EXPECT_EQ(AtimesBelow(source), expected());
}

INSTANTIATE_TEST_SUITE_P(Options, LaminafsReadAtimeTest, ::testing::Values("noatime", "relatime"));

}  // namespace
}  // namespace lamina::testing

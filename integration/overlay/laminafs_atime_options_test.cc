// The access-time mount options laminafs accepts reach the mount (found by
// fstests' generic/003): `-o relatime` failed the mount, since libfuse
// refuses the name ("fuse: unknown option(s)").

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

}  // namespace
}  // namespace lamina::testing

// Layer paths with commas, colons and backslashes, escaped as kernel
// overlayfs reads them (`\,`, `\:`, `\\`): the same option string mounts
// kernel overlayfs and laminafs over the same layers, with the same view.

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"
#include "integration/overlay/laminafs_cli_fixture.h"

namespace lamina::testing {
namespace {

class LaminafsEscapedPathsTest : public LaminafsCliTest {};

TEST_F(LaminafsEscapedPathsTest, SameLayersAsKernelOverlayfs) {
  ASSERT_EQ(geteuid(), 0U) << "needs root";
  for (const char* name : {"l,1", "l:2", "l\\3", "u,p", "w\\o", "ku", "kw", "kmnt", "mnt"}) {
    dir_.Subdir(name);
  }
  WriteFile(Path("l,1") + "/one", "1");
  WriteFile(Path("l:2") + "/two", "2");
  WriteFile(Path("l\\3") + "/three", "3");
  const std::string lowers =
      "lowerdir=" + Path("l\\,1") + ":" + Path("l\\:2") + ":" + Path("l\\\\3");
  const std::string kernel = lowers + ",upperdir=" + Path("ku") + ",workdir=" + Path("kw");
  ASSERT_EQ(mount("overlay", Path("kmnt").c_str(), "overlay", 0, kernel.c_str()), 0)
      << strerror(errno) << " " << kernel;
  TrackMount(Path("kmnt"));
  std::string output;
  ASSERT_EQ(Run({"-o", lowers + ",upperdir=" + Path("u\\,p") + ",workdir=" + Path("w\\\\o"), mnt()},
                &output),
            0)
      << output;
  EXPECT_EQ(ListDir(mnt()), ListDir(Path("kmnt")));
  EXPECT_EQ(ListDir(mnt()), (std::vector<std::string>{"one", "three", "two"}));
  WriteFile(mnt() + "/new", "n");
  EXPECT_EQ(ReadFile(Path("u,p") + "/new"), "n");
}

}  // namespace
}  // namespace lamina::testing

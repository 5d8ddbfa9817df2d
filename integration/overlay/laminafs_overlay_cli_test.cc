// `laminafs -o lowerdir=...` as container engines call it: readiness on
// return, the containers/storage option string, and clear errors that leave
// nothing mounted and no process behind.

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "integration/overlay/laminafs_cli_fixture.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;

class LaminafsOverlayCliTest : public LaminafsCliTest {
 protected:
  void SetUp() override {
    for (const char* name : {"l1", "l1/sub", "l:2", "upper", "upper/w", "work", "mnt"})
      dir_.Subdir(name);
    WriteFile(dir_.path() + "/l1/top", "top");
    WriteFile(dir_.path() + "/l:2/bottom", "bottom");
  }
};

TEST_F(LaminafsOverlayCliTest, ContainersStorageSyntaxMountsAndServesOnReturn) {
  // Empty options between commas, an escaped colon, relative paths.
  ASSERT_EQ(chdir(dir_.path().c_str()), 0);
  std::string options = "lowerdir=l1:l\\:2,upperdir=upper,workdir=work,,nodev";
  ASSERT_EQ(Run({"-o", options, "mnt"}), 0);
  // The mount serves the moment the command returns.
  EXPECT_TRUE(IsFuseMounted(mnt()));
  EXPECT_EQ(ReadFile(mnt() + "/top"), "top");
  EXPECT_EQ(ReadFile(mnt() + "/bottom"), "bottom");
  WriteFile(mnt() + "/new", "new");
  EXPECT_EQ(ReadFile(dir_.path() + "/upper/new"), "new");
  ASSERT_EQ(system(("umount " + mnt()).c_str()), 0);
  EXPECT_TRUE(WaitUntil([&] { return !IsFuseMounted(mnt()); }, seconds(5)));
}

TEST_F(LaminafsOverlayCliTest, MountHelperFormWithSource) {
  // mount -t fuse.laminafs SOURCE MOUNTPOINT -o ... hands the helper both.
  std::string l1 = dir_.path() + "/l1";
  ASSERT_EQ(Run({"overlay", mnt(), "-o", "lowerdir=" + l1}), 0);
  EXPECT_EQ(ReadFile(mnt() + "/top"), "top");
  struct stat st;
  EXPECT_EQ(mkdir((mnt() + "/x").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(stat((mnt() + "/top").c_str(), &st), 0);
}

TEST_F(LaminafsOverlayCliTest, BadInputIsAnErrorAndMountsNothing) {
  struct Case {
    std::vector<std::string> args;
    int status;
    std::string message;
  };
  std::string l1 = dir_.path() + "/l1";
  std::string up = ",upperdir=" + dir_.path() + "/upper,workdir=" + dir_.path() + "/work";
  // A work dir on another filesystem than the upper (TempDir detaches it).
  const std::string other_fs = dir_.Subdir("other-fs");
  ASSERT_EQ(mount("tmpfs", other_fs.c_str(), "tmpfs", 0, nullptr), 0) << strerror(errno);
  dir_.Subdir("other-fs/w");
  const std::vector<Case> cases = {
      {{"-o", "upperdir=/tmp", mnt()}, 2, "no lowerdir"},
      {{"-o", "lowerdir=" + dir_.path() + "/missing", mnt()}, 2, "missing"},
      {{"-o", "lowerdir=" + l1 + ",frobnicate", mnt()}, 2, "unknown option 'frobnicate'"},
      {{"-o", "lowerdir=" + l1 + ",upperdir=" + dir_.path() + "/upper", mnt()},
       2,
       "upperdir and workdir go together"},
      {{"-o", "lowerdir=" + l1 + ",metacopy=on", mnt()}, 2, "metacopy=on is not supported"},
      {{"-o",
        "lowerdir=" + l1 + ",upperdir=" + dir_.path() + "/upper,workdir=" + dir_.path() +
            "/upper/w",
        mnt()},
       1,
       "must not contain each other"},
      {{"-o", "lowerdir=" + l1 + up, dir_.path() + "/nomnt"}, 2, "mountpoint"},
      {{"-o", "lowerdir=" + l1 + up, dir_.path() + "/upper/w"},
       2,
       "is inside upperdir " + dir_.path() + "/upper"},
      {{"-o", "lowerdir=" + l1 + up, dir_.path() + "/work"}, 2, "is inside workdir"},
      {{"-o", "lowerdir=" + l1, dir_.path() + "/l1/sub"}, 2, "is inside lowerdir " + l1},
      {{"-o", "lowerdir=" + dir_.path() + "/upper/w" + up, mnt()}, 1, "overlaps upperdir"},
      {{"-o", "lowerdir=" + l1 + ":" + l1 + up, mnt()}, 1, "overlaps lowerdir " + l1},
      {{"-o", "lowerdir=" + l1 + "/top", mnt()}, 1, "lowerdir " + l1 + "/top: Not a directory"},
      {{"-o", "lowerdir=" + l1 + ",upperdir=" + dir_.path() + "/upper,workdir=" + other_fs + "/w",
        mnt()},
       1,
       "workdir and upperdir are on different filesystems"},
      {{"-o", "lowerdir=" + l1 + up + ",uidmapping=0:1000", mnt()},
       2,
       "uidmapping: '0:1000' is not FROM:TO:COUNT"},
      {{"-o", "lowerdir=" + l1 + up + ",gidmapping=0:x:1", mnt()}, 2, "gidmapping"},
      {{"-o", "lowerdir=" + l1 + up + ",userxattr,index=on", mnt()},
       2,
       "index=on conflicts with userxattr"},
  };
  for (const Case& c : cases) {
    std::string output;
    EXPECT_EQ(Run(c.args, &output), c.status) << output;
    EXPECT_NE(output.find(c.message), std::string::npos) << output;
    EXPECT_FALSE(IsFuseMounted(mnt()));
    EXPECT_TRUE(DaemonsNaming(dir_.path()).empty()) << c.message;
  }
}

TEST_F(LaminafsOverlayCliTest, MountsOverItsOwnLower) {
  // As with the kernel: the lower is hidden by the view of itself.
  std::string l1 = dir_.path() + "/l1";
  TrackMount(l1);
  ASSERT_EQ(Run({"-o",
                 "lowerdir=" + l1 + ",upperdir=" + dir_.path() + "/upper,workdir=" + dir_.path() +
                     "/work",
                 l1}),
            0);
  WriteFile(l1 + "/new", "new");
  EXPECT_EQ(ListDir(l1), (std::vector<std::string>{"new", "sub", "top", "w"}));
  UnmountAndWait(l1);
  EXPECT_EQ(ListDirQuietly(l1), (std::vector<std::string>{"sub", "top"}));
  EXPECT_EQ(ReadFile(dir_.path() + "/upper/new"), "new");
}

TEST_F(LaminafsOverlayCliTest, AnUpperInUseIsRefusedUntilItsMountEnds) {
  std::string upper = dir_.path() + "/upper", work = dir_.path() + "/work";
  std::string other = dir_.Subdir("mnt2"), work2 = dir_.Subdir("work2");
  TrackMount(other);
  std::string l1 = "lowerdir=" + dir_.path() + "/l1";
  ASSERT_EQ(Run({"-o", l1 + ",upperdir=" + upper + ",workdir=" + work, mnt()}), 0);
  WriteFile(mnt() + "/kept", "kept");
  // The same upper and work directories, or the same upper alone.
  for (const auto& [workdir, message] :
       {std::pair{work, "upperdir " + upper + " is in use by another laminafs mount"},
        {work2, "upperdir " + upper + " is in use by another laminafs mount"}}) {
    std::string output;
    EXPECT_EQ(Run({"-o", l1 + ",upperdir=" + upper + ",workdir=" + workdir, other}, &output), 1);
    EXPECT_NE(output.find(message), std::string::npos) << output;
    EXPECT_FALSE(IsFuseMounted(other));
  }
  // The same work directory under another upper.
  std::string output;
  EXPECT_EQ(
      Run({"-o", l1 + ",upperdir=" + dir_.Subdir("upper2") + ",workdir=" + work, other}, &output),
      1);
  EXPECT_NE(output.find("workdir " + work + " is in use"), std::string::npos) << output;
  // The first mount is untouched (its staging area was not emptied), and
  // once it ends the layers mount again.
  EXPECT_EQ(ReadFile(mnt() + "/kept"), "kept");
  UnmountAndWait(mnt());
  ASSERT_EQ(Run({"-o", l1 + ",upperdir=" + upper + ",workdir=" + work, other}, &output), 0)
      << output;
  EXPECT_EQ(ReadFile(other + "/kept"), "kept");
}

}  // namespace
}  // namespace lamina::testing

// uidmapping=/gidmapping= and the squash options through real mounts: what
// the view shows of owners stored in the layers, what a create or chown
// through the view stores, and that copy-up keeps the stored owner.

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "integration/overlay/laminafs_cli_fixture.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;
using Owner = std::pair<uid_t, gid_t>;

// containers/storage's form for a container whose ids 0..65535 are host
// ids 100000..165535.
constexpr char kMapping[] = "uidmapping=0:100000:65536,gidmapping=0:100000:65536";

class LaminafsOwnerTest : public LaminafsCliTest {
 protected:
  void SetUp() override {
    for (const char* name : {"lower", "lower/pub", "upper", "work", "mnt"}) dir_.Subdir(name);
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);  // other users reach mnt/
    ASSERT_EQ(chmod(Path("lower/pub").c_str(), 0777), 0);
    // As an image layer stores them: the container's own ids.
    for (auto [name, uid, gid] :
         {std::tuple{"root", 0, 0}, {"user", 1, 2}, {"far", 70000, 70001}}) {
      WriteFile(Path("lower/") + name, name);
      ASSERT_EQ(lchown((Path("lower/") + name).c_str(), uid, gid), 0);
    }
  }

  void Mount(const std::string& extra) {
    std::string options = "lowerdir=" + Path("lower") + ",upperdir=" + Path("upper") +
                          ",workdir=" + Path("work") + "," + extra;
    std::string output;
    ASSERT_EQ(Run({"-o", options, mnt()}, &output), 0) << output;
  }

  static Owner OwnerOf(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
    return {st.st_uid, st.st_gid};
  }
  Owner Shown(const std::string& name) const { return OwnerOf(mnt() + "/" + name); }
  Owner Stored(const std::string& name) const { return OwnerOf(Path("upper/") + name); }
};

TEST_F(LaminafsOwnerTest, StoredOwnersShowThroughTheMapping) {
  Mount(kMapping);
  // Listing first: the kernel then takes the attributes from READDIRPLUS.
  EXPECT_EQ(ListDir(mnt()), (std::vector<std::string>{"far", "pub", "root", "user"}));
  EXPECT_EQ(Shown("root"), Owner(100000, 100000));
  EXPECT_EQ(Shown("user"), Owner(100001, 100002));
  EXPECT_EQ(Shown("far"), Owner(65534, 65534));  // no range covers 70000
  EXPECT_EQ(Shown(""), Owner(100000, 100000));   // the upper root, stored as 0:0
  struct statx stx;
  ASSERT_EQ(statx(AT_FDCWD, (mnt() + "/user").c_str(), 0, STATX_UID | STATX_GID, &stx), 0);
  EXPECT_EQ(stx.stx_uid, 100001u);
  EXPECT_EQ(stx.stx_gid, 100002u);
  // Copy-up keeps what is stored.
  WriteFile(mnt() + "/user", "changed");
  EXPECT_EQ(Stored("user"), Owner(1, 2));
  EXPECT_EQ(Shown("user"), Owner(100001, 100002));
}

TEST_F(LaminafsOwnerTest, CreatesAndChownsStoreTheMappedBackIds) {
  Mount(kMapping);
  // A container process running as its uid 1000 is host uid 101000.
  const std::string dir = mnt() + "/pub";
  int code = RunAs(101000, 101001, [&] {
    int fd = open((dir + "/file").c_str(), O_CREAT | O_WRONLY, 0644);
    if (fd < 0) return 1;
    close(fd);
    if (mkdir((dir + "/dir").c_str(), 0755) != 0) return 2;
    if (symlink("file", (dir + "/link").c_str()) != 0) return 3;
    int tmp = open(dir.c_str(), O_TMPFILE | O_RDWR, 0600);
    struct stat st {};
    if (tmp < 0 || fstat(tmp, &st) != 0 || st.st_uid != 101000 || st.st_gid != 101001) return 4;
    close(tmp);
    return 0;
  });
  ASSERT_EQ(code, 0);
  for (const char* name : {"pub/file", "pub/dir", "pub/link"}) {
    EXPECT_EQ(Stored(name), Owner(1000, 1001)) << name;
    EXPECT_EQ(Shown(name), Owner(101000, 101001)) << name;
  }
  // chown through the view: mapped back, or the overflow id when the new
  // owner has no container id.
  ASSERT_EQ(lchown((mnt() + "/root").c_str(), 100005, 100006), 0);
  EXPECT_EQ(Stored("root"), Owner(5, 6));
  EXPECT_EQ(Shown("root"), Owner(100005, 100006));
  ASSERT_EQ(lchown((mnt() + "/user").c_str(), 3, -1), 0);
  EXPECT_EQ(Stored("user"), Owner(65534, 2));
  EXPECT_EQ(Shown("user"), Owner(165534, 100002));
}

TEST_F(LaminafsOwnerTest, SquashOptionsReplaceTheShownOwnerOnly) {
  Mount("squash_to_root");
  EXPECT_EQ(Shown("user"), Owner(0, 0));
  EXPECT_EQ(Shown("far"), Owner(0, 0));
  ASSERT_EQ(lchown((mnt() + "/user").c_str(), 7, 8), 0);
  EXPECT_EQ(Stored("user"), Owner(7, 8));
  EXPECT_EQ(Shown("user"), Owner(0, 0));
  UnmountAndWait(mnt());

  // squash_to_uid= wins over squash_to_root; the gid follows squash_to_root.
  Mount("squash_to_root,squash_to_uid=7");
  EXPECT_EQ(Shown("far"), Owner(7, 0));
  UnmountAndWait(mnt());

  // Alone, squash_to_gid= leaves the uid as stored (or mapped).
  Mount(std::string(kMapping) + ",squash_to_gid=9");
  EXPECT_EQ(Shown("root"), Owner(100000, 9));
}

}  // namespace
}  // namespace lamina::testing

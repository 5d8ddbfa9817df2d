// fuse-overlayfs' options that change what the merged view shows, checked
// through real mounts made by the laminafs command: static_nlink, ino32_t,
// noxattrs, max_write; and the compatibility switches that are accepted
// without effect.

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "integration/overlay/laminafs_cli_fixture.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;

class LaminafsOptionsTest : public LaminafsCliTest {
 protected:
  void SetUp() override {
    for (const char* name :
         {"lower", "lower/d", "lower/d/a", "lower/d/b", "upper", "work", "mnt"}) {
      dir_.Subdir(name);
    }
    WriteFile(Path("lower/f"), "f");
    ASSERT_EQ(setxattr(Path("lower/f").c_str(), "user.x", "1", 1, 0), 0);
  }

  std::string Layers() const {
    return "lowerdir=" + Path("lower") + ",upperdir=" + Path("upper") + ",workdir=" + Path("work");
  }
  // Mounts the layers at mnt() with `extra` options; fails the test if the
  // command fails.
  void Mount(const std::string& extra) {
    std::string output;
    ASSERT_EQ(Run({"-o", Layers() + "," + extra, mnt()}, &output), 0) << output;
  }
  nlink_t Links(const std::string& path) {
    struct stat st;
    EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
    return st.st_nlink;
  }
};

TEST_F(LaminafsOptionsTest, StaticNlinkReportsOneForDirectories) {
  Mount("ro");
  EXPECT_EQ(Links(mnt() + "/d"), 4u);  // ".", its name, two subdirectories
  UnmountAndWait(mnt());
  Mount("static_nlink");
  EXPECT_EQ(Links(mnt() + "/d"), 1u);
  EXPECT_EQ(Links(mnt()), 1u);
  EXPECT_EQ(Links(mnt() + "/f"), 1u);
  struct statx stx;
  ASSERT_EQ(statx(AT_FDCWD, (mnt() + "/d/a").c_str(), 0, STATX_NLINK, &stx), 0);
  EXPECT_EQ(stx.stx_nlink, 1u);
  // New directories too, and files keep their real count.
  ASSERT_EQ(mkdir((mnt() + "/new").c_str(), 0755), 0);
  EXPECT_EQ(Links(mnt() + "/new"), 1u);
  ASSERT_EQ(link((mnt() + "/f").c_str(), (mnt() + "/g").c_str()), 0);
  EXPECT_EQ(Links(mnt() + "/f"), 2u);
}

TEST_F(LaminafsOptionsTest, Ino32FoldsInodeNumbersOfLayersOnSeveralFilesystems) {
  // A lower on its own filesystem makes Lamina put the layer into the high
  // bits of st_ino; ino32_t must bring every number below 2^32, keep them
  // distinct, and keep readdir's d_ino equal to st_ino.
  ASSERT_EQ(mount("tmpfs", Path("lower").c_str(), "tmpfs", 0, "size=1m"), 0);
  TrackMount(Path("lower"));
  WriteFile(Path("lower/one"), "1");
  WriteFile(Path("lower/two"), "2");
  auto inode = [&](const std::string& name) {
    struct stat st;
    EXPECT_EQ(stat((mnt() + "/" + name).c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_ino);
  };
  Mount("ro");
  EXPECT_GT(inode("one"), 0xffffffffULL);
  UnmountAndWait(mnt());
  Mount("ro,ino32_t");
  uint64_t one = inode("one");
  uint64_t two = inode("two");
  EXPECT_LE(one, 0xffffffffULL);
  EXPECT_LE(two, 0xffffffffULL);
  EXPECT_LE(inode(""), 0xffffffffULL);
  EXPECT_NE(one, two);
  EXPECT_EQ(inode("one"), one);  // stable
  int listed = 0;
  DIR* dir = opendir(mnt().c_str());
  ASSERT_NE(dir, nullptr);
  while (struct dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name == "one" || name == "two") {
      EXPECT_EQ(e->d_ino, name == "one" ? one : two) << name;
      ++listed;
    }
  }
  closedir(dir);
  EXPECT_EQ(listed, 2);
}

TEST_F(LaminafsOptionsTest, NoxattrsMakesEveryXattrCallUnsupported) {
  Mount("noxattrs=0");
  char value[8] = {};
  EXPECT_EQ(getxattr((mnt() + "/f").c_str(), "user.x", value, sizeof(value)), 1);
  UnmountAndWait(mnt());
  Mount("noxattrs=1");
  std::string f = mnt() + "/f";
  EXPECT_EQ(getxattr(f.c_str(), "user.x", value, sizeof(value)), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  EXPECT_EQ(listxattr(f.c_str(), value, sizeof(value)), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  EXPECT_EQ(setxattr(f.c_str(), "user.y", "2", 1, 0), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  EXPECT_EQ(removexattr(f.c_str(), "user.x"), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  // Nothing reached the layers.
  EXPECT_EQ(getxattr(Path("lower/f").c_str(), "user.x", value, sizeof(value)), 1);
  EXPECT_FALSE(std::filesystem::exists(Path("upper/f")));
}

TEST_F(LaminafsOptionsTest, MaxWriteBoundsWriteRequests) {
  // Served in the daemon (no kernel passthrough) and traced with -d, so
  // every WRITE request the kernel sends shows in the log with its length.
  WatchLower(Path("lower"));  // mounted without Run()
  ChildProcess daemon({BuiltBinary("cmd/laminafs"), "-f", "-d", "-o",
                       Layers() + ",passthrough=off,max_write=8192", mnt()});
  ASSERT_TRUE(WaitUntil([&] { return IsFuseMounted(mnt()); }, seconds(10))) << daemon.output();
  int fd = open((mnt() + "/big").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  std::string data(65536, 'x');
  EXPECT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  close(fd);
  EXPECT_EQ(ReadFile(Path("upper/big")), data);
  UnmountAndWait(mnt());
  ASSERT_EQ(daemon.Wait(seconds(10)), 0);
  std::regex write_len(R"(WRITE\([^)]*len=(\d+)\))");
  std::vector<size_t> lengths;
  const std::string& log = daemon.output();
  for (std::sregex_iterator it(log.begin(), log.end(), write_len), end; it != end; ++it) {
    lengths.push_back(std::stoul((*it)[1]));
  }
  ASSERT_GE(lengths.size(), 8u) << log;
  EXPECT_EQ(*std::max_element(lengths.begin(), lengths.end()), 8192u);
}

TEST_F(LaminafsOptionsTest, CompatibilitySwitchesMountAndServe) {
  Mount("noacl,fast_ino=1,threaded=1,writeback=0,xattr_permissions=0");
  EXPECT_EQ(ReadFile(mnt() + "/f"), "f");
  WriteFile(mnt() + "/new", "new");
  EXPECT_EQ(ReadFile(Path("upper/new")), "new");
}

TEST_F(LaminafsOptionsTest, IoUringServesTheOverlayAndFallsBackWhenOff) {
  for (bool enabled : {true, false}) {
    SCOPED_TRACE(enabled ? "enable_uring=1" : "enable_uring=0");
    FuseUringSetting setting(enabled);
    if (!setting.supported()) GTEST_SKIP() << setting.unsupported_reason();
    ASSERT_TRUE(setting.applied());
    const std::string log = Path(enabled ? "uring-on.log" : "uring-off.log");
    const std::string stats = Path(enabled ? "uring-on.json" : "uring-off.json");
    Mount("io_uring,log=" + log + ",stats=" + stats);
    // Creates, writes, renames and removes, through whichever transport.
    for (int i = 0; i < 50; ++i) WriteFile(mnt() + "/n" + std::to_string(i), std::to_string(i));
    ASSERT_EQ(rename((mnt() + "/n7").c_str(), (mnt() + "/seven").c_str()), 0);
    for (int i = 10; i < 50; ++i) ASSERT_EQ(unlink((mnt() + "/n" + std::to_string(i)).c_str()), 0);
    EXPECT_EQ(ReadFile(mnt() + "/seven"), "7");
    EXPECT_EQ(ReadFile(mnt() + "/f"), "f");
    EXPECT_EQ(ReadFile(Path("upper/n3")), "3");
    UnmountAndWait(mnt());
    const std::string said = ReadFile(log);
    // stats= wrote the session's request counts at the end.
    EXPECT_NE(ReadFile(stats).find("\"CREATE\""), std::string::npos) << ReadFile(stats);
    if (enabled) {
      EXPECT_NE(said.find("FUSE-over-io_uring: "), std::string::npos) << said;
      EXPECT_EQ(said.find("serving through /dev/fuse"), std::string::npos) << said;
    } else {
      EXPECT_NE(said.find("serving through /dev/fuse"), std::string::npos) << said;
    }
  }
}

}  // namespace
}  // namespace lamina::testing

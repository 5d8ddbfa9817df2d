// The check every mounted overlay test makes of its lower layers: a digest
// sees each kind of change a daemon could make to a layer (contents, mode,
// owner, xattrs, times, flags, names), taking it changes nothing (atimes
// included), and UntouchedLayers reports a changed layer readably.

#include "integration/harness/layer_digest.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"
#include "integration/harness/untouched_layers.h"

namespace lamina::testing {
namespace {

// Times older than any clock reading: a read under relatime (atime not
// after mtime) must update the atime, so a digest that read the usual way
// would change what it records.
constexpr struct timespec kTimes[2] = {{1000000000, 123456789}, {1000000100, 987654321}};

void SetOldTimes(const std::string& path) {
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), kTimes, AT_SYMLINK_NOFOLLOW), 0) << path;
}

// A small layer with an object of every type: a file with xattrs in two
// namespaces, a sparse file, a directory with a file, a symlink carrying an
// xattr, a FIFO, a character device and a whiteout; all with old times.
std::string BuildTree(const TempDir& dir, const std::string& name) {
  const std::string root = dir.Subdir(name);
  WriteFile(root + "/file", "the contents");
  EXPECT_EQ(chmod((root + "/file").c_str(), 0644), 0);
  EXPECT_EQ(setxattr((root + "/file").c_str(), "user.kept", "u", 1, 0), 0);
  EXPECT_EQ(setxattr((root + "/file").c_str(), "trusted.kept", "t", 1, 0), 0);
  int fd = open((root + "/sparse").c_str(), O_CREAT | O_WRONLY, 0644);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(pwrite(fd, "data", 4, 64 << 20), 4);
  EXPECT_EQ(ftruncate(fd, 128 << 20), 0);
  close(fd);
  EXPECT_EQ(mkdir((root + "/dir").c_str(), 0755), 0);
  WriteFile(root + "/dir/inner", "inner");
  EXPECT_EQ(symlink("file", (root + "/link").c_str()), 0);
  EXPECT_EQ(lsetxattr((root + "/link").c_str(), "trusted.on-link", "l", 1, 0), 0);
  EXPECT_EQ(mkfifo((root + "/fifo").c_str(), 0600), 0);
  EXPECT_EQ(mknod((root + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  EXPECT_EQ(mknod((root + "/whiteout").c_str(), S_IFCHR, makedev(0, 0)), 0);
  for (const char* object :
       {"/file", "/sparse", "/dir/inner", "/dir", "/link", "/fifo", "/null", "/whiteout", ""}) {
    SetOldTimes(root + object);
  }
  return root;
}

struct timespec Atime(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return st.st_atim;
}

bool Same(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

std::string Listed(const LayerDigest::Comparison& comparison) {
  std::string out;
  for (const std::string& line : comparison.listed) out += "\n  " + line;
  return out;
}

TEST(LayerDigestTest, TakingADigestChangesNothing) {
  TempDir dir("lamina-digest");
  const std::string root = BuildTree(dir, "layer");
  const LayerDigest first = LayerDigest::Take(root);
  ASSERT_EQ(first.error(), "");
  EXPECT_EQ(first.object_count(), 9u);  // the root and eight objects
  const LayerDigest second = LayerDigest::Take(root);
  const LayerDigest::Comparison comparison = LayerDigest::Compare(first, second);
  EXPECT_EQ(comparison.count, 0u) << Listed(comparison);
  for (const char* object : {"", "/dir", "/file", "/sparse", "/link"}) {
    EXPECT_TRUE(Same(Atime(root + object), kTimes[0])) << object << "'s atime changed";
  }
  // Whereas reading the usual way does change them (relatime is in force),
  // and the digest says so.
  ReadFile(root + "/file");
  ListDir(root + "/dir");
  char target[16];
  ASSERT_EQ(readlink((root + "/link").c_str(), target, sizeof(target)), 4);
  for (const char* object : {"/dir", "/file", "/link"}) {
    EXPECT_FALSE(Same(Atime(root + object), kTimes[0])) << object;
  }
  EXPECT_EQ(LayerDigest::Compare(first, LayerDigest::Take(root)).count, 3u);
}

// One change to a fresh copy of the tree, and a line the comparison must
// list for it.
struct Change {
  const char* what;
  std::function<void(const std::string& root)> change;
  const char* expected;
};

void ChangeFlags(const std::string& path, int flag) {
  int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  int flags = 0;
  ASSERT_EQ(ioctl(fd, FS_IOC_GETFLAGS, &flags), 0) << strerror(errno);
  flags |= flag;
  ASSERT_EQ(ioctl(fd, FS_IOC_SETFLAGS, &flags), 0) << strerror(errno);
  close(fd);
}

TEST(LayerDigestTest, EveryKindOfChangeIsReported) {
  const std::vector<Change> changes = {
      {"a byte rewritten in place",
       [](const std::string& r) {
         int fd = open((r + "/file").c_str(), O_WRONLY);
         ASSERT_EQ(pwrite(fd, "T", 1, 0), 1);
         close(fd);
       },
       "/file: contents xxh3-128:"},
      {"a byte appended",
       [](const std::string& r) {
         int fd = open((r + "/file").c_str(), O_WRONLY | O_APPEND);
         ASSERT_EQ(write(fd, "+", 1), 1);
         close(fd);
       },
       "/file: size 12 -> 13"},
      {"a byte written into a hole",
       [](const std::string& r) {
         int fd = open((r + "/sparse").c_str(), O_WRONLY);
         ASSERT_EQ(pwrite(fd, "h", 1, 100 << 20), 1);
         close(fd);
       },
       "/sparse: contents xxh3-128:"},
      {"mode", [](const std::string& r) { ASSERT_EQ(chmod((r + "/file").c_str(), 0600), 0); },
       "/file: mode 0644 -> 0600"},
      {"owner",
       [](const std::string& r) { ASSERT_EQ(lchown((r + "/file").c_str(), 1000, 1001), 0); },
       "/file: uid 0 -> 1000"},
      {"group", [](const std::string& r) { ASSERT_EQ(lchown((r + "/file").c_str(), -1, 1001), 0); },
       "/file: gid 0 -> 1001"},
      {"an xattr added",
       [](const std::string& r) {
         ASSERT_EQ(setxattr((r + "/file").c_str(), "user.new", "v", 1, 0), 0);
       },
       "/file: xattr user.new (none) -> \"v\""},
      {"an xattr's value",
       [](const std::string& r) {
         ASSERT_EQ(setxattr((r + "/file").c_str(), "trusted.kept", "\x01", 1, 0), 0);
       },
       "/file: xattr trusted.kept \"t\" -> \"\\x01\""},
      {"an xattr removed",
       [](const std::string& r) { ASSERT_EQ(removexattr((r + "/file").c_str(), "user.kept"), 0); },
       "/file: xattr user.kept \"u\" -> (none)"},
      {"a symlink's own xattr",
       [](const std::string& r) {
         ASSERT_EQ(lsetxattr((r + "/link").c_str(), "trusted.on-link", "L", 1, 0), 0);
       },
       "/link: xattr trusted.on-link \"l\" -> \"L\""},
      {"a directory's xattr",
       [](const std::string& r) {
         ASSERT_EQ(setxattr((r + "/dir").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
       },
       "/dir: xattr trusted.overlay.opaque (none) -> \"y\""},
      {"atime of a file read", [](const std::string& r) { ReadFile(r + "/file"); },
       "/file: atime 1000000000.123456789 -> "},
      {"atime of a directory listed", [](const std::string& r) { ListDir(r + "/dir"); },
       "/dir: atime 1000000000.123456789 -> "},
      {"atime of a symlink read",
       [](const std::string& r) {
         char target[16];
         ASSERT_EQ(readlink((r + "/link").c_str(), target, sizeof(target)), 4);
       },
       "/link: atime 1000000000.123456789 -> "},
      {"mtime",
       [](const std::string& r) {
         const struct timespec times[2] = {{0, UTIME_OMIT}, {1000000200, 0}};
         ASSERT_EQ(utimensat(AT_FDCWD, (r + "/file").c_str(), times, 0), 0);
       },
       "/file: mtime 1000000100.987654321 -> 1000000200.000000000"},
      {"ctime alone",
       [](const std::string& r) { ASSERT_EQ(chmod((r + "/file").c_str(), 0644), 0); },
       "/file: ctime "},
      {"inode flags",
       [](const std::string& r) {
         ASSERT_NO_FATAL_FAILURE(ChangeFlags(r + "/file", FS_NODUMP_FL));
       },
       "/file: flags 0x"},
      {"a new file", [](const std::string& r) { WriteFile(r + "/dir/new", "new"); },
       "/dir/new: added (regular file)"},
      {"a removed file",
       [](const std::string& r) { ASSERT_EQ(unlink((r + "/dir/inner").c_str()), 0); },
       "/dir/inner: removed (regular file)"},
      {"a removed directory",
       [](const std::string& r) {
         ASSERT_EQ(unlink((r + "/dir/inner").c_str()), 0);
         ASSERT_EQ(rmdir((r + "/dir").c_str()), 0);
       },
       "/dir: removed (directory)"},
      {"a symlink's target",
       [](const std::string& r) {
         ASSERT_EQ(unlink((r + "/link").c_str()), 0);
         ASSERT_EQ(symlink("elsewhere", (r + "/link").c_str()), 0);
       },
       "/link: target \"file\" -> \"elsewhere\""},
      {"a hard link",
       [](const std::string& r) {
         ASSERT_EQ(link((r + "/file").c_str(), (r + "/dir/file2").c_str()), 0);
       },
       "/file: nlink 1 -> 2"},
      {"a device number",
       [](const std::string& r) {
         ASSERT_EQ(unlink((r + "/null").c_str()), 0);
         ASSERT_EQ(mknod((r + "/null").c_str(), S_IFCHR | 0666, makedev(1, 5)), 0);
       },
       "/null: rdev 1:3 -> 1:5"},
      {"a type",
       [](const std::string& r) {
         ASSERT_EQ(unlink((r + "/fifo").c_str()), 0);
         WriteFile(r + "/fifo", "");
       },
       "/fifo: type fifo -> regular file"},
      {"the root's own mode", [](const std::string& r) { ASSERT_EQ(chmod(r.c_str(), 0700), 0); },
       "/: mode 0755 -> 0700"},
  };
  TempDir dir("lamina-digest");
  for (size_t i = 0; i < changes.size(); ++i) {
    const Change& c = changes[i];
    SCOPED_TRACE(c.what);
    const std::string root = BuildTree(dir, "layer" + std::to_string(i));
    const LayerDigest before = LayerDigest::Take(root);
    ASSERT_EQ(before.error(), "");
    ASSERT_NO_FATAL_FAILURE(c.change(root));
    const LayerDigest::Comparison comparison =
        LayerDigest::Compare(before, LayerDigest::Take(root), /*max_listed=*/100);
    bool listed = false;
    for (const std::string& line : comparison.listed) {
      listed = listed || line.rfind(c.expected, 0) == 0;
    }
    EXPECT_TRUE(listed) << "expected a line starting \"" << c.expected << "\" among"
                        << Listed(comparison);
  }
}

TEST(LayerDigestTest, DeepChainsAreWalkedAndNamedShortly) {
  TempDir dir("lamina-digest");
  // On a tmpfs, which TempDir detaches: ext4 takes milliseconds per
  // directory this deep, and TempDir could not remove so long a path.
  const std::string root = dir.Subdir("chain");
  ASSERT_EQ(mount("tmpfs", root.c_str(), "tmpfs", 0, "size=64m"), 0) << strerror(errno);
  int fd = open(root.c_str(), O_DIRECTORY | O_RDONLY);
  for (int i = 0; i < 3000; ++i) {  // a path of 6,000 bytes, beyond PATH_MAX
    ASSERT_EQ(mkdirat(fd, "d", 0755), 0);
    int next = openat(fd, "d", O_DIRECTORY | O_RDONLY);
    close(fd);
    fd = next;
  }
  int leaf = openat(fd, "leaf", O_CREAT | O_WRONLY, 0644);
  close(fd);
  const LayerDigest before = LayerDigest::Take(root);
  ASSERT_EQ(before.error(), "");
  EXPECT_EQ(before.object_count(), 3002u);
  ASSERT_EQ(write(leaf, "x", 1), 1);
  close(leaf);
  const LayerDigest::Comparison comparison = LayerDigest::Compare(before, LayerDigest::Take(root));
  ASSERT_FALSE(comparison.listed.empty());
  EXPECT_EQ(comparison.listed[0].rfind("/d/d/d/d/...(2993 more).../d/d/d/leaf: size 0 -> 1", 0), 0u)
      << Listed(comparison);
}

// What lamina-layer-digest prints for the shell tests to diff.
TEST(LayerDigestTest, PrintsOneLinePerFieldSoThatDiffFindsTheChanges) {
  TempDir dir("lamina-digest");
  const std::string root = BuildTree(dir, "layer");
  auto print = [&] {
    std::ostringstream out;
    LayerDigest::Take(root).Print(out);
    std::vector<std::string> lines;
    std::istringstream in(out.str());
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  };
  const std::vector<std::string> before = print();
  for (const char* line : {"/: type directory", "/file: mode 0644", "/link: target \"file\"",
                           "/file: xattr trusted.kept \"t\"", "/null: rdev 1:3"}) {
    EXPECT_NE(std::find(before.begin(), before.end(), line), before.end()) << line;
  }
  ASSERT_EQ(chmod((root + "/file").c_str(), 0600), 0);
  const std::vector<std::string> after = print();
  ASSERT_EQ(after.size(), before.size());
  std::vector<std::string> changed;
  for (size_t i = 0; i < after.size(); ++i) {
    if (after[i] != before[i]) changed.push_back(after[i].substr(0, after[i].rfind(' ')));
  }
  EXPECT_EQ(changed, (std::vector<std::string>{"/file: mode", "/file: ctime"}));
}

TEST(UntouchedLayersTest, AnUntouchedLayerPasses) {
  TempDir dir("lamina-digest");
  UntouchedLayers layers;
  layers.Watch(BuildTree(dir, "layer"));
  layers.ExpectUntouched();  // (a failure here fails the test)
}

TEST(UntouchedLayersTest, AWriteToALayerFailsTheTestWithWhatChanged) {
  TempDir dir("lamina-digest");
  const std::string root = BuildTree(dir, "layer");
  UntouchedLayers layers;
  layers.Watch(root);
  int fd = open((root + "/file").c_str(), O_WRONLY);
  ASSERT_EQ(pwrite(fd, "X", 1, 5), 1);  // a stray byte, the size unchanged
  close(fd);
  EXPECT_NONFATAL_FAILURE(layers.ExpectUntouched(), "lower layer " + root + " changed");
  // Reported once: the check stops watching.
  layers.ExpectUntouched();
}

TEST(UntouchedLayersTest, TheMessageListsTheFirstTwentyChanges) {
  TempDir dir("lamina-digest");
  const std::string root = BuildTree(dir, "layer");
  UntouchedLayers layers;
  layers.Watch(root);
  for (int i = 0; i < 30; ++i) WriteFile(root + "/dir/new" + std::to_string(i), "new");
  // 30 new files, and the directory's mtime, ctime, size and nlink... at
  // least 32; the lines name each object and field.
  EXPECT_NONFATAL_FAILURE(layers.ExpectUntouched(),
                          ", the first 20 (object: field before -> after)\n"
                          "  /dir: mtime 1000000100.987654321 -> ");
  layers.Watch(root);
  WriteFile(root + "/dir/one-more", "new");
  EXPECT_NONFATAL_FAILURE(layers.ExpectUntouched(), "/dir/one-more: added (regular file)");
}

TEST(UntouchedLayersTest, ADeclaredChangeIsRecordedAfreshAfterTheCheck) {
  TempDir dir("lamina-digest");
  const std::string root = BuildTree(dir, "layer");
  UntouchedLayers layers;
  layers.Watch(root);
  layers.Change("a file added", [&] { WriteFile(root + "/added", "added"); });
  layers.ExpectUntouched();  // the declared change is no failure
  // What happened before the declared change still is, and later failures
  // say when the layer was recorded.
  layers.Watch(root);
  ReadFile(root + "/file");
  EXPECT_NONFATAL_FAILURE(layers.Change("nothing", [] {}), "/file: atime");
  WriteFile(root + "/dir/inner", "changed");
  EXPECT_NONFATAL_FAILURE(layers.ExpectUntouched(),
                          "recorded after the test's own change (nothing)");
}

TEST(UntouchedLayersTest, ALayerThatCannotBeReadFailsTheTest) {
  UntouchedLayers layers;
  EXPECT_NONFATAL_FAILURE(layers.Watch("/nonexistent/lamina-layer"),
                          "cannot take the digest of layer /nonexistent/lamina-layer");
}

TEST(LowerdirsInArgsTest, FindsTheLayersAsTheCommandDoes) {
  TempDir dir("lamina-digest");
  const std::string a = dir.Subdir("a"), colon = dir.Subdir("b:c"), comma = dir.Subdir("d,e");
  WriteFile(dir.path() + "/file", "");
  EXPECT_EQ(LowerdirsInArgs({"-f", "-o",
                             "ro,lowerdir=" + a + ":" + dir.path() + "/b\\:c:" + dir.path() +
                                 "/d\\,e,upperdir=/u",
                             "m"}),
            (std::vector<std::string>{a, colon, comma}));
  EXPECT_EQ(LowerdirsInArgs({"-olowerdir=" + a}), std::vector<std::string>{a});
  // Neither a missing directory nor a file is a layer (the command refuses them).
  EXPECT_EQ(LowerdirsInArgs({"-o", "lowerdir=" + dir.path() + "/missing:" + dir.path() +
                                       "/file:" + a + "/../a"}),
            std::vector<std::string>{a});
  EXPECT_TRUE(LowerdirsInArgs({"passthrough", "/src", "/mnt"}).empty());
}

}  // namespace
}  // namespace lamina::testing

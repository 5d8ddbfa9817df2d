// Lower hard links across copy-up (index=on), side by side with kernel
// overlayfs mounted with -o index=on; and each system mounting the layers
// the other wrote.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

// One lower file with three names in three directories, and a plain file.
const std::vector<std::string> kLower = {
    "d d1", "d d2", "f d1/a lower", "h d2/b d1/a", "h c d1/a", "f single one",
};
const char* const kNames[] = {"/d1/a", "/d2/b", "/c"};

// What the view shows of the three names: data, link count, and whether
// st_ino agrees with the first name present.
std::string Links(const std::string& r) {
  std::string out;
  ino_t first = 0;
  for (const char* name : kNames) {
    struct stat st;
    if (stat((r + name).c_str(), &st) != 0) {
      out += std::string(name) + ":" + Outcome(-1) + " ";
      continue;
    }
    if (first == 0) first = st.st_ino;
    out += std::string(name) + "=" + ReadFile(r + name) + " nlink=" + std::to_string(st.st_nlink) +
           " same_ino=" + std::to_string(st.st_ino == first) + " ";
  }
  return out;
}

// The index entries in a work directory (the kernel also parks shared
// whiteouts there, named "#...").
std::vector<std::string> IndexEntries(const std::string& work) {
  std::vector<std::string> names;
  DIR* dir = opendir((work + "/index").c_str());
  if (dir == nullptr) return names;
  while (struct dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.' && e->d_name[0] != '#') names.emplace_back(e->d_name);
  }
  closedir(dir);
  return names;
}

std::string Hex(const std::string& bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

std::string Xattr(const std::string& path, const char* name) {
  char value[256];
  ssize_t n = getxattr(path.c_str(), name, value, sizeof(value));
  return n < 0 ? "" : std::string(value, static_cast<size_t>(n));
}

std::string Append(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_APPEND);
  if (fd < 0) return Outcome(-1);
  std::string out = Outcome(static_cast<int>(write(fd, data.data(), data.size())));
  close(fd);
  return out;
}

class OverlayIndexTest : public OverlayPair {
 protected:
  void SetUp() override {
    kernel_options_ = "index=on";
    Mount({kLower}, {});
  }
  void Remount() {
    UnmountLamina();
    UnmountKernel();
    ASSERT_NO_FATAL_FAILURE(MountLamina());
    ASSERT_NO_FATAL_FAILURE(MountKernel());
  }
};

TEST_F(OverlayIndexTest, HardLinksStayOneFileAcrossCopyUpRemountAndUnlink) {
  const std::string all3 =
      "/d1/a=lower+new nlink=3 same_ino=1 /d2/b=lower+new nlink=3 same_ino=1 "
      "/c=lower+new nlink=3 same_ino=1 ";
  ExpectSame(
      [](const std::string& r) {
        std::string out = Append(r + "/d1/a", "+new");
        return out + " " + Links(r);
      },
      "append through one name");
  EXPECT_EQ(Links(lamina_root()), all3);

  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectSame(Links, "the names after remount");
  EXPECT_EQ(Links(lamina_root()), all3);
  // One copy, in the index, named as the kernel names it: the origin
  // record in hex.
  std::vector<std::string> index = IndexEntries(lamina_work());
  ASSERT_EQ(index.size(), 1u);
  EXPECT_EQ(IndexEntries(kernel_work()).size(), 1u);
  EXPECT_EQ(index[0], Hex(Xattr(lamina_upper() + "/d1/a", "trusted.overlay.origin")));
  EXPECT_EQ(Xattr(lamina_upper() + "/d1/a", "trusted.overlay.nlink"),
            Xattr(kernel_upper() + "/d1/a", "trusted.overlay.nlink"));

  const std::string two =
      "/d1/a=lower+new nlink=2 same_ino=1 /d2/b:ENOENT /c=lower+new nlink=2 same_ino=1 ";
  ExpectSame(
      [](const std::string& r) {
        std::string out = Outcome(unlink((r + "/d2/b").c_str()));
        return out + Links(r);
      },
      "unlink of one name");
  EXPECT_EQ(Links(lamina_root()), two);
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectSame(Links, "the names after unlink and remount");
  EXPECT_EQ(Links(lamina_root()), two);

  // Each system reads what the other wrote.
  const std::string kernel_view = Links(kernel_root()) + DescribeTree(kernel_root());
  const std::string lamina_view = Links(lamina_root()) + DescribeTree(lamina_root());
  ASSERT_NO_FATAL_FAILURE(MountKernelOnLaminaLayers("index=on"));
  EXPECT_EQ(Links(kernel_root()) + DescribeTree(kernel_root()), lamina_view)
      << "kernel overlayfs (index=on) on Lamina's layers";
  ASSERT_NO_FATAL_FAILURE(MountLaminaOnKernelLayers());
  EXPECT_EQ(Links(lamina_root()) + DescribeTree(lamina_root()), kernel_view)
      << "Lamina on the layers kernel overlayfs wrote";
  // Writing through a name the kernel never linked up reaches the kernel's
  // index entry, and the kernel sees it after Lamina is gone.
  EXPECT_EQ(Append(lamina_root() + "/c", "+more"), "ok");
  const std::string more =
      "/d1/a=lower+new+more nlink=2 same_ino=1 /d2/b:ENOENT /c=lower+new+more nlink=2 same_ino=1 ";
  EXPECT_EQ(Links(lamina_root()), more);
  UnmountLamina();
  ASSERT_NO_FATAL_FAILURE(MountKernel());
  EXPECT_EQ(Links(kernel_root()), more);
}

TEST_F(OverlayIndexTest, UnlinkingEveryNameRemovesTheIndexEntry) {
  // Unlinking a lower name copies the file into the index first, as the
  // kernel does, so that the index can count the names left.
  ExpectSame(
      [](const std::string& r) {
        std::string out = Outcome(unlink((r + "/d1/a").c_str()));
        out += " " + Links(r);
        out += Outcome(unlink((r + "/c").c_str()));
        out += " " + Links(r);
        return out;
      },
      "unlink of lower names");
  EXPECT_EQ(IndexEntries(lamina_work()).size(), 1u);
  EXPECT_EQ(IndexEntries(kernel_work()).size(), 1u);
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectSame(Links, "the last name after remount");
  ExpectSame(
      [](const std::string& r) {
        std::string out = Outcome(unlink((r + "/d2/b").c_str()));
        return out + Links(r);
      },
      "unlink of the last name");
  EXPECT_EQ(IndexEntries(lamina_work()).size(), 0u);
  EXPECT_EQ(IndexEntries(kernel_work()).size(), 0u);
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectSame([](const std::string& r) { return Links(r) + DescribeTree(r); },
             "the view at the end");
}

TEST_F(OverlayIndexTest, LinkAndRenameKeepTheCount) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = Outcome(link((r + "/d2/b").c_str(), (r + "/d1/new").c_str()));
        struct stat st {};
        stat((r + "/d1/new").c_str(), &st);
        out += " new nlink=" + std::to_string(st.st_nlink) + " " + Links(r);
        // A hard link's name moved, and another name replaced by a file.
        out += Outcome(rename((r + "/d1/a").c_str(), (r + "/d2/moved").c_str()));
        out += Outcome(rename((r + "/single").c_str(), (r + "/c").c_str()));
        stat((r + "/d1/new").c_str(), &st);
        return out + " nlink=" + std::to_string(st.st_nlink) + " " + Links(r);
      },
      "link and renames");
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectSame([](const std::string& r) { return Links(r) + DescribeTree(r); },
             "the view after remount");
}

TEST_F(OverlayIndexTest, ConcurrentWritesThroughEveryNameCopyUpOnce) {
  // Each name appended to by its own thread: one copy, every record in it.
  const std::string r = lamina_root();
  std::vector<std::thread> writers;
  for (const char* name : kNames) {
    writers.emplace_back([&r, name] {
      for (int i = 0; i < 20; ++i) Append(r + name, std::string(1, name[1]));
    });
  }
  for (std::thread& writer : writers) writer.join();
  const std::string data = ReadFile(r + "/c");
  EXPECT_EQ(data.size(), std::string("lower").size() + 60);
  for (char c : {'d', 'c'}) EXPECT_EQ(std::count(data.begin(), data.end(), c), c == 'd' ? 40 : 20);
  EXPECT_EQ(IndexEntries(lamina_work()).size(), 1u);
  const std::string view = Links(r);
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(Links(lamina_root()), view);
  struct stat st {};
  ASSERT_EQ(stat((lamina_root() + "/d2/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 3u);
}

TEST_F(OverlayIndexTest, OrphanEntriesGoAtMount) {
  ASSERT_EQ(Append(lamina_root() + "/d1/a", "+new"), "ok");
  UnmountLamina();
  // As if the last name had gone and the daemon died before the entry:
  // no upper name, and a count of 0.
  std::vector<std::string> index = IndexEntries(lamina_work());
  ASSERT_EQ(index.size(), 1u);
  const std::string entry = lamina_work() + "/index/" + index[0];
  ASSERT_EQ(unlink((lamina_upper() + "/d1/a").c_str()), 0);
  ASSERT_EQ(setxattr(entry.c_str(), "trusted.overlay.nlink", "U-1", 3, 0), 0);
  ASSERT_NO_FATAL_FAILURE(MountLamina());
  EXPECT_TRUE(IndexEntries(lamina_work()).empty());
  // An entry still counted stays.
  ASSERT_EQ(Append(lamina_root() + "/d2/b", "+again"), "ok");
  UnmountLamina();
  ASSERT_NO_FATAL_FAILURE(MountLamina());
  EXPECT_EQ(IndexEntries(lamina_work()).size(), 1u);
  EXPECT_EQ(ReadFile(lamina_root() + "/c"), "lower+again");
}

class OverlayIndexOffTest : public OverlayIndexTest {
 protected:
  void SetUp() override {
    kernel_options_ = "index=off";
    lamina_options_.layers.index = false;
    Mount({kLower}, {});
  }
};

TEST_F(OverlayIndexOffTest, CopyUpOfOneNameLeavesTheOthersBelow) {
  // While mounted, Lamina's names share one node (the data written shows
  // through every name, unlike the kernel's); on disk only the name used
  // is copied, so after remount both systems show the same split.
  ASSERT_EQ(Append(lamina_root() + "/d1/a", "+new"), "ok");
  ASSERT_EQ(Append(kernel_root() + "/d1/a", "+new"), "ok");
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectSame([](const std::string& r) { return Links(r) + DescribeTree(r); },
             "the names after remount");
  EXPECT_TRUE(IndexEntries(lamina_work()).empty());
}

}  // namespace
}  // namespace lamina::testing

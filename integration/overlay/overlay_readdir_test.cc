// Merged directory listings under change: a directory read in pieces while
// names come and go lists every surviving name exactly once, on Lamina as
// on kernel overlayfs; readers that start afresh see the change; and the
// listing the kernel caches is dropped when this mount changes the
// directory.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

// 300 names in the lower, 300 in the upper, 100 of them in both; and 300
// files only the lower has.
std::vector<std::string> LowerSpec() {
  std::vector<std::string> spec = {"d big", "d low"};
  for (int i = 0; i < 300; ++i) spec.push_back("f big/n" + std::to_string(i) + " lower");
  for (int i = 0; i < 300; ++i) spec.push_back("f low/p" + std::to_string(i) + " lower");
  return spec;
}
std::vector<std::string> UpperSpec() {
  std::vector<std::string> spec = {"d big"};
  for (int i = 200; i < 500; ++i) spec.push_back("f big/n" + std::to_string(i) + " upper");
  return spec;
}

class OverlayReaddirTest : public OverlayPair {
 protected:
  void SetUp() override { Mount({LowerSpec()}, UpperSpec()); }
};

// Reads up to `bytes` of directory entries from `fd` (one getdents64 call);
// false at the end.
bool ReadSome(int fd, size_t bytes, std::map<std::string, int>& seen) {
  std::vector<char> buffer(bytes);
  long n = syscall(SYS_getdents64, fd, buffer.data(), buffer.size());
  if (n <= 0) return false;
  for (long at = 0; at < n;) {
    auto* d = reinterpret_cast<struct dirent64*>(buffer.data() + at);
    std::string name = d->d_name;
    if (name != "." && name != "..") ++seen[name];
    at += d->d_reclen;
  }
  return true;
}

// What one interrupted read of big/ saw: names counted, and which names
// were removed or added meanwhile.
std::string ReadWhileChanging(const std::string& root) {
  const std::string dir = root + "/big";
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return "open failed";
  std::map<std::string, int> seen;
  for (int i = 0; i < 3; ++i) ReadSome(fd, 1024, seen);
  // Remove names seen and not yet seen, from both layers; add new ones.
  std::set<std::string> removed, added;
  for (int i : {0, 150, 250, 299, 350, 499}) {
    std::string name = "n" + std::to_string(i);
    if (unlink((dir + "/" + name).c_str()) == 0) removed.insert(name);
  }
  for (int i = 0; i < 20; ++i) {
    std::string name = "new" + std::to_string(i);
    WriteFile(dir + "/" + name, "x");
    added.insert(name);
  }
  while (ReadSome(fd, 1024, seen)) {
  }
  close(fd);
  std::string problems;
  for (int i = 0; i < 500; ++i) {
    std::string name = "n" + std::to_string(i);
    if (removed.count(name)) continue;
    if (seen[name] != 1) problems += name + " seen " + std::to_string(seen[name]) + " times; ";
  }
  for (const auto& [name, count] : seen) {
    if (count > 1) problems += name + " repeated; ";
    if (!removed.count(name) && !added.count(name) && name.rfind("n", 0) != 0) {
      problems += "unexpected " + name + "; ";
    }
  }
  // A fresh reader sees exactly the new state.
  std::map<std::string, int> fresh;
  int again = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  while (ReadSome(again, 4096, fresh)) {
  }
  close(again);
  if (fresh.size() != 500 - removed.size() + added.size()) {
    problems += "fresh reader saw " + std::to_string(fresh.size()) + " names; ";
  }
  for (const std::string& name : removed) {
    if (fresh.count(name)) problems += "fresh reader saw removed " + name + "; ";
  }
  for (const std::string& name : added) {
    if (!fresh.count(name)) problems += "fresh reader missed " + name + "; ";
  }
  return problems.empty() ? "ok" : problems;
}

TEST_F(OverlayReaddirTest, SurvivingNamesAppearOnceWhileTheDirectoryChanges) {
  EXPECT_EQ(ReadWhileChanging(lamina_root()), "ok");
  EXPECT_EQ(ReadWhileChanging(kernel_root()), "ok");
}

// Entries of a listing are resolved from the layer the listing found them
// in, and plain lower files are listed without being opened. A file copied
// up while the listing is being read (and forgotten by the kernel meanwhile)
// must be listed with its upper object's attributes.
std::string CopiedUpWhileListed(const std::string& root) {
  const std::string dir = root + "/low";
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return "open failed";
  std::map<std::string, int> seen;
  ReadSome(fd, 1024, seen);
  std::vector<std::string> changed;
  for (int i = 0; i < 300 && changed.size() < 20; ++i) {
    const std::string name = "p" + std::to_string(i);
    if (seen.count(name) == 0 && chmod((dir + "/" + name).c_str(), 0600) == 0) {
      changed.push_back(name);
    }
  }
  // The kernel forgets the changed files (their dentries are unused).
  sync();
  int drop = open("/proc/sys/vm/drop_caches", O_WRONLY);
  if (drop < 0 || write(drop, "2", 1) != 1) return "drop_caches failed";
  close(drop);
  usleep(200 * 1000);  // FORGETs are asynchronous
  while (ReadSome(fd, 1024, seen)) {
  }
  close(fd);
  std::string problems;
  if (seen.size() != 300) problems += std::to_string(seen.size()) + " names; ";
  for (const std::string& name : changed) {
    struct stat st;
    if (lstat((dir + "/" + name).c_str(), &st) != 0 || (st.st_mode & 07777) != 0600) {
      problems += name + " lost its mode; ";
    }
  }
  for (int i = 0; i < 300; i += 37) {
    if (ReadFile(dir + "/p" + std::to_string(i)) != "lower") problems += "p" + std::to_string(i);
  }
  return problems.empty() ? "ok" : problems;
}

TEST_F(OverlayReaddirTest, FilesCopiedUpWhileListedShowTheirUpperObject) {
  EXPECT_EQ(CopiedUpWhileListed(lamina_root()), "ok");
  EXPECT_EQ(CopiedUpWhileListed(kernel_root()), "ok");
}

TEST_F(OverlayReaddirTest, InterleavedReadersAndRepeatedWalks) {
  // Two readers interleaved on one directory, a change between their
  // chunks, then a third walk after each kind of change.
  const std::string dir = lamina_root() + "/big";
  int a = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  int b = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  std::map<std::string, int> seen_a, seen_b;
  ReadSome(a, 1024, seen_a);
  ReadSome(b, 2048, seen_b);
  ASSERT_EQ(mkdir((dir + "/made").c_str(), 0755), 0);
  ReadSome(a, 1024, seen_a);
  ASSERT_EQ(rename((dir + "/n1").c_str(), (dir + "/renamed").c_str()), 0);
  while (ReadSome(a, 1024, seen_a) || ReadSome(b, 1024, seen_b)) {
  }
  close(a);
  close(b);
  for (auto* seen : {&seen_a, &seen_b}) {
    for (const auto& [name, count] : *seen) EXPECT_EQ(count, 1) << name;
    for (int i = 2; i < 500; ++i) EXPECT_EQ(seen->count("n" + std::to_string(i)), 1U) << i;
  }
  std::vector<std::string> after = ListDir(dir);
  EXPECT_EQ(after.size(), 501U);
  EXPECT_EQ(std::count(after.begin(), after.end(), "made"), 1);
  EXPECT_EQ(std::count(after.begin(), after.end(), "renamed"), 1);
  EXPECT_EQ(std::count(after.begin(), after.end(), "n1"), 0);
  ASSERT_EQ(rmdir((dir + "/made").c_str()), 0);
  ASSERT_EQ(unlink((dir + "/renamed").c_str()), 0);
  std::vector<std::string> names = ListDir(dir);
  EXPECT_EQ(names.size(), 499U);
  EXPECT_EQ(std::count(names.begin(), names.end(), "made"), 0);
  EXPECT_EQ(std::count(names.begin(), names.end(), "renamed"), 0);
}

}  // namespace
}  // namespace lamina::testing

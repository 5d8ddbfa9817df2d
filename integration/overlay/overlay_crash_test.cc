// The daemon killed with SIGKILL at awkward moments: after a remount the
// view is intact, no half-copied file sits under a visible name, and the
// work directory is clean.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"

namespace lamina::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class OverlayCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"lower", "upper", "work", "mnt"}) dir_.Subdir(name);
  }
  void TearDown() override {
    daemon_.reset();
    ForceUnmount(mnt());
  }

  std::string mnt() const { return dir_.path() + "/mnt"; }
  std::string layer(const char* name) const { return dir_.path() + "/" + name; }

  void StartDaemon() {
    std::string options =
        "lowerdir=" + layer("lower") + ",upperdir=" + layer("upper") + ",workdir=" + layer("work");
    daemon_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{BuiltBinary("cmd/laminafs"), "-f", "-o", options, mnt()});
    ASSERT_TRUE(WaitUntil([&] { return IsFuseMounted(mnt()); }, seconds(10))) << daemon_->output();
  }

  // SIGKILL, then clear the dead mount the way an operator would.
  void Crash() {
    daemon_->Signal(SIGKILL);
    daemon_->Wait(seconds(10));
    ForceUnmount(mnt());
  }

  TempDir dir_{"lamina-crash"};
  std::unique_ptr<ChildProcess> daemon_;
};

// A digest of a file's contents, read in 1 MiB pieces (the files here are
// too big to compare as strings quickly).
std::string Digest(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return "missing";
  std::string buffer(1 << 20, '\0');
  size_t hash = 0, size = 0;
  for (ssize_t n; (n = read(fd, buffer.data(), buffer.size())) > 0;) {
    hash = hash * 1000003 ^ std::hash<std::string_view>()(std::string_view(buffer.data(), n));
    size += static_cast<size_t>(n);
  }
  close(fd);
  return std::to_string(size) + ":" + std::to_string(hash);
}

// A file big enough that copying it up takes a while.
void MakeBigFile(const std::string& path, size_t mib) {
  std::string block(1 << 20, '\0');
  for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>('a' + i % 23);
  int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  for (size_t i = 0; i < mib; ++i) {
    block[0] = static_cast<char>('A' + i % 26);  // every MiB differs
    EXPECT_EQ(write(fd, block.data(), block.size()), static_cast<ssize_t>(block.size()));
  }
  close(fd);
}

TEST_F(OverlayCrashTest, KillDuringCopyUpLeavesLowerViewOrCompleteCopy) {
  MakeBigFile(layer("lower") + "/big", 256);
  std::string lower = Digest(layer("lower") + "/big");
  StartDaemon();
  // The append triggers a copy-up of 256 MiB; kill the daemon in the middle.
  auto writer = std::async(std::launch::async, [&] {
    int fd = open((mnt() + "/big").c_str(), O_WRONLY | O_APPEND);
    if (fd >= 0) close(fd);
  });
  std::this_thread::sleep_for(milliseconds(30));
  Crash();
  writer.wait();

  // Nothing half-copied under the visible name.
  struct stat st;
  if (stat((layer("upper") + "/big").c_str(), &st) == 0) {
    EXPECT_EQ(Digest(layer("upper") + "/big"), lower) << "a partial copy became visible";
  }
  StartDaemon();
  EXPECT_EQ(Digest(mnt() + "/big"), lower);
  EXPECT_TRUE(ListDir(layer("work") + "/work").empty()) << "staging area not cleaned";
  // And the mount works: the copy-up now completes.
  int fd = open((mnt() + "/big").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "!", 1), 1);
  close(fd);
  ASSERT_EQ(stat((mnt() + "/big").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, (256 << 20) + 1);
  EXPECT_EQ(Digest(layer("lower") + "/big"), lower);
}

TEST_F(OverlayCrashTest, FsyncedDataSurvivesAKill) {
  StartDaemon();
  std::string data(1 << 20, 'd');
  int fd = open((mnt() + "/journal").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
  Crash();
  StartDaemon();
  EXPECT_EQ(ReadFile(mnt() + "/journal"), data);
}

TEST_F(OverlayCrashTest, KillDuringACreateBurstLeavesAWorkingMount) {
  StartDaemon();
  auto burst = std::async(std::launch::async, [&] {
    for (int i = 0; i < 5000; ++i) {
      int fd = open((mnt() + "/f" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644);
      if (fd < 0) return;  // the daemon is gone
      close(fd);
    }
  });
  std::this_thread::sleep_for(milliseconds(200));
  Crash();
  burst.wait();
  StartDaemon();
  // Every name that exists is a complete, readable file, and new ones work.
  for (const std::string& name : ListDir(mnt())) {
    struct stat st;
    ASSERT_EQ(stat((mnt() + "/" + name).c_str(), &st), 0) << name;
    EXPECT_TRUE(S_ISREG(st.st_mode)) << name;
  }
  WriteFile(mnt() + "/after", "after");
  EXPECT_EQ(ReadFile(mnt() + "/after"), "after");
  EXPECT_TRUE(ListDir(layer("work") + "/work").empty());
}

}  // namespace
}  // namespace lamina::testing

// How a served mount ends: SIGTERM, unmount from outside, kernel abort.
// The daemon is the lamina-memfs binary, run as a child process.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;

class MemfsLifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mnt_ = dir_.Subdir("mnt");
    stats_ = dir_.path() + "/stats.json";
    daemon_ = std::make_unique<ChildProcess>(std::vector<std::string>{
        BuiltBinary("core/examples/lamina-memfs"), "--stats=" + stats_, mnt_});
    ASSERT_TRUE(daemon_->WaitForOutput("serving", seconds(10))) << daemon_->output();
    ASSERT_TRUE(IsFuseMounted(mnt_));
    ASSERT_EQ(ReadFile(mnt_ + "/hello.txt"), "Hello from Lamina's FUSE core!\n");
  }

  void TearDown() override {
    daemon_.reset();  // SIGKILLs a daemon a failed test left running
    ForceUnmount(mnt_);
  }

  // The daemon exited 0 and nothing is left mounted.
  void ExpectCleanExit() {
    std::optional<int> status = daemon_->Wait(seconds(10));
    ASSERT_TRUE(status.has_value()) << "daemon still running";
    EXPECT_EQ(*status, 0) << daemon_->output();
    EXPECT_FALSE(IsFuseMounted(mnt_));
  }

  TempDir dir_;
  std::string mnt_;
  std::string stats_;
  std::unique_ptr<ChildProcess> daemon_;
};

TEST_F(MemfsLifecycleTest, SigtermUnmountsAndExits) {
  daemon_->Signal(SIGTERM);
  ExpectCleanExit();
  // Stats are written at the end of the session.
  EXPECT_NE(ReadFile(stats_).find("\"LOOKUP\""), std::string::npos);
}

TEST_F(MemfsLifecycleTest, SigintUnmountsAndExits) {
  daemon_->Signal(SIGINT);
  ExpectCleanExit();
}

TEST_F(MemfsLifecycleTest, UnmountFromOutsideEndsDaemon) {
  ASSERT_EQ(system(("umount " + mnt_).c_str()), 0);
  ExpectCleanExit();
}

TEST_F(MemfsLifecycleTest, FusermountEndsDaemon) {
  ASSERT_EQ(system(("fusermount3 -u " + mnt_).c_str()), 0);
  ExpectCleanExit();
}

TEST_F(MemfsLifecycleTest, KernelAbortEndsDaemonAndRemovesDeadMount) {
  ASSERT_TRUE(AbortConnection(mnt_));
  ExpectCleanExit();
}

TEST_F(MemfsLifecycleTest, SigtermWhileFileIsOpenStillExits) {
  // A lazily detached mount stays alive while a file is open in it; the
  // daemon must not wait for that forever.
  int fd = open((mnt_ + "/hello.txt").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  daemon_->Signal(SIGTERM);
  ExpectCleanExit();
  char c;
  EXPECT_EQ(read(fd, &c, 1), -1);  // the connection was aborted under it
  close(fd);
}

TEST_F(MemfsLifecycleTest, Sigusr1WritesStats) {
  daemon_->Signal(SIGUSR1);
  EXPECT_TRUE(WaitUntil([&] { return ReadFile(stats_).find("\"INIT\"") != std::string::npos; },
                        seconds(5)));
  EXPECT_TRUE(daemon_->running());
}

}  // namespace
}  // namespace lamina::testing

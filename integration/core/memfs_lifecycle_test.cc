// How a served mount ends: SIGTERM, unmount from outside, kernel abort.
// The daemon is the lamina-memfs binary, run as a child process, over
// /dev/fuse and over FUSE-over-io_uring.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "integration/core/memfs_fixture.h"
#include "integration/harness/mount_harness.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;

class MemfsLifecycleTest : public ::testing::TestWithParam<Via> {
 protected:
  void SetUp() override {
    std::vector<std::string> argv = {BuiltBinary("core/examples/lamina-memfs")};
    if (GetParam() == Via::kIoUring) {
      uring_.emplace(/*enable=*/true);
      if (!uring_->supported()) {
        GTEST_SKIP() << "FUSE-over-io_uring unsupported: " << uring_->unsupported_reason();
      }
      ASSERT_TRUE(uring_->applied()) << "cannot set enable_uring";
      argv.push_back("--io-uring");
    }
    mnt_ = dir_.Subdir("mnt");
    stats_ = dir_.path() + "/stats.json";
    argv.push_back("--stats=" + stats_);
    argv.push_back(mnt_);
    daemon_ = std::make_unique<ChildProcess>(argv);
    std::string serving = GetParam() == Via::kIoUring ? "through io_uring" : "through /dev/fuse";
    ASSERT_TRUE(daemon_->WaitForOutput(serving, seconds(10))) << daemon_->output();
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

  std::optional<FuseUringSetting> uring_;
  TempDir dir_;
  std::string mnt_;
  std::string stats_;
  std::unique_ptr<ChildProcess> daemon_;
};

INSTANTIATE_TEST_SUITE_P(Transports, MemfsLifecycleTest,
                         ::testing::Values(Via::kDevFuse, Via::kIoUring), ViaName);

TEST_P(MemfsLifecycleTest, SigtermUnmountsAndExits) {
  daemon_->Signal(SIGTERM);
  ExpectCleanExit();
  // Stats are written at the end of the session.
  EXPECT_NE(ReadFile(stats_).find("\"LOOKUP\""), std::string::npos);
}

TEST_P(MemfsLifecycleTest, SigintUnmountsAndExits) {
  daemon_->Signal(SIGINT);
  ExpectCleanExit();
}

TEST_P(MemfsLifecycleTest, UnmountFromOutsideEndsDaemon) {
  ASSERT_EQ(system(("umount " + mnt_).c_str()), 0);
  ExpectCleanExit();
}

TEST_P(MemfsLifecycleTest, FusermountEndsDaemon) {
  ASSERT_EQ(system(("fusermount3 -u " + mnt_).c_str()), 0);
  ExpectCleanExit();
}

TEST_P(MemfsLifecycleTest, KernelAbortEndsDaemonAndRemovesDeadMount) {
  ASSERT_TRUE(AbortConnection(mnt_));
  ExpectCleanExit();
}

TEST_P(MemfsLifecycleTest, SigtermWhileFileIsOpenStillExits) {
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

TEST_P(MemfsLifecycleTest, Sigusr1WritesStats) {
  daemon_->Signal(SIGUSR1);
  EXPECT_TRUE(WaitUntil([&] { return ReadFile(stats_).find("\"INIT\"") != std::string::npos; },
                        seconds(5)));
  EXPECT_TRUE(daemon_->running());
}

}  // namespace
}  // namespace lamina::testing

// Busy polling over /dev/fuse (Session, BusyPoller): a program that waits
// on each reply is served by the polling worker, an idle mount stops
// polling, and busy_poll = 0 never polls. MemoryFilesystem mounted
// in-process; the window's arithmetic is unit-tested in
// tests/core/busy_poller_test.cc.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "core/examples/memory_filesystem.h"
#include "core/fuse_server.h"
#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"

namespace lamina::testing {
namespace {

using std::chrono::microseconds;

class MemfsBusyPollTest : public ::testing::Test {
 protected:
  void Mount(microseconds limit) {
    mnt_ = dir_.Subdir("mnt");
    ServerOptions options;
    options.mount_options = {"fsname=lamina-test"};
    options.session.threads = 2;
    options.session.busy_poll = limit;
    auto server = FuseServer::Start(fs_, mnt_, options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
  }

  void TearDown() override {
    server_.reset();  // stops, unmounts and joins
    EXPECT_FALSE(IsFuseMounted(mnt_));
  }

  // Creates, writes, reads back and removes `count` files one after the
  // other: each step waits on the reply to the one before.
  void CreateWriteReadUnlink(int count) {
    for (int i = 0; i < count; ++i) {
      std::string path = mnt_ + "/f" + std::to_string(i);
      WriteFile(path, "file " + std::to_string(i));
      ASSERT_EQ(ReadFile(path), "file " + std::to_string(i));
      ASSERT_EQ(unlink(path.c_str()), 0) << path;
    }
  }

  // One LOOKUP each: a name that is missing (MemoryFilesystem does not let
  // the kernel cache that).
  void LookUpMissing(int i) {
    struct stat st;
    std::string path = mnt_ + "/missing" + std::to_string(i);
    ASSERT_EQ(stat(path.c_str(), &st), -1);
    ASSERT_EQ(errno, ENOENT);
  }

  TempDir dir_;
  std::string mnt_;
  examples::MemoryFilesystem fs_;
  std::unique_ptr<FuseServer> server_;
};

TEST_F(MemfsBusyPollTest, ProgramWaitingOnEachReplyIsServedByThePoller) {
  // A generous limit, so a loaded machine's scheduling delays stay inside.
  Mount(microseconds(2000));
  const BusyPoller* poller = server_->session().busy_poller();
  ASSERT_NE(poller, nullptr);
  CreateWriteReadUnlink(200);
  // Each file makes about twelve requests (LOOKUP, CREATE, WRITE, FLUSH,
  // RELEASE, OPEN, READ, FLUSH, RELEASE, UNLINK, ...). Without polling none
  // is caught; a release build catches about 2,390 of the 2,400. The bar is
  // low for sanitizer builds on a loaded machine.
  EXPECT_GT(poller->caught(), 600u);
  EXPECT_EQ(ListDir(mnt_), std::vector<std::string>{});
}

TEST_F(MemfsBusyPollTest, IdleGapsCloseTheWindowAndABurstReopensIt) {
  Mount(microseconds(2000));
  const BusyPoller* poller = server_->session().busy_poller();
  ASSERT_NE(poller, nullptr);
  // 2000 us halves to nothing in 8 gaps past the limit.
  for (int i = 0; i < 12; ++i) {
    LookUpMissing(i);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(poller->window(), microseconds(0)) << "an idle mount still polls";
  const uint64_t caught_while_idle = poller->caught();
  for (int i = 0; i < 100; ++i) LookUpMissing(100 + i);
  EXPECT_GT(poller->window(), microseconds(0)) << "requests close together did not reopen it";
  EXPECT_GT(poller->caught(), caught_while_idle);
}

TEST_F(MemfsBusyPollTest, ZeroNeverPolls) {
  Mount(microseconds(0));
  EXPECT_EQ(server_->session().busy_poller(), nullptr);
  CreateWriteReadUnlink(20);
}

}  // namespace
}  // namespace lamina::testing

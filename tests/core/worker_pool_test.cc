// The session's worker pool over the fake kernel: requests that block in
// the filesystem hold their workers, and the pool starts others so that the
// rest are still answered; it never exceeds its cap, and the extra workers
// go once the burst is over. (The mounted counterpart, with copy-ups from a
// lower layer that blocks, is integration/scenarios/slow_layer_test.cc.)

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "core/examples/memory_filesystem.h"
#include "gtest/gtest.h"
#include "tests/core/fake_kernel.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;

// STATFS blocks until the test opens the gate; everything else is the
// memory filesystem's. The waits are bounded so that a broken pool fails
// the test instead of hanging it.
class GatedFilesystem : public examples::MemoryFilesystem {
 public:
  Result<struct statvfs> StatFs(const Ctx& ctx, NodeId node) override {
    std::unique_lock lock(mu_);
    ++waiting_;
    changed_.notify_all();
    changed_.wait_for(lock, seconds(60), [this] { return open_; });
    --waiting_;
    lock.unlock();
    return MemoryFilesystem::StatFs(ctx, node);
  }

  // Whether `count` STATFS calls are waiting at the gate at once, within a
  // generous bound.
  bool WaitForWaiting(int count) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, seconds(30), [&] { return waiting_ >= count; });
  }

  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  int waiting_ = 0;
  bool open_ = false;
};

bool WaitUntilTrue(const std::function<bool()>& condition) {
  for (int i = 0; i < 3000; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

class WorkerPoolTest : public ::testing::Test {
 protected:
  // Sends `count` STATFS requests and returns their unique ids.
  std::set<uint64_t> SendBlocked(SessionHarness& harness, int count) {
    std::set<uint64_t> uniques;
    for (int i = 0; i < count; ++i) uniques.insert(harness.kernel().Send(abi::kStatfs, ""));
    return uniques;
  }

  // Opens the gate and collects one reply per STATFS in `uniques`.
  void ReleaseAndCollect(SessionHarness& harness, std::set<uint64_t> uniques) {
    fs_.Open();
    while (!uniques.empty()) {
      std::optional<Reply> reply = harness.kernel().Receive();
      ASSERT_TRUE(reply.has_value()) << uniques.size() << " STATFS replies missing";
      EXPECT_EQ(reply->error(), 0);
      EXPECT_EQ(uniques.erase(reply->header.unique), 1u) << "unexpected #" << reply->header.unique;
    }
  }

  GatedFilesystem fs_;
};

TEST_F(WorkerPoolTest, RequestsBehindBlockedOnesAreStillAnswered) {
  SessionHarness harness(fs_, /*threads=*/1, /*max_threads=*/8);
  harness.StartAndInit();
  // Three requests block in the filesystem: more than the one worker the
  // session started with.
  std::set<uint64_t> blocked = SendBlocked(harness, 3);
  ASSERT_TRUE(fs_.WaitForWaiting(3)) << "the blocked requests did not all reach the filesystem";
  // Two more, which need workers of their own.
  Reply getattr = harness.kernel().Call(abi::kGetattr, Bytes(abi::GetattrIn{}));
  EXPECT_EQ(getattr.error(), 0);
  RequestOptions lookup;
  Reply missing = harness.kernel().Call(abi::kLookup, Name("absent"), lookup);
  EXPECT_EQ(missing.error(), ENOENT);
  ReleaseAndCollect(harness, blocked);
  WorkerPool::Counts counts = harness.session().workers();
  EXPECT_GE(counts.peak, 4);
  EXPECT_LE(counts.peak, 8);
}

TEST_F(WorkerPoolTest, NeverMoreWorkersThanTheCap) {
  SessionHarness harness(fs_, /*threads=*/1, /*max_threads=*/3);
  harness.StartAndInit();
  std::set<uint64_t> blocked = SendBlocked(harness, 5);
  // Three workers, all blocked; the other two requests wait for one.
  ASSERT_TRUE(fs_.WaitForWaiting(3));
  EXPECT_EQ(harness.session().workers().running, 3);
  ReleaseAndCollect(harness, blocked);
  EXPECT_EQ(harness.session().workers().peak, 3);
}

TEST_F(WorkerPoolTest, ExtraWorkersExitOnceIdle) {
  SessionHarness harness(fs_, /*threads=*/2, /*max_threads=*/16);
  harness.StartAndInit();
  std::set<uint64_t> blocked = SendBlocked(harness, 6);
  ASSERT_TRUE(fs_.WaitForWaiting(6));
  // One more than the blocked requests, once the last has been held a while.
  EXPECT_TRUE(WaitUntilTrue([&] { return harness.session().workers().free == 1; }));
  EXPECT_EQ(harness.session().workers().running, 7);
  ReleaseAndCollect(harness, blocked);
  // Each extra worker leaves as it finds two others free; the two the
  // session started with stay.
  EXPECT_TRUE(WaitUntilTrue([&] { return harness.session().workers().running == 2; }))
      << harness.session().workers().running << " workers still running";
  EXPECT_EQ(harness.session().workers().started, 5u);
  // The pool still serves.
  EXPECT_EQ(harness.kernel().Call(abi::kGetattr, Bytes(abi::GetattrIn{})).error(), 0);
  EXPECT_TRUE(harness.Stop().ok());
  EXPECT_FALSE(harness.session().running());
}

TEST_F(WorkerPoolTest, AFixedPoolServesInOrder) {
  // max_threads at or below threads: no worker is ever added.
  SessionHarness harness(fs_, /*threads=*/1, /*max_threads=*/1);
  harness.StartAndInit();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(harness.kernel().Call(abi::kGetattr, Bytes(abi::GetattrIn{})).error(), 0);
  }
  EXPECT_EQ(harness.session().workers().peak, 1);
  EXPECT_EQ(harness.session().workers().started, 0u);
}

}  // namespace
}  // namespace lamina::testing

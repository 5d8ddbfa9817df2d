#include "core/compact_shared_mutex.h"

#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace lamina {
namespace {

TEST(CompactSharedMutexTest, IsFourBytes) {
  EXPECT_EQ(sizeof(CompactSharedMutex), 4u);
}

TEST(CompactSharedMutexTest, TryLockRespectsHolders) {
  CompactSharedMutex mu;
  ASSERT_TRUE(mu.try_lock_shared());
  EXPECT_TRUE(mu.try_lock_shared());  // readers share
  EXPECT_FALSE(mu.try_lock());        // a writer waits for them
  mu.unlock_shared();
  mu.unlock_shared();
  ASSERT_TRUE(mu.try_lock());
  EXPECT_FALSE(mu.try_lock());
  EXPECT_FALSE(mu.try_lock_shared());
  mu.unlock();
  EXPECT_TRUE(mu.try_lock_shared());
  mu.unlock_shared();
}

// Writers keep two counters equal and readers check they always are, with
// enough contention that threads sleep in the futex and are woken.
TEST(CompactSharedMutexTest, WritersExcludeEveryoneReadersExcludeWriters) {
  CompactSharedMutex mu;
  long first = 0, second = 0;
  constexpr int kWriters = 3, kReaders = 3, kRounds = 20000;
  std::atomic<int> torn{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        std::unique_lock lock(mu);
        ++first;
        if (i % 1000 == 0) std::this_thread::yield();  // hold it a while: others sleep
        ++second;
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        std::shared_lock lock(mu);
        if (first != second) torn.fetch_add(1);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(first, long{kWriters} * kRounds);
  EXPECT_EQ(second, first);
}

// A writer blocked behind readers gets the lock once the last one leaves.
TEST(CompactSharedMutexTest, LastReaderWakesWaitingWriter) {
  CompactSharedMutex mu;
  mu.lock_shared();
  mu.lock_shared();
  std::atomic<bool> got{false};
  std::thread writer([&] {
    std::unique_lock lock(mu);
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let it sleep
  EXPECT_FALSE(got.load());
  mu.unlock_shared();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(got.load());
  mu.unlock_shared();
  writer.join();
  EXPECT_TRUE(got.load());
}

}  // namespace
}  // namespace lamina

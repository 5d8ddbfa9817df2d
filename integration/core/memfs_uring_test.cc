// FUSE-over-io_uring specifics, beyond the basic operations that
// memfs_mount_test.cc runs over every transport: requests really come
// through the ring of the caller's CPU, several threads keep every queue
// busy at once, FORGET and notifications still travel over /dev/fuse, and
// the mount ends cleanly however it is ended.

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/fuse_mount.h"
#include "core/io_uring_transport.h"
#include "core/session.h"
#include "gtest/gtest.h"
#include "integration/core/memfs_fixture.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;

// Runs only with the rings in use.
class MemfsIoUringTest : public MemfsMountTest {
 protected:
  const IoUringTransport& uring() const { return *server_->io_uring(); }
};

INSTANTIATE_TEST_SUITE_P(Transports, MemfsIoUringTest, ::testing::Values(Via::kIoUring), ViaName);

bool PinToCpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

TEST_P(MemfsIoUringTest, RequestsComeThroughTheRing) {
  ASSERT_EQ(uring().queue_count(), static_cast<int>(PossibleCpus().size()));
  uint64_t before = uring().requests();
  uint64_t lookups = server_->session().stats().Get(abi::kLookup).count;
  struct stat st;
  // Each a fresh name: one LOOKUP each that only the daemon can answer.
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(stat(Path("absent-" + std::to_string(i)).c_str(), &st), -1);
    EXPECT_EQ(errno, ENOENT);
  }
  EXPECT_GE(uring().requests() - before, 10u);
  EXPECT_GE(server_->session().stats().Get(abi::kLookup).count - lookups, 10u);
}

TEST_P(MemfsIoUringTest, EachCpuIsServedByItsOwnQueue) {
  std::vector<int> cpus = PossibleCpus();
  std::vector<uint64_t> before;
  for (size_t qid = 0; qid < cpus.size(); ++qid) before.push_back(uring().requests(qid));
  std::vector<char> pinned(cpus.size(), 0);
  std::vector<std::thread> threads;
  for (size_t qid = 0; qid < cpus.size(); ++qid) {
    threads.emplace_back([&, qid] {
      if (!PinToCpu(cpus[qid])) return;  // offline CPU
      pinned[qid] = 1;
      std::string dir = Path("cpu" + std::to_string(cpus[qid]));
      ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
      for (int i = 0; i < 50; ++i) {
        std::string name = dir + "/f" + std::to_string(i);
        int fd = open(name.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
        ASSERT_GE(fd, 0) << name;
        close(fd);
      }
    });
  }
  for (auto& t : threads) t.join();
  int served = 0;
  for (size_t qid = 0; qid < cpus.size(); ++qid) {
    if (!pinned[qid]) continue;
    // 50 creates are at least 100 requests (LOOKUP + CREATE each).
    EXPECT_GE(uring().requests(qid) - before[qid], 100u) << "queue " << qid;
    ++served;
  }
  EXPECT_GE(served, 1);
}

TEST_P(MemfsIoUringTest, ConcurrentCreatesStatsAndUnlinks) {
  // Several threads per CPU, pinned round-robin: left alone, the callers
  // tend to gather on the CPU whose queue worker wakes them, and one queue
  // would serve everything.
  constexpr int kThreads = 8;
  constexpr int kFiles = 150;
  std::vector<int> cpus = PossibleCpus();
  std::atomic<int> failures{0};
  std::vector<std::atomic<bool>> used(cpus.size());  // by queue
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      if (PinToCpu(cpus[t % cpus.size()])) used[t % cpus.size()] = true;
      std::string dir = Path("t" + std::to_string(t));
      if (mkdir(dir.c_str(), 0755) != 0) ++failures;
      for (int i = 0; i < kFiles; ++i) {
        std::string name = dir + "/f" + std::to_string(i);
        int fd = open(name.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd < 0 || write(fd, name.data(), name.size()) != static_cast<ssize_t>(name.size())) {
          ++failures;
        }
        if (fd >= 0) close(fd);
        struct stat st;
        if (stat(name.c_str(), &st) != 0 || st.st_size != static_cast<off_t>(name.size())) {
          ++failures;
        }
      }
      if (ListDir(dir).size() != kFiles) ++failures;
      for (int i = 0; i < kFiles; ++i) {
        if (unlink((dir + "/f" + std::to_string(i)).c_str()) != 0) ++failures;
      }
      if (rmdir(dir.c_str()) != 0) ++failures;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"docs", "hello.txt"}));
  for (int qid = 0; qid < uring().queue_count(); ++qid) {
    if (!used[qid]) continue;  // an offline CPU
    EXPECT_GT(uring().requests(qid), 0u) << "queue " << qid << " never served";
  }
  // Unlinked files are forgotten; FORGET never comes through a ring, so
  // this is the /dev/fuse worker at work.
  Stats& stats = server_->session().stats();
  EXPECT_TRUE(WaitUntil(
      [&] { return stats.Get(abi::kForget).count + stats.Get(abi::kBatchForget).count > 0; },
      seconds(5)));
}

TEST_P(MemfsIoUringTest, ForgetsOfUnlinkedFilesArriveInBatches) {
  constexpr int kFiles = 400;
  for (int i = 0; i < kFiles; ++i) WriteFile(Path("f" + std::to_string(i)), "x");
  Stats& stats = server_->session().stats();
  auto forget_reads = [&] {
    return stats.Get(abi::kForget).count + stats.Get(abi::kBatchForget).count;
  };
  const uint64_t reads_before = forget_reads();
  const size_t nodes_before = fs_.referenced_nodes();
  for (int i = 0; i < kFiles; ++i) {
    ASSERT_EQ(unlink(Path("f" + std::to_string(i)).c_str()), 0) << i;
  }
  // Every unlinked file is forgotten, and the counts add up exactly...
  ASSERT_TRUE(
      WaitUntil([&] { return fs_.referenced_nodes() == nodes_before - kFiles; }, seconds(10)))
      << fs_.referenced_nodes() << " nodes referenced, " << nodes_before - kFiles << " expected";
  // ...but the forget worker was not woken once per file: each evicted
  // inode queues one forget, and reading one every time would make
  // kFiles reads.
  EXPECT_LT(forget_reads() - reads_before, uint64_t{kFiles / 2});
}

TEST_P(MemfsIoUringTest, NotificationsStillReachTheKernel) {
  struct stat st;
  ASSERT_EQ(stat(Path("hello.txt").c_str(), &st), 0);
  ASSERT_EQ(st.st_size, 6);
  auto cached_at = std::chrono::steady_clock::now();
  fs_.AddFile("hello.txt", "a longer text\n");
  server_->session().notifier().InvalidateInode(st.st_ino, -1);
  ASSERT_TRUE(WaitUntil(
      [&] { return stat(Path("hello.txt").c_str(), &st) == 0 && st.st_size == 14; }, seconds(5)));
  // The attributes were cached for a second: seeing the change sooner
  // means the invalidation (written to /dev/fuse) did it.
  EXPECT_LT(std::chrono::steady_clock::now() - cached_at, std::chrono::milliseconds(900));
}

TEST_P(MemfsIoUringTest, UnmountFromOutsideEndsTheSession) {
  WriteFile(Path("f"), "data");
  ASSERT_EQ(system(("umount " + mnt_).c_str()), 0);
  ASSERT_TRUE(WaitUntil([&] { return !server_->session().running(); }, seconds(10)))
      << "workers still running after umount";
  server_->Wait();
  EXPECT_FALSE(IsFuseMounted(mnt_));
}

TEST_P(MemfsIoUringTest, StopWithAnOpenFileAbortsAfterTheGracePeriod) {
  int fd = open(Path("hello.txt").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  server_->Stop(absl::Milliseconds(200));
  EXPECT_TRUE(WaitUntil([&] { return !server_->session().running(); }, seconds(10)));
  char c;
  EXPECT_EQ(read(fd, &c, 1), -1);  // the connection was aborted under it
  close(fd);
  server_->Wait();
  EXPECT_FALSE(IsFuseMounted(mnt_));
}

// The kernel was promised io_uring (the INIT reply carried the flag) but
// refuses every REGISTER, here because the payload buffers are too small.
// It then returns to /dev/fuse by itself, and so must the queues: the mount
// serves instead of hanging.
TEST(IoUringRegistrationTest, RefusedAfterInitFallsBackToDevFuse) {
  FuseUringSetting uring(/*enable=*/true);
  if (!uring.supported()) {
    GTEST_SKIP() << "FUSE-over-io_uring unsupported: " << uring.unsupported_reason();
  }
  ASSERT_TRUE(uring.applied());
  TempDir dir;
  std::string mnt = dir.Subdir("mnt");
  examples::MemoryFilesystem fs;
  fs.AddFile("hello.txt", "hello\n");
  auto mount = FuseMount::Create(mnt, {"fsname=lamina-test", "allow_other"});
  ASSERT_TRUE(mount.ok()) << mount.status().ToString();
  IoUringTransport::Options options;
  options.payload_size = 4096;  // the kernel needs at least 1 MiB here
  IoUringTransport transport((*mount)->fd(), options);
  Session session(fs, transport);
  ASSERT_TRUE(session.Handshake().ok());
  EXPECT_TRUE(transport.active());  // promised
  session.Start();

  EXPECT_EQ(ReadFile(mnt + "/hello.txt"), "hello\n");
  WriteFile(mnt + "/new", std::string(100000, 'n'));
  EXPECT_EQ(ReadFile(mnt + "/new"), std::string(100000, 'n'));
  EXPECT_EQ(ListDir(mnt), (std::vector<std::string>{"hello.txt", "new"}));
  EXPECT_EQ(transport.requests(), 0u);
  EXPECT_GT(session.stats().Get(abi::kLookup).count, 0u);

  (*mount)->Unmount();
  session.Wait();
  EXPECT_FALSE(IsFuseMounted(mnt));
}

}  // namespace
}  // namespace lamina::testing

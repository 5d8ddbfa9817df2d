// flock(2) waiters through `laminafs passthrough` wait in the kernel, never
// in a daemon worker: a user who holds a lock and a few who wait for it
// must not stop the mount from serving everyone else. Forwarded to the
// source, each waiter blocked a worker in flock(); with as many waiters as
// workers nothing else was answered, and the holder's unlock (RELEASE)
// found no worker either: the mount hung for good.
// The daemon runs as a child process so that a hang fails the test (with
// bounded waits) instead of hanging it, and is then aborted and killed.

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;

// Forks a child that becomes uid/gid `id` and runs `body`; its pid.
pid_t ForkAs(uid_t id, const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setresgid(id, id, id) != 0 || setresuid(id, id, id) != 0) {
      _exit(100);
    }
    _exit(body());
  }
  return pid;
}

// Children not reaped yet; on destruction, the mount's connection is
// aborted (freeing whoever is stuck on it) and they are killed and reaped.
class Children {
 public:
  explicit Children(std::string mountpoint) : mountpoint_(std::move(mountpoint)) {}
  ~Children() {
    if (running_.empty()) return;
    AbortConnection(mountpoint_);
    for (pid_t pid : running_) kill(pid, SIGKILL);
    for (pid_t pid : running_) waitpid(pid, nullptr, 0);
  }
  pid_t Add(pid_t pid) {
    if (pid > 0) running_.push_back(pid);
    return pid;
  }
  // Waits at most `bound` for `pid`; its exit status, or -1 if it is
  // still running.
  int Wait(pid_t pid, seconds bound) {
    int status = 0;
    if (!WaitUntil([&] { return waitpid(pid, &status, WNOHANG) == pid; }, bound)) return -1;
    std::erase(running_, pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  std::string mountpoint_;
  std::vector<pid_t> running_;
};

// Where `pid` sleeps in the kernel.
std::string Wchan(pid_t pid) {
  return ReadFile("/proc/" + std::to_string(pid) + "/wchan");
}

TEST(passthrough_cli_flock, WaitersDoNotStopTheMount) {
  ASSERT_EQ(geteuid(), 0U) << "needs root";
  TempDir dir("lamina-flock");
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
  const std::string source = dir.Subdir("src"), mnt = dir.Subdir("mnt");
  WriteFile(source + "/lock", "");
  ASSERT_EQ(chmod((source + "/lock").c_str(), 0666), 0);
  // A fixed pool: a growing one (max_threads) only moves the limit, which
  // a user can reach with as many waiters.
  constexpr int kWorkers = 2;
  ChildProcess daemon({BuiltBinary("cmd/laminafs"), "passthrough", "-f", "-o",
                       "allow_other,timeout=0,threads=" + std::to_string(kWorkers) +
                           ",max_threads=" + std::to_string(kWorkers),
                       source, mnt});
  ASSERT_TRUE(WaitUntil([&] { return IsFuseMounted(mnt); }, seconds(10))) << daemon.output();
  const std::string lock = mnt + "/lock";

  // Declared after the daemon: destroyed first, while the daemon (killed
  // by its own destructor) still holds the mount.
  Children children(mnt);

  // The holder: a stranger takes the lock and keeps it until told.
  int held[2], release[2];
  ASSERT_EQ(pipe2(held, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(release, O_CLOEXEC), 0);
  const pid_t holder = children.Add(ForkAs(65534, [&] {
    int fd = open(lock.c_str(), O_RDWR | O_CLOEXEC);
    char byte;
    if (fd < 0 || flock(fd, LOCK_EX) != 0 || write(held[1], "h", 1) != 1) return 1;
    return read(release[0], &byte, 1) == 1 ? 0 : 2;  // exits, closing fd: unlocked
  }));
  close(held[1]);
  close(release[0]);
  char byte = 0;
  ASSERT_EQ(read(held[0], &byte, 1), 1) << "the holder did not get the lock";

  // More waiters than workers, each blocked in flock(LOCK_EX).
  std::vector<pid_t> waiters;
  for (int i = 0; i < kWorkers + 1; ++i) {
    waiters.push_back(children.Add(ForkAs(1000, [&] {
      int fd = open(lock.c_str(), O_RDWR | O_CLOEXEC);
      return fd >= 0 && flock(fd, LOCK_EX) == 0 ? 0 : 1;
    })));
  }
  // Each waits either in the kernel's lock code or on a FUSE request.
  const bool all_waiting = WaitUntil(
      [&] {
        for (pid_t pid : waiters) {
          const std::string wchan = Wchan(pid);
          if (wchan.find("lock") == std::string::npos && wchan != "request_wait_answer") {
            return false;
          }
        }
        return true;
      },
      seconds(20));
  EXPECT_TRUE(all_waiting) << "waiters did not block";

  // Meanwhile the mount serves others.
  const pid_t probe = children.Add(ForkAs(1001, [&] {
    struct stat st;
    return stat((mnt + "/other").c_str(), &st) == -1 && errno == ENOENT ? 0 : 1;
  }));
  EXPECT_EQ(children.Wait(probe, seconds(20)), 0) << "a stat waited behind the flock waiters";

  // The unlock lets the waiters through, one after the other.
  EXPECT_EQ(write(release[1], "r", 1), 1);
  EXPECT_EQ(children.Wait(holder, seconds(20)), 0);
  for (pid_t pid : waiters) EXPECT_EQ(children.Wait(pid, seconds(20)), 0) << "waiter " << pid;
  close(held[0]);
  close(release[1]);
  if (::testing::Test::HasFailure()) return;  // Children aborts the mount, the daemon is killed
  ForceUnmount(mnt);
  EXPECT_EQ(daemon.Wait(seconds(10)), 0);
}

}  // namespace
}  // namespace lamina::testing

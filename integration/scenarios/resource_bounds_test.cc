// One user of a mount cannot exhaust the daemon (security review "No way
// in", item 5). uid 65534 holding 19,979 opens of one file made root's cat
// of another fail with "Too many open files"; 300 opens of a 20,000-entry
// directory with timeout=0 took the daemon from 8.7 MB to 526 MB.
//
// Here uid 65534 holds as many opens of files and directories as it can,
// through `laminafs` (the overlay) and `laminafs passthrough`, with FUSE
// passthrough on and off, timeout=0 (so that every open directory is a
// handle of the daemon's). It must get EMFILE at its share of the daemon's
// descriptors (core/descriptor_budget.h) or ENOMEM at its share of the
// listing memory (overlay/listing_store.h), while root and another uid
// still open, read, create, list and copy up; and once it lets go, the
// daemon's descriptors and memory must be back near where they started.
// Bounds, not timings: every wait below is a generous limit on something
// that must happen, never a measured duration.

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"
#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

using std::chrono::seconds;

constexpr uid_t kHolder = 65534;  // the user who takes all it can
constexpr uid_t kOther = 1000;    // another user, who must not notice

// The daemon plans with this many descriptors (-o nofile=), so that the
// shares are the same on every host: 1/8 of it for descriptors open files
// keep, 3/4 for nodes, of which half may be kept by open files; a quarter
// of each for one uid.
constexpr int kNofile = 4096;
constexpr int kHandleShare = kNofile / 8 / 4;       // 128
constexpr int kPinShare = kNofile * 3 / 4 / 2 / 4;  // 384

constexpr int kFiles = 600;  // more than a uid may hold open
constexpr int kDirs = 400;
constexpr int kRepeats = 1000;  // opens of one file: more than a share

// The daemon's own figures (stats=, written on SIGUSR1). Each dump also
// goes to the daemon's log, a pipe the harness reads only at the end: ask
// sparingly, or the pipe fills and the daemon waits on it.
class DaemonStats {
 public:
  DaemonStats(pid_t pid, std::string path) : pid_(pid), path_(std::move(path)) {}
  // The gauge `name` now, or -1 if the daemon did not say.
  long Gauge(const std::string& name) const {
    unlink(path_.c_str());
    kill(pid_, SIGUSR1);
    std::string json;
    WaitUntil(
        [&] {
          json = ReadFile(path_);
          return json.find("\"gauges\"") != std::string::npos && json.ends_with("}\n");
        },
        seconds(20));
    std::smatch match;
    if (!std::regex_search(json, match, std::regex("\"" + name + "\":([0-9]+)"))) return -1;
    return std::stol(match[1]);
  }
  // Asks every half second, at most `bound` long, until `done(gauge)`.
  bool WaitFor(const std::string& name, const std::function<bool(long)>& done,
               seconds bound) const {
    for (auto end = std::chrono::steady_clock::now() + bound;;) {
      if (done(Gauge(name))) return true;
      if (std::chrono::steady_clock::now() > end) return false;
      usleep(500'000);
    }
  }

 private:
  pid_t pid_;
  std::string path_;
};

// Built with ASan or TSan (and so is the daemon, from the same build).
// Their allocators keep freed memory in quarantine and add shadow memory,
// so the daemon's RSS says nothing of what it keeps: the RSS bounds hold
// in release builds only, the daemon's own gauges in every build.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

long RssKiB(pid_t pid) {
  const std::string status = ReadFile("/proc/" + std::to_string(pid) + "/status");
  std::smatch match;
  if (!std::regex_search(status, match, std::regex("VmRSS:\\s+([0-9]+) kB"))) return -1;
  return std::stol(match[1]);
}

// Forked children as other users; on destruction the unfinished ones are
// killed and reaped.
class Users {
 public:
  ~Users() {
    for (pid_t pid : running_) kill(pid, SIGKILL);
    for (pid_t pid : running_) waitpid(pid, nullptr, 0);
  }
  // Runs `body` as uid and gid `id` (no supplementary groups), allowed
  // `nofile` descriptors of its own. Returns the child's pid.
  pid_t Start(uid_t id, const std::function<int()>& body, rlim_t nofile = 256) {
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
      struct rlimit limit = {nofile, nofile};
      if (setrlimit(RLIMIT_NOFILE, &limit) != 0 || setgroups(0, nullptr) != 0 ||
          setresgid(id, id, id) != 0 || setresuid(id, id, id) != 0) {
        _exit(100);
      }
      _exit(body());
    }
    if (pid > 0) running_.push_back(pid);
    return pid;
  }
  // The exit status of `pid` (128+signal if killed), or -1 if it did not
  // end within `bound`.
  int Wait(pid_t pid, seconds bound = seconds(60)) {
    int status = 0;
    if (!WaitUntil([&] { return waitpid(pid, &status, WNOHANG) == pid; }, bound)) return -1;
    std::erase(running_, pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  // Runs `body` as `id` to its end.
  int Run(uid_t id, const std::function<int()>& body) { return Wait(Start(id, body)); }

 private:
  std::vector<pid_t> running_;
};

// What the holder got: how many opens of each kind before the first
// failure, and that failure's errno (0: none).
struct Held {
  int repeats = 0, repeats_errno = 0;
  int files = 0, files_errno = 0;
  int dirs = 0, dirs_errno = 0;
};

// uid kHolder opening everything it can under `root` and keeping it open
// until told to let go.
class Holder {
 public:
  Holder(Users& users, const std::string& root) {
    int results[2], release[2];
    if (pipe2(results, O_CLOEXEC) != 0 || pipe2(release, O_CLOEXEC) != 0) return;
    pid_ = users.Start(
        kHolder,
        [&] {
          Held held;
          auto take = [](const std::string& path, int flags, int* count, int* error) {
            int fd = open(path.c_str(), flags | O_CLOEXEC);
            if (fd < 0) {
              *error = errno;
              return false;
            }
            ++*count;
            return true;
          };
          for (int i = 0; i < kRepeats; ++i) {
            if (!take(root + "/files/one", O_RDONLY, &held.repeats, &held.repeats_errno)) break;
          }
          for (int i = 0; i < kFiles; ++i) {
            char name[32];
            std::snprintf(name, sizeof(name), "/files/f%04d", i);
            if (!take(root + name, O_RDONLY, &held.files, &held.files_errno)) break;
          }
          for (int i = 0; i < kDirs; ++i) {
            char name[32];
            std::snprintf(name, sizeof(name), "/dirs/d%03d", i);
            if (!take(root + name, O_RDONLY | O_DIRECTORY, &held.dirs, &held.dirs_errno)) break;
          }
          if (write(results[1], &held, sizeof(held)) != sizeof(held)) return 1;
          char byte;
          return read(release[0], &byte, 1) >= 0 ? 0 : 2;  // exiting closes everything
        },
        /*nofile=*/4 * kRepeats);
    close(results[1]);
    close(release[0]);
    release_ = release[1];
    struct pollfd ready = {results[0], POLLIN, 0};
    Held held;
    if (poll(&ready, 1, 120'000) == 1 && read(results[0], &held, sizeof(held)) == sizeof(held)) {
      held_ = held;
      holding_ = true;
    }
    close(results[0]);
  }
  ~Holder() {
    if (release_ >= 0) close(release_);
  }
  bool holding() const { return holding_; }
  const Held& held() const { return held_; }
  pid_t pid() const { return pid_; }
  // Lets go: the holder exits, closing what it held.
  void Release() {
    if (release_ >= 0 && write(release_, "r", 1) != 1) ADD_FAILURE() << "release";
  }

 private:
  pid_t pid_ = -1;
  int release_ = -1;
  bool holding_ = false;
  Held held_;
};

// Reads `path` whole: 0, or the errno.
int ReadWhole(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buffer[4096];
  while (true) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      int error = errno;
      close(fd);
      return error;
    }
    if (n == 0) break;
  }
  close(fd);
  return 0;
}

// Lists `path` to its end: the number of entries, or -errno.
int CountEntries(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int count = 0;
  char buffer[16384];
  while (true) {
    long n = syscall(SYS_getdents64, fd, buffer, sizeof(buffer));
    if (n < 0) {
      int error = errno;
      close(fd);
      return -error;
    }
    if (n == 0) break;
    for (long pos = 0; pos < n;) {
      unsigned short reclen;
      std::memcpy(&reclen, buffer + pos + 16, sizeof(reclen));
      ++count;
      pos += reclen;
    }
  }
  close(fd);
  return count - 2;  // . and ..
}

// What any user does that must keep working: 0, or which step failed.
int EverydayWork(const std::string& root, const std::string& tag) {
  if (ReadWhole(root + "/shared/readme") != 0) return 10;
  const std::string mine = root + "/shared/new-" + tag;
  int fd = open(mine.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0644);
  if (fd < 0) return 11;
  bool written = write(fd, "data", 4) == 4 && fsync(fd) == 0;
  close(fd);
  if (!written) return 12;
  if (ReadWhole(mine) != 0) return 13;
  if (CountEntries(root + "/shared") < 2) return 14;
  struct stat st;
  if (stat((root + "/files/f0001").c_str(), &st) != 0) return 15;
  if (mkdir((root + "/shared/dir-" + tag).c_str(), 0755) != 0) return 16;
  // A name nobody asked for yet: a lookup the daemon must serve.
  if (stat((root + "/shared/absent-" + tag).c_str(), &st) == 0 || errno != ENOENT) return 17;
  return 0;
}

// Builds the tree every case uses under `dir`.
void BuildTree(const std::string& dir) {
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  for (const char* sub : {"/files", "/dirs", "/shared"}) {
    ASSERT_EQ(mkdir((dir + sub).c_str(), 0755), 0);
  }
  ASSERT_EQ(chmod((dir + "/shared").c_str(), 01777), 0);
  WriteFile(dir + "/files/one", "one");
  for (int i = 0; i < kFiles; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "/files/f%04d", i);
    WriteFile(dir + name, "file");
  }
  for (int i = 0; i < kDirs; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "/dirs/d%03d", i);
    ASSERT_EQ(mkdir((dir + name).c_str(), 0755), 0);
  }
  WriteFile(dir + "/shared/readme", "read me");
  WriteFile(dir + "/rootfile", "root's, copied up when written");
  ASSERT_EQ(chmod((dir + "/shared/readme").c_str(), 0644), 0);
}

// Makes `dir` with `count` entries named `prefix`N: links to one file
// (`target`, made if missing), since a listing is made of names and a link
// costs far less than a file.
void FillDirectory(const std::string& dir, const std::string& prefix, int count,
                   const std::string& target) {
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  if (access(target.c_str(), F_OK) != 0) WriteFile(target, "");
  for (int i = 0; i < count; ++i) {
    const std::string name = dir + "/" + prefix + std::to_string(i);
    ASSERT_EQ(link(target.c_str(), name.c_str()), 0) << name << ": " << strerror(errno);
  }
}

struct Case {
  const char* name;
  bool overlay;      // laminafs (else laminafs passthrough)
  bool passthrough;  // -o passthrough=on (else off)
};

// A laminafs daemon of either kind serving `mnt`, stopped (unmounted,
// killed if it must be) on destruction.
class Daemon {
 public:
  Daemon(const Case& c, const TempDir& dir, const std::string& options) {
    mnt_ = dir.Subdir("mnt");
    const std::string all = options + ",passthrough=" + (c.passthrough ? "on" : "off");
    if (c.overlay) {
      overlay_ = std::make_unique<LaminafsMount>(
          std::vector<std::string>{
              "-o",
              OverlayOptionString({dir.path() + "/tree"}, dir.Subdir("upper"), dir.Subdir("work")) +
                  "," + all},
          mnt_);
      return;
    }
    passthrough_ = std::make_unique<ChildProcess>(std::vector<std::string>{
        BuiltBinary("cmd/laminafs"), "passthrough", "-f", "-o", all, dir.path() + "/tree", mnt_});
    WaitUntil([&] { return IsFuseMounted(mnt_) || !passthrough_->running(); }, seconds(20));
  }
  ~Daemon() { Stop(); }
  // Unmounts and waits for the daemon: its exit status (a sanitizer's
  // report makes it nonzero), or nullopt if it had to be killed.
  std::optional<int> Stop() {
    if (overlay_ != nullptr) return overlay_->Unmount();
    if (IsFuseMounted(mnt_)) ForceUnmount(mnt_);
    std::optional<int> status = passthrough_->Wait(std::chrono::seconds(15));
    if (!status) {
      passthrough_->Signal(SIGKILL);
      passthrough_->Wait(std::chrono::seconds(5));
    }
    return status;
  }
  bool mounted() const { return IsFuseMounted(mnt_); }
  pid_t pid() const { return overlay_ ? overlay_->pid() : passthrough_->pid(); }
  bool running() { return overlay_ ? overlay_->running() : passthrough_->running(); }
  std::string output() const { return overlay_ ? overlay_->output() : passthrough_->output(); }
  const std::string& mnt() const { return mnt_; }

 private:
  std::string mnt_;
  std::unique_ptr<LaminafsMount> overlay_;
  std::unique_ptr<ChildProcess> passthrough_;
};

class ResourceBoundsTest : public ::testing::TestWithParam<Case> {};

// The daemon may plan with kNofile descriptors only if its hard limit (the
// test's, inherited) allows that many: raise it where a host set it lower.
bool AllowNofile() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return false;
  if (limit.rlim_max >= static_cast<rlim_t>(kNofile)) return true;
  limit.rlim_max = kNofile;
  return setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

TEST_P(ResourceBoundsTest, OneUserHoldingAllItCanStopsNobodyElse) {
  ASSERT_EQ(geteuid(), 0U) << "needs root";
  ASSERT_TRUE(AllowNofile()) << strerror(errno);
  const Case& c = GetParam();
  TempDir dir("lamina-bounds");
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
  BuildTree(dir.path() + "/tree");
  const std::string stats = dir.path() + "/stats.json";
  Daemon daemon(
      c, dir,
      "allow_other,timeout=0,max_threads=8,nofile=" + std::to_string(kNofile) + ",stats=" + stats);
  ASSERT_TRUE(daemon.mounted()) << daemon.output();
  const std::string& mnt = daemon.mnt();
  const DaemonStats gauges(daemon.pid(), stats);
  Users users;

  // Where the daemon starts, once it has served a little. Descriptors that
  // nodes hold are left out: the kernel keeps inodes it has seen (and so
  // their nodes) until it needs the memory, however the test goes.
  ASSERT_EQ(users.Run(kOther, [&] { return EverydayWork(mnt, "warm"); }), 0);
  auto others = [&] { return CountFds(daemon.pid()) - gauges.Gauge("node_descriptors"); };
  const long others_before = others();
  const int fds_before = CountFds(daemon.pid());
  const long rss_before = RssKiB(daemon.pid());

  Holder holder(users, mnt);
  ASSERT_TRUE(holder.holding()) << "the holder did not report";
  const Held& held = holder.held();
  std::fprintf(stderr,
               "%s: uid %u held %d opens of one file (errno %d), %d files (errno %d), %d "
               "directories (errno %d); daemon descriptors %d -> %d\n",
               c.name, kHolder, held.repeats, held.repeats_errno, held.files, held.files_errno,
               held.dirs, held.dirs_errno, fds_before, CountFds(daemon.pid()));
  if (c.passthrough) {
    // The kernel holds a backing file per open: the daemon keeps nothing
    // per open, so one file opened again and again costs it nothing more.
    EXPECT_EQ(held.repeats, kRepeats);
    EXPECT_EQ(held.repeats_errno, 0);
    // Each file open pins its node (one of them "one"): EMFILE past the share.
    EXPECT_EQ(held.files, kPinShare - 1);
    EXPECT_EQ(held.files_errno, EMFILE);
    // Directories: the passthrough keeps a descriptor per open directory
    // (none used yet); the overlay pins the directory's node (none left).
    EXPECT_EQ(held.dirs, c.overlay ? 0 : kHandleShare);
    EXPECT_EQ(held.dirs_errno, EMFILE);
  } else {
    // The daemon serves the data: a descriptor per open.
    EXPECT_EQ(held.repeats, kHandleShare);
    EXPECT_EQ(held.repeats_errno, EMFILE);
    EXPECT_EQ(held.files, 0);
    EXPECT_EQ(held.files_errno, EMFILE);
    // An overlay directory keeps no descriptor of its own, only its node:
    // the pins left after "one".
    EXPECT_EQ(held.dirs, c.overlay ? kPinShare - 1 : 0);
    EXPECT_EQ(held.dirs_errno, EMFILE);
  }
  // The daemon holds no more than the budgets allow, far from its limit.
  EXPECT_LT(CountFds(daemon.pid()), kNofile - kNofile / 8) << "the daemon's reserve was spent";

  // Meanwhile everyone else is served as usual.
  EXPECT_EQ(users.Run(kOther, [&] { return EverydayWork(mnt, "other"); }), 0);
  EXPECT_EQ(EverydayWork(mnt, "root"), 0);
  EXPECT_EQ(ReadWhole(mnt + "/files/f0002"), 0);
  // Root may still open many files (its share is larger, and untouched).
  {
    std::vector<int> fds;
    for (int i = 0; i < 100; ++i) {
      char name[32];
      std::snprintf(name, sizeof(name), "/files/f%04d", i);
      int fd = open((mnt + name).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) break;
      fds.push_back(fd);
    }
    EXPECT_EQ(fds.size(), 100U) << strerror(errno);
    for (int fd : fds) close(fd);
  }
  // Writing a file of the tree: in the overlay, a copy-up.
  {
    int fd = open((mnt + "/rootfile").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    EXPECT_GE(fd, 0) << strerror(errno);
    if (fd >= 0) {
      EXPECT_EQ(write(fd, "+", 1), 1);
      close(fd);
    }
  }
  EXPECT_TRUE(daemon.running());

  // Once the holder lets go, everything comes back.
  holder.Release();
  EXPECT_EQ(users.Wait(holder.pid()), 0);
  // The kernel sends the RELEASEs of what the holder's exit closed on its
  // own time (they need not reach the daemon before the holder is gone),
  // each gives back its descriptor and its node's pin: wait for both.
  EXPECT_TRUE(gauges.WaitFor(
      "open_descriptors", [](long n) { return n == 0; }, seconds(60)));
  EXPECT_TRUE(gauges.WaitFor(
      "open_nodes", [](long n) { return n == 0; }, seconds(60)));
  const long others_after = others();
  EXPECT_LE(others_after, others_before + 8)
      << "descriptors besides the nodes' " << others_before << " -> " << others_after;
  // The nodes the kernel keeps stay within their limit.
  EXPECT_LE(gauges.Gauge("node_descriptors"), kNofile * 3 / 4);
  const long rss_after = RssKiB(daemon.pid());
  std::fprintf(stderr,
               "%s: daemon RSS %ld kB -> %ld kB, descriptors %d -> %d (besides nodes' %ld -> "
               "%ld)\n",
               c.name, rss_before, rss_after, fds_before, CountFds(daemon.pid()), others_before,
               others_after);
  if (!kSanitized) {
    EXPECT_LE(rss_after, rss_before + 16 * 1024);
  }
  // And the holder's share is whole again.
  EXPECT_EQ(users.Run(kHolder, [&] { return EverydayWork(mnt, "holder"); }), 0);
  EXPECT_TRUE(daemon.running()) << daemon.output();
  EXPECT_EQ(daemon.Stop(), std::optional<int>(0)) << daemon.output();
}

// Every kind of mount in release builds. Under the sanitizers, which cost
// several times as much, two that between them take every path of the
// budget: the overlay charging descriptors and pins (its open directories
// too), the passthrough opening files through FUSE passthrough and keeping
// a descriptor per open directory.
std::vector<Case> Cases() {
  if (kSanitized) {
    return {Case{"overlay_daemon_io", true, false}, Case{"passthrough_passthrough", false, true}};
  }
  return {Case{"overlay_passthrough", true, true}, Case{"overlay_daemon_io", true, false},
          Case{"passthrough_passthrough", false, true},
          Case{"passthrough_daemon_io", false, false}};
}

INSTANTIATE_TEST_SUITE_P(Mounts, ResourceBoundsTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

// Listings (overlay, timeout=0): opens of one directory share one
// snapshot, a uid past its share of the listing memory gets ENOMEM, and
// the memory is given back when the opens close.
TEST(ListingBoundsTest, OpenDirectoriesShareListingsAndStayWithinTheirShare) {
  ASSERT_EQ(geteuid(), 0U) << "needs root";
  TempDir dir("lamina-listings");
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
  const std::string tree = dir.path() + "/tree";
  ASSERT_EQ(mkdir(tree.c_str(), 0755), 0);
  const std::string target = dir.path() + "/target";
  // The finding's directory; a smaller one under the sanitizers, where
  // each entry listed costs the daemon much more.
  constexpr int kBigEntries = kSanitized ? 5000 : 20000;
  FillDirectory(tree + "/big", "a-file-of-a-large-directory-", kBigEntries, target);
  constexpr int kMidDirs = 12, kMidEntries = 1000;
  for (int d = 0; d < kMidDirs; ++d) {
    FillDirectory(tree + "/d" + std::to_string(d), "entry-", kMidEntries, target);
  }
  // 8 MiB for all listings: 2 MiB for one uid's open directories, which
  // the large listing (about 1.6 MB, with its opens) nearly fills, so
  // that a few of the others take the rest (about 58 kB each). With the
  // smaller directory (about 0.46 MB), 2.5 MiB: 640 KiB for one uid.
  constexpr long kListingMemory = kSanitized ? 5L << 19 : 8L << 20;
  const std::string stats = dir.path() + "/stats.json";
  LaminafsMount lamina({"-o", OverlayOptionString({tree}, dir.Subdir("upper"), dir.Subdir("work")) +
                                  ",allow_other,timeout=0,max_threads=8,stats=" + stats +
                                  ",listing_memory=" + std::to_string(kListingMemory)},
                       dir.Subdir("mnt"));
  ASSERT_TRUE(lamina.mounted()) << lamina.output();
  const std::string mnt = dir.path() + "/mnt";
  const DaemonStats gauges(lamina.pid(), stats);
  Users users;
  ASSERT_EQ(CountEntries(mnt + "/d0"), kMidEntries);
  const long rss_before = RssKiB(lamina.pid());

  // The holder: 300 opens of the large directory, then as many others as
  // it may.
  int results[2], release[2];
  ASSERT_EQ(pipe2(results, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(release, O_CLOEXEC), 0);
  const pid_t holder = users.Start(
      kHolder,
      [&] {
        int counts[4] = {0, 0, 0, 0};  // big opens, its errno, other dirs, their errno
        for (int i = 0; i < 300; ++i) {
          if (open((mnt + "/big").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC) < 0) {
            counts[1] = errno;
            break;
          }
          ++counts[0];
        }
        for (int d = 0; d < kMidDirs; ++d) {
          const std::string sub = mnt + "/d" + std::to_string(d);
          if (open(sub.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC) < 0) {
            counts[3] = errno;
            break;
          }
          ++counts[2];
        }
        if (write(results[1], counts, sizeof(counts)) != sizeof(counts)) return 1;
        char byte;
        return read(release[0], &byte, 1) >= 0 ? 0 : 2;
      },
      1024);
  close(results[1]);
  close(release[0]);
  int counts[4] = {-1, -1, -1, -1};
  struct pollfd ready = {results[0], POLLIN, 0};
  ASSERT_EQ(poll(&ready, 1, 120'000), 1);
  ASSERT_EQ(read(results[0], counts, sizeof(counts)), static_cast<ssize_t>(sizeof(counts)));
  close(results[0]);
  const long rss_held = RssKiB(lamina.pid());
  std::fprintf(stderr,
               "uid %u: %d opens of a %d-entry directory (errno %d), %d of %d-entry ones (errno "
               "%d); listings %ld bytes; daemon RSS %ld kB -> %ld kB\n",
               kHolder, counts[0], kBigEntries, counts[1], counts[2], kMidEntries, counts[3],
               gauges.Gauge("listing_bytes"), rss_before, rss_held);
  // The 300 opens share one snapshot.
  EXPECT_EQ(counts[0], 300);
  EXPECT_EQ(counts[1], 0);
  // Then the share runs out.
  EXPECT_GT(counts[2], 0);
  EXPECT_LT(counts[2], kMidDirs);
  EXPECT_EQ(counts[3], ENOMEM);
  EXPECT_LE(gauges.Gauge("listing_bytes"), kListingMemory);
  if (!kSanitized) {
    EXPECT_LE(rss_held, rss_before + 64 * 1024) << "listings copied per open";
  }

  // Others list as usual, the large directory and those the holder could
  // not open.
  const std::string last = mnt + "/d" + std::to_string(kMidDirs - 1);
  EXPECT_EQ(CountEntries(last), kMidEntries);
  EXPECT_EQ(users.Run(kOther,
                      [&] {
                        if (CountEntries(mnt + "/big") != kBigEntries) return 1;
                        return CountEntries(last) == kMidEntries ? 0 : 2;
                      }),
            0);

  // Let go: the listings and their memory are given back.
  ASSERT_EQ(write(release[1], "r", 1), 1);
  close(release[1]);
  EXPECT_EQ(users.Wait(holder), 0);
  EXPECT_TRUE(gauges.WaitFor(
      "listing_bytes", [](long bytes) { return bytes == 0; }, seconds(60)));
  const long rss_after = RssKiB(lamina.pid());
  std::fprintf(stderr, "daemon RSS after the opens closed: %ld kB\n", rss_after);
  if (!kSanitized) {
    EXPECT_LE(rss_after, rss_before + 16 * 1024);
  }
  EXPECT_TRUE(lamina.running()) << lamina.output();
  EXPECT_EQ(lamina.Unmount(), std::optional<int>(0)) << lamina.output();
}

// Listings the kernel reads without opening (timeout > 0) are a cache:
// directories read only in part keep them, and the cache stays within the
// listing memory, dropping the oldest; a directory listed again after its
// listing was dropped lists the same.
TEST(ListingBoundsTest, CachedListingsStayWithinTheListingMemory) {
  ASSERT_EQ(geteuid(), 0U) << "needs root";
  TempDir dir("lamina-listings");
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
  const std::string tree = dir.path() + "/tree";
  ASSERT_EQ(mkdir(tree.c_str(), 0755), 0);
  constexpr int kDirCount = 12, kEntries = 600;
  for (int d = 0; d < kDirCount; ++d) {
    FillDirectory(tree + "/d" + std::to_string(d), "entry-", kEntries, dir.path() + "/target");
  }
  // About 33 kB a listing: room for half of them.
  constexpr long kListingMemory = 192L << 10;
  const std::string stats = dir.path() + "/stats.json";
  LaminafsMount lamina({"-o", OverlayOptionString({tree}, dir.Subdir("upper"), dir.Subdir("work")) +
                                  ",max_threads=8,stats=" + stats +
                                  ",listing_memory=" + std::to_string(kListingMemory)},
                       dir.Subdir("mnt"));
  ASSERT_TRUE(lamina.mounted()) << lamina.output();
  const std::string mnt = dir.path() + "/mnt";
  const DaemonStats gauges(lamina.pid(), stats);
  // One getdents of each: the listing stays cached for the rest.
  for (int d = 0; d < kDirCount; ++d) {
    const std::string sub = mnt + "/d" + std::to_string(d);
    int fd = open(sub.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno);
    char buffer[4096];
    EXPECT_GT(syscall(SYS_getdents64, fd, buffer, sizeof(buffer)), 0) << sub << strerror(errno);
    close(fd);
  }
  const long cached = gauges.Gauge("listing_bytes_cached");
  std::fprintf(stderr, "%d directories read in part: %ld bytes of listings cached\n", kDirCount,
               cached);
  EXPECT_GT(cached, 0);
  EXPECT_LE(cached, kListingMemory);
  EXPECT_EQ(gauges.Gauge("listings_refused"), 0);
  for (int d = 0; d < kDirCount; ++d) {
    EXPECT_EQ(CountEntries(mnt + "/d" + std::to_string(d)), kEntries) << d;
  }
  EXPECT_TRUE(lamina.running()) << lamina.output();
  EXPECT_EQ(lamina.Unmount(), std::optional<int>(0)) << lamina.output();
}

}  // namespace
}  // namespace lamina::testing

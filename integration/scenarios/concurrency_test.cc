// Several processes on one directory of an in-process OverlayFs: readers
// loop over lower and upper files and listings while others append to a
// shared log, replace files by rename, rename back and forth, and create
// and unlink; a tailer follows the log. Every record carries a checksum:
// no call may fail, no read may see a torn record, no write may be lost.
//
// The workers are forked before the overlay starts its threads (a child
// of a threaded process may only call async-signal-safe functions), wait
// for the mount, and report one line each through a pipe.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

// Writers run for a fixed time (at least a few operations each), so the
// slow sanitizer builds do less work rather than take longer; what they did
// comes back in their reports and the final checks use it.
constexpr std::chrono::seconds kWriteFor(4);
constexpr int kAppenders = 2;
constexpr int kReplacers = 2;
constexpr int kStaticFiles = 4;
constexpr int kLowerDoomed = 40;  // lower files the churner unlinks
constexpr size_t kRecord = 64;    // log record size, one write() each

uint32_t Checksum(const std::string& data) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (unsigned char c : data) h = (h ^ c) * 16777619u;
  return h;
}

std::string StaticContent(int i) {
  return "static file " + std::to_string(i) + " " + std::string(3000 + 100 * i, 's');
}

// A replaced file's content: a header with version, length and checksum.
std::string Version(int writer, int version) {
  std::string body(1000 + (version * 7919 + writer * 104729) % 20000,
                   static_cast<char>('a' + version % 26));
  char header[64];
  snprintf(header, sizeof(header), "ver=%06d len=%06zu crc=%08x;", version, body.size(),
           Checksum(body));
  return header + body;
}

// The version a replaced file holds, or -1 (with `why`) if it is torn.
int CheckVersion(const std::string& data, std::string* why) {
  int version;
  size_t len;
  unsigned crc;
  if (sscanf(data.c_str(), "ver=%06d len=%06zu crc=%08x;", &version, &len, &crc) != 3) {
    *why = "bad header: " + data.substr(0, 40);
    return -1;
  }
  size_t header = data.find(';') + 1;
  if (data.size() != header + len || Checksum(data.substr(header)) != crc) {
    *why = "torn file version " + std::to_string(version) + " size " + std::to_string(data.size());
    return -1;
  }
  return version;
}

std::string LogRecord(int writer, int seq) {
  char text[kRecord + 1];
  std::string key = std::to_string(writer) + ":" + std::to_string(seq);
  int n = snprintf(text, sizeof(text), "%02d %08d %08x ", writer, seq, Checksum(key));
  std::string record(text, static_cast<size_t>(n));
  record.resize(kRecord - 1, '.');
  return record + "\n";
}

// Reads a whole file; false with errno set on failure.
bool Slurp(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  out->clear();
  char buffer[8192];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) out->append(buffer, static_cast<size_t>(n));
  int error = errno;
  close(fd);
  errno = error;
  return n == 0;
}

bool Spit(const std::string& path, const std::string& data, int flags = O_TRUNC) {
  int fd = open(path.c_str(), O_CREAT | O_WRONLY | flags, 0644);
  if (fd < 0) return false;
  bool ok = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  return close(fd) == 0 && ok;
}

// True while a writer should go on: before the deadline, or for its first
// `minimum` operations.
class Budget {
 public:
  Budget() : end_(std::chrono::steady_clock::now() + kWriteFor) {}
  bool More(long done, long minimum = 20, long maximum = 20000) const {
    return done < minimum || (done < maximum && std::chrono::steady_clock::now() < end_);
  }

 private:
  std::chrono::steady_clock::time_point end_;
};

std::string Errno(const std::string& what) {
  return what + ": " + strerror(errno);
}

// What a worker reports: ok with a count of operations, or its first error.
struct Report {
  long ops = 0;
  std::string error;
  std::string extra;  // worker-specific facts for the final checks
};

class Workers {
 public:
  // Forks a worker that waits for Start(), runs `body` and reports.
  void Fork(const std::string& name, const std::function<Report()>& body) {
    int report[2];
    ASSERT_EQ(pipe(report), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(report[0]);
      close(go_[1]);
      stop_.Inherited();
      char byte;
      Report r;
      if (read(go_[0], &byte, 1) == 1) {
        r = body();
      } else {
        r.error = "never started";
      }
      std::string line = (r.error.empty() ? "ok " : "FAIL ") + std::to_string(r.ops) + " " +
                         r.error + "|" + r.extra;
      if (write(report[1], line.data(), line.size()) < 0) _exit(2);
      _exit(0);
    }
    close(report[1]);
    children_.push_back({name, pid, report[0]});
  }

  void Start() {
    close(go_[0]);
    std::string bytes(children_.size(), 'g');
    ASSERT_EQ(write(go_[1], bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    close(go_[1]);
    started_ = true;
  }

  // Tells the looping workers (readers, tailer) to finish their last pass.
  void StopReaders() { stop_.Signal(); }

  // Waits for the first `count` workers not collected yet (killing any
  // still running at the deadline) and adds name -> report line to `out`.
  void Collect(size_t count, std::chrono::seconds deadline,
               std::map<std::string, std::string>* out) {
    auto end = std::chrono::steady_clock::now() + deadline;
    for (; count > 0 && !children_.empty(); --count) {
      Child c = children_.front();
      children_.erase(children_.begin());
      std::string line;
      while (true) {
        int remaining = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             end - std::chrono::steady_clock::now())
                                             .count());
        struct pollfd pfd = {c.report_fd, POLLIN, 0};
        if (remaining <= 0 || poll(&pfd, 1, remaining) <= 0) {
          line = "FAIL 0 timed out|";
          kill(c.pid, SIGKILL);
          break;
        }
        char buffer[4096];
        ssize_t n = read(c.report_fd, buffer, sizeof(buffer));
        if (n <= 0) break;
        line.append(buffer, static_cast<size_t>(n));
      }
      waitpid(c.pid, nullptr, 0);
      close(c.report_fd);
      (*out)[c.name] = line.empty() ? "FAIL 0 died without a report|" : line;
    }
  }

  ~Workers() {
    if (!started_) close(go_[1]);  // unblocks waiting children
    for (Child& c : children_) {
      kill(c.pid, SIGKILL);
      waitpid(c.pid, nullptr, 0);
    }
  }

  // A flag children can poll: a pipe whose write end the parent closes.
  class StopFlag {
   public:
    StopFlag() {
      if (pipe(fds_) != 0) fds_[0] = fds_[1] = -1;
    }
    bool Raised() const {
      struct pollfd pfd = {fds_[0], POLLIN, 0};
      return poll(&pfd, 1, 0) > 0;
    }
    void Signal() {
      close(fds_[1]);
      fds_[1] = -1;
    }
    // In a child: drop the write end, or the flag could never be raised.
    void Inherited() { Signal(); }

   private:
    int fds_[2];
  };
  const StopFlag& stop() const { return stop_; }

  Workers() {
    if (pipe(go_) != 0) go_[0] = go_[1] = -1;
  }

 private:
  struct Child {
    std::string name;
    pid_t pid;
    int report_fd;
  };
  int go_[2];
  bool started_ = false;
  StopFlag stop_;
  std::vector<Child> children_;
};

class ConcurrencyTest : public OverlayPair {
 protected:
  // Runs the workload on Lamina's mount or, as a control that the checks
  // are right, on the kernel's. `check_listings`: readers also require
  // every untouched name exactly once in each listing.
  void Run(bool on_lamina, bool check_listings);
};

void ConcurrencyTest::Run(bool on_lamina, bool check_listings) {
  const std::string dir = dir_.path() + (on_lamina ? "/lamina-mnt" : "/kernel-mnt") + "/shared";
  // The log and the moving file start in the upper layer: a read-only open
  // made before a copy-up does not follow it yet (see docs/reliability.md).
  std::vector<std::string> upper = {"d shared", "f shared/mv moving file", "f shared/log "};
  upper.back().pop_back();  // empty
  std::vector<std::string> lower = {"d shared"};
  for (int i = 0; i < kStaticFiles; ++i) {
    lower.push_back("f shared/static" + std::to_string(i) + " " + StaticContent(i));
  }
  for (int k = 0; k < kReplacers; ++k) {
    lower.push_back("f shared/w" + std::to_string(k) + " " + Version(k, 0));
  }
  for (int i = 0; i < kLowerDoomed; ++i) {
    lower.push_back("f shared/doomed" + std::to_string(i) + " doomed");
  }

  Workers workers;
  const Workers::StopFlag& stop = workers.stop();
  for (int a = 0; a < kAppenders; ++a) {
    workers.Fork("appender" + std::to_string(a), [&, a] {
      Report r;
      int fd = open((dir + "/log").c_str(), O_WRONLY | O_APPEND);
      if (fd < 0) return Report{0, Errno("open log"), ""};
      Budget budget;
      for (int seq = 0; budget.More(seq) && r.error.empty(); ++seq, ++r.ops) {
        std::string record = LogRecord(a, seq);
        if (write(fd, record.data(), record.size()) != static_cast<ssize_t>(kRecord)) {
          r.error = Errno("append " + std::to_string(seq));
        }
      }
      if (close(fd) != 0 && r.error.empty()) r.error = Errno("close log");
      r.extra = std::to_string(r.ops);
      return r;
    });
  }
  for (int k = 0; k < kReplacers; ++k) {
    workers.Fork("replacer" + std::to_string(k), [&, k] {
      Report r;
      std::string target = dir + "/w" + std::to_string(k);
      std::string temp = dir + "/.w" + std::to_string(k) + ".tmp";
      Budget budget;
      for (int v = 1; budget.More(v) && r.error.empty(); ++v, ++r.ops) {
        if (!Spit(temp, Version(k, v))) r.error = Errno("write version");
        if (r.error.empty() && rename(temp.c_str(), target.c_str()) != 0) {
          r.error = Errno("rename version");
        }
      }
      r.extra = std::to_string(r.ops);  // the last version
      return r;
    });
  }
  workers.Fork("renamer", [&] {
    Report r;
    std::string names[2] = {dir + "/mv", dir + "/mv2"};
    Budget budget;
    for (int i = 0; budget.More(i) && r.error.empty(); ++i, ++r.ops) {
      if (rename(names[i % 2].c_str(), names[(i + 1) % 2].c_str()) != 0) {
        r.error = Errno("rename " + std::to_string(i));
      }
    }
    r.extra = r.ops % 2 == 0 ? "mv" : "mv2";  // where the file ends up
    return r;
  });
  workers.Fork("churner", [&] {
    Report r;
    for (int i = 0; i < kLowerDoomed && r.error.empty(); ++i, ++r.ops) {
      if (unlink((dir + "/doomed" + std::to_string(i)).c_str()) != 0) r.error = Errno("unlink");
    }
    Budget budget;
    for (int i = 0; budget.More(i) && r.error.empty(); ++i, ++r.ops) {
      std::string path = dir + "/churn" + std::to_string(i % 5);
      std::string data = "churn " + std::to_string(i), back;
      if (!Spit(path, data, O_EXCL)) r.error = Errno("create " + path);
      if (r.error.empty() && (!Slurp(path, &back) || back != data)) {
        r.error = "read back " + path + ": '" + back + "'";
      }
      if (r.error.empty() && unlink(path.c_str()) != 0) r.error = Errno("unlink " + path);
    }
    return r;
  });
  for (int reader = 0; reader < 2; ++reader) {
    workers.Fork("reader" + std::to_string(reader), [&] {
      Report r;
      std::vector<int> last_version(kReplacers, 0);
      bool last_pass = false;
      while (r.error.empty() && !last_pass) {
        last_pass = stop.Raised();
        std::string data;
        for (int i = 0; i < kStaticFiles && r.error.empty(); ++i, ++r.ops) {
          if (!Slurp(dir + "/static" + std::to_string(i), &data)) {
            r.error = Errno("read static");
          } else if (data != StaticContent(i)) {
            r.error = "static file " + std::to_string(i) + " changed";
          }
        }
        for (int k = 0; k < kReplacers && r.error.empty(); ++k, ++r.ops) {
          if (!Slurp(dir + "/w" + std::to_string(k), &data)) {
            r.error = Errno("read replaced file");
            break;
          }
          int v = CheckVersion(data, &r.error);
          if (v >= 0 && v < last_version[static_cast<size_t>(k)]) {
            r.error = "version went back from " +
                      std::to_string(last_version[static_cast<size_t>(k)]) + " to " +
                      std::to_string(v);
          }
          if (v >= 0) last_version[static_cast<size_t>(k)] = v;
        }
        // The moving file is under one of its two names (both may be missed
        // in a race, never read torn).
        for (const char* name : {"/mv", "/mv2"}) {
          if (!r.error.empty()) break;
          if (Slurp(dir + name, &data)) {
            if (data != "moving file") r.error = "mv torn: " + data;
          } else if (errno != ENOENT) {
            r.error = Errno("read mv");
          }
          ++r.ops;
        }
        // A listing during the changes still holds every untouched name once.
        errno = 0;
        std::vector<std::string> names = ListDir(dir);
        for (int i = 0; i < kStaticFiles && r.error.empty() && check_listings; ++i) {
          if (std::count(names.begin(), names.end(), "static" + std::to_string(i)) != 1) {
            r.error = Errno("listing lost or repeated static" + std::to_string(i)) + ":";
            for (const std::string& n : names) r.error += " " + n;
          }
        }
        ++r.ops;
      }
      return r;
    });
  }
  workers.Fork("tailer", [&] {
    Report r;
    int fd = open((dir + "/log").c_str(), O_RDONLY);
    if (fd < 0) return Report{0, Errno("open log"), ""};
    std::vector<int> next(kAppenders, 0);
    std::string pending;
    bool last_pass = false;
    while (r.error.empty() && !last_pass) {
      last_pass = stop.Raised();
      char buffer[16384];
      ssize_t n;
      while ((n = read(fd, buffer, sizeof(buffer))) > 0) {
        pending.append(buffer, static_cast<size_t>(n));
      }
      if (n < 0) r.error = Errno("tail read");
      size_t used = 0;
      for (; pending.size() - used >= kRecord && r.error.empty(); used += kRecord, ++r.ops) {
        std::string record = pending.substr(used, kRecord);
        int writer = -1, seq = -1;
        if (sscanf(record.c_str(), "%02d %08d", &writer, &seq) != 2 || writer < 0 ||
            writer >= kAppenders || record != LogRecord(writer, seq)) {
          r.error = "torn log record at " + std::to_string(r.ops) + ": " + record;
        } else if (seq != next[static_cast<size_t>(writer)]) {
          r.error = "writer " + std::to_string(writer) + " jumped to " + std::to_string(seq);
        } else {
          ++next[static_cast<size_t>(writer)];
        }
      }
      pending.erase(0, used);
      if (!last_pass) usleep(1000);
    }
    close(fd);
    for (int a = 0; a < kAppenders; ++a)
      r.extra += std::to_string(next[static_cast<size_t>(a)]) + " ";
    if (!pending.empty() && r.error.empty()) r.error = "partial record at the end";
    return r;
  });

  // Only now the overlay's threads start.
  Mount({lower}, upper);
  auto start = std::chrono::steady_clock::now();
  workers.Start();
  // The writers (forked first) end on their own; then the readers and the
  // tailer make a last pass.
  std::map<std::string, std::string> reports;
  workers.Collect(kAppenders + kReplacers + 2, std::chrono::seconds(240), &reports);
  workers.StopReaders();
  workers.Collect(3, std::chrono::seconds(240), &reports);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fprintf(stderr, "concurrency: %zu workers done in %.2f s\n", reports.size(), seconds);
  for (const auto& [name, line] : reports) {
    fprintf(stderr, "  %s: %s\n", name.c_str(), line.c_str());
    EXPECT_EQ(line.rfind("ok ", 0), 0u) << name << ": " << line;
  }

  // Nothing lost: the tailer saw every record, the files hold the last
  // versions, the moving file is under one name, the churn is gone.
  auto extra = [&](const std::string& name) {
    return reports[name].substr(reports[name].find('|') + 1);
  };
  std::string expected_counts;
  size_t records = 0;
  for (int a = 0; a < kAppenders; ++a) {
    expected_counts += extra("appender" + std::to_string(a)) + " ";
    records += std::stoul("0" + extra("appender" + std::to_string(a)));
  }
  EXPECT_EQ(extra("tailer"), expected_counts);
  auto check_final = [&](const std::string& root) {
    std::string shared = root + "/shared", data, why;
    ASSERT_TRUE(Slurp(shared + "/log", &data)) << strerror(errno);
    EXPECT_EQ(data.size(), records * kRecord);
    std::vector<int> count(kAppenders, 0);
    for (size_t i = 0; i + kRecord <= data.size(); i += kRecord) {
      int writer = -1, seq = -1;
      ASSERT_EQ(sscanf(data.c_str() + i, "%02d %08d", &writer, &seq), 2) << i;
      ASSERT_TRUE(writer >= 0 && writer < kAppenders);
      EXPECT_EQ(data.substr(i, kRecord), LogRecord(writer, seq));
      EXPECT_EQ(seq, count[static_cast<size_t>(writer)]++);
    }
    for (int k = 0; k < kReplacers; ++k) {
      ASSERT_TRUE(Slurp(shared + "/w" + std::to_string(k), &data));
      EXPECT_EQ(std::to_string(CheckVersion(data, &why)), extra("replacer" + std::to_string(k)))
          << why;
    }
    std::vector<std::string> names = ListDir(shared);
    std::vector<std::string> want = {"log", extra("renamer")};
    for (int i = 0; i < kStaticFiles; ++i) want.push_back("static" + std::to_string(i));
    for (int k = 0; k < kReplacers; ++k) want.push_back("w" + std::to_string(k));
    std::sort(want.begin(), want.end());
    EXPECT_EQ(names, want);
    EXPECT_EQ(ReadFile(shared + "/" + extra("renamer")), "moving file");
  };
  if (!on_lamina) {
    check_final(kernel_root());
    return;
  }
  check_final(lamina_root());
  // And the same after a remount.
  UnmountLamina();
  MountLamina();
  check_final(lamina_root());
}

TEST_F(ConcurrencyTest, ReadersWritersRenamersAndATailerAgree) {
  // Listings taken while the directory changes must show every untouched
  // name exactly once (they once repeated or dropped some; the control
  // below shows the kernel never does).
  Run(/*on_lamina=*/true, /*check_listings=*/true);
}

TEST_F(ConcurrencyTest, KernelOverlayPassesTheSameChecks) {
  Run(/*on_lamina=*/false, /*check_listings=*/true);
}

}  // namespace
}  // namespace lamina::testing

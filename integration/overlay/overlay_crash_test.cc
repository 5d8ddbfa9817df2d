// The daemon killed with SIGKILL at awkward moments: after a remount the
// view is intact, no half-copied file sits under a visible name, and the
// work directory is clean. Directory renames are killed at every step of
// the daemon's work (strace injects the SIGKILL at a chosen system call).

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"
#include "integration/harness/untouched_layers.h"

namespace lamina::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// The lower layer must come through every crash untouched: its digest is
// recorded before the first daemon starts on it and checked at the end,
// once the last daemon is gone.
class OverlayCrashTest : public ::testing::Test {
 protected:
  void SetUp() override { UseRoot(dir_.path()); }
  void TearDown() override {
    daemon_.reset();
    ForceUnmount(mnt());
    lowers_.ExpectUntouched();
  }

  // Layers and mount point below `root` from now on.
  void UseRoot(const std::string& root) {
    root_ = root;
    for (const char* name : {"lower", "upper", "work", "mnt"}) {
      std::filesystem::create_directories(root_ + "/" + name);
    }
  }
  std::string mnt() const { return root_ + "/mnt"; }
  std::string layer(const char* name) const { return root_ + "/" + name; }

  // `extra`: more mount options (e.g. "threads=1,").
  void StartDaemon(const std::string& extra = "") {
    std::string options = extra + "lowerdir=" + layer("lower") + ",upperdir=" + layer("upper") +
                          ",workdir=" + layer("work");
    lowers_.Watch(layer("lower"));
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
  std::string root_;
  std::unique_ptr<ChildProcess> daemon_;
  UntouchedLayers lowers_;
};

// A digest of a file's contents, read in 1 MiB pieces (the files here are
// too big to compare as strings quickly). `flags`: O_NOATIME for a look
// into the lower layer, which must keep its atimes.
std::string Digest(const std::string& path, int flags = 0) {
  int fd = open(path.c_str(), O_RDONLY | flags);
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
  std::string lower = Digest(layer("lower") + "/big", O_NOATIME);
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
  EXPECT_EQ(Digest(layer("lower") + "/big", O_NOATIME), lower);
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

// Three directory renames, and where each of their directories may be.
struct MovedDir {
  const char* old_name;
  const char* new_name;
  bool in_lower;    // f1..f100 in the lower layer (else in the upper)
  bool upper_file;  // "up" in the upper besides them (a merged directory)
};
constexpr MovedDir kMovedDirs[] = {
    {"a/b/c/big", "moved", true, false},  // lower: parents copied up first, redirect
    {"merged", "merged2", true, true},    // lower + upper: redirect
    {"pure", "pure2", false, false},      // upper only: a plain rename
};
constexpr int kFilesPerDir = 100;

// Which name each directory is under in the view at `root`, failing the
// test unless it is under exactly one of them, complete.
std::string WhereAreTheDirectories(const std::string& root, const std::string& what) {
  std::string where;
  for (const MovedDir& d : kMovedDirs) {
    struct stat st;
    bool at_old = lstat((root + "/" + d.old_name).c_str(), &st) == 0;
    bool at_new = lstat((root + "/" + d.new_name).c_str(), &st) == 0;
    EXPECT_NE(at_old, at_new) << what << ": " << d.old_name << " is under "
                              << (at_old ? "both names" : "neither name");
    std::string dir = root + "/" + (at_new ? d.new_name : d.old_name);
    EXPECT_EQ(ListDir(dir).size(), static_cast<size_t>(kFilesPerDir + (d.upper_file ? 1 : 0)))
        << what << ": " << dir;
    for (int i = 1; i <= kFilesPerDir; ++i) {
      std::string file = dir + "/f" + std::to_string(i);
      if (ReadFile(file) != std::to_string(i) + "\n") {
        ADD_FAILURE() << what << ": " << file << " is wrong";
        break;
      }
    }
    if (d.upper_file) {
      EXPECT_EQ(ReadFile(dir + "/up"), "up\n") << what;
    }
    where += (at_new ? d.new_name : d.old_name) + std::string(" ");
  }
  return where;
}

// The system calls by which the daemon changes the layers.
constexpr char kChangingCalls[] =
    "mkdirat,mknodat,renameat,renameat2,setxattr,fsetxattr,lsetxattr,removexattr,"
    "fremovexattr,unlinkat,linkat,symlinkat";

class OverlayRenameCrashTest : public OverlayCrashTest {
 protected:
  void MakeLayers() {
    for (const MovedDir& d : kMovedDirs) {
      std::string dir = layer(d.in_lower ? "lower" : "upper") + "/" + d.old_name;
      std::filesystem::create_directories(dir);
      for (int i = 1; i <= kFilesPerDir; ++i) {
        WriteFile(dir + "/f" + std::to_string(i), std::to_string(i) + "\n");
      }
      if (d.upper_file) {
        std::filesystem::create_directories(layer("upper") + "/" + d.old_name);
        WriteFile(layer("upper") + "/" + d.old_name + "/up", "up\n");
      }
    }
  }

  // Starts strace on the daemon (every thread attached when this returns).
  std::unique_ptr<ChildProcess> Trace(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"/usr/bin/strace", "-f", "-qq", "-p",
                                     std::to_string(daemon_->pid())};
    argv.insert(argv.end(), args.begin(), args.end());
    auto tracer = std::make_unique<ChildProcess>(argv);
    std::string tasks = "/proc/" + std::to_string(daemon_->pid()) + "/task";
    std::string statuses;
    bool attached = WaitUntil(
        [&] {
          std::error_code error;
          int untraced = 0;
          statuses.clear();
          for (const auto& task : std::filesystem::directory_iterator(tasks, error)) {
            std::string status = ReadFile(task.path().string() + "/status");
            if (status.find("TracerPid") == std::string::npos) continue;  // exited
            statuses += task.path().filename().string() + ": " +
                        status.substr(0, status.find('\n')) + ", " +
                        status.substr(status.find("TracerPid"), 14) + "\n";
            if (status.find("TracerPid:\t0\n") != std::string::npos) ++untraced;
          }
          return !error && untraced == 0;
        },
        seconds(10));
    if (!attached) {
      tracer->Wait(milliseconds(100));
      ADD_FAILURE() << "strace did not attach to every thread:\n"
                    << statuses << "strace: " << tracer->output();
      return nullptr;
    }
    return tracer;
  }

  // Renames the three directories through the mount, stopping at the
  // first failure (the daemon killed).
  void RenameAll() {
    for (const MovedDir& d : kMovedDirs) {
      if (rename((mnt() + "/" + d.old_name).c_str(), (mnt() + "/" + d.new_name).c_str()) != 0) {
        return;
      }
    }
  }
};

// A SIGKILL at the entry of each call by which the daemon changes the
// layers while renaming the three directories (a first, traced run lists
// them: the copy-ups of a, a/b, a/b/c and big, redirects, the moves, the
// whiteouts), so every boundary between two steps is a kill point. After a
// remount each directory is complete under exactly one of its names, the
// work directory is empty and the mount works; kernel overlayfs on the
// same layers sees each directory where Lamina does.
TEST_F(OverlayRenameCrashTest, KillAtEveryStepOfDirectoryRenames) {
  if (access("/usr/bin/strace", X_OK) != 0) {
    GTEST_SKIP() << "strace is not installed (scripts/install-deps --test installs it)";
  }
  // One worker thread, which never grows into more: strace counts calls
  // per thread, so the n-th call in the traced run is the n-th in every run.
  const std::string options = "threads=1,max_threads=1,";
  UseRoot(dir_.Subdir("traced"));
  MakeLayers();
  ASSERT_NO_FATAL_FAILURE(StartDaemon(options));
  std::string log = layer("strace.log");
  std::unique_ptr<ChildProcess> tracer =
      Trace({"-o", log, "-e", std::string("trace=") + kChangingCalls});
  ASSERT_NE(tracer, nullptr);
  RenameAll();
  EXPECT_EQ(WhereAreTheDirectories(mnt(), "traced run"), "moved merged2 pure2 ");
  tracer->Signal(SIGINT);  // detaches
  tracer->Wait(seconds(10));
  // (call, n-th of that call) for each call of the run, in order.
  std::vector<std::pair<std::string, int>> kill_points;
  std::map<std::string, int> seen;
  std::set<std::string> threads;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) {
    // "TID  call(args) = result"; strace pads short thread ids.
    std::istringstream fields(line);
    std::string tid, rest;
    if (!(fields >> tid >> rest) || rest.find('(') == std::string::npos) continue;
    std::string call = rest.substr(0, rest.find('('));
    // strace before 6.13 shows calls it has no name for whatever the
    // filter (syscall_0x1d0: getxattrat, by which the daemon reads markers).
    if (("," + std::string(kChangingCalls) + ",").find("," + call + ",") == std::string::npos) {
      continue;
    }
    threads.insert(tid);
    kill_points.emplace_back(call, ++seen[call]);
  }
  EXPECT_EQ(threads.size(), 1u) << ReadFile(log);
  // At least: four directories staged and moved in, two redirects, three moves.
  ASSERT_GE(kill_points.size(), 11u) << ReadFile(log);
  std::string listed;
  for (const auto& [call, nth] : kill_points) listed += " " + call;
  std::printf("%zu kill points:%s\n", kill_points.size(), listed.c_str());
  daemon_->Signal(SIGTERM);
  daemon_->Wait(seconds(10));
  ForceUnmount(mnt());

  for (size_t k = 0; k < kill_points.size(); ++k) {
    const auto& [call, nth] = kill_points[k];
    std::string point = std::to_string(k + 1) + ": " + call + " #" + std::to_string(nth);
    SCOPED_TRACE(point);
    UseRoot(dir_.Subdir("kill" + std::to_string(k)));
    MakeLayers();
    ASSERT_NO_FATAL_FAILURE(StartDaemon(options));
    tracer = Trace({"-o", "/dev/null", "-e", "trace=" + call, "-e",
                    "inject=" + call + ":signal=SIGKILL:when=" + std::to_string(nth)});
    ASSERT_NE(tracer, nullptr);
    RenameAll();
    bool killed = daemon_->Wait(seconds(5)).has_value();
    EXPECT_TRUE(killed) << "the kill point was never reached";
    Crash();
    tracer->Wait(seconds(10));

    StartDaemon();
    std::string view = WhereAreTheDirectories(mnt(), "laminafs");
    EXPECT_TRUE(ListDir(layer("work") + "/work").empty()) << "staging area not cleaned";
    // The mount works: each directory moves to a third name and back.
    std::istringstream names(view);
    for (std::string name; names >> name;) {
      std::string now = mnt() + "/" + name, third = mnt() + "/third";
      EXPECT_EQ(rename(now.c_str(), third.c_str()), 0) << now;
      EXPECT_EQ(rename(third.c_str(), now.c_str()), 0) << now;
    }
    EXPECT_EQ(WhereAreTheDirectories(mnt(), "laminafs after moves"), view);
    daemon_->Signal(SIGTERM);
    EXPECT_TRUE(daemon_->Wait(seconds(10)).has_value());
    ForceUnmount(mnt());
    EXPECT_TRUE(ListDir(layer("work") + "/work").empty());

    // The kernel reads the same layers (the upper as the top lower, read-only).
    std::string kernel_options = "lowerdir=" + layer("upper") + ":" + layer("lower");
    ASSERT_EQ(mount("overlay", mnt().c_str(), "overlay", MS_RDONLY, kernel_options.c_str()), 0)
        << strerror(errno);
    EXPECT_EQ(WhereAreTheDirectories(mnt(), "kernel"), view);
    EXPECT_EQ(umount(mnt().c_str()), 0);
    lowers_.ExpectUntouched();  // before this kill point's layers go
    std::filesystem::remove_all(root_);
  }
}

}  // namespace
}  // namespace lamina::testing

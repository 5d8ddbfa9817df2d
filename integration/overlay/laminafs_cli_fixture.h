// A scratch directory and the built `laminafs` for tests that run the
// command as users do. TearDown detaches the mount point even when a test
// fails; the daemon ends with its mount.
//
// Every lower layer a test mounts must come out untouched: Run() digests
// the lowerdirs it is given before their first mount, WatchLower() those a
// test mounts another way, and TearDown checks them once the mounts are
// gone and their daemons have ended (see UntouchedLayers).

#ifndef LAMINA_INTEGRATION_OVERLAY_LAMINAFS_CLI_FIXTURE_H_
#define LAMINA_INTEGRATION_OVERLAY_LAMINAFS_CLI_FIXTURE_H_

#include <grp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"
#include "integration/harness/untouched_layers.h"

namespace lamina::testing {

class LaminafsCliTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const std::string& point : mounts_) {
      if (!IsFuseMounted(point)) continue;
      ForceUnmount(point);
      WaitUntil([&] { return !IsFuseMounted(point); }, std::chrono::seconds(5));
    }
    // The daemons end with their mounts; a daemon whose mount this process
    // cannot see (another mount namespace) ends on SIGTERM, unmounting it.
    WaitUntil([&] { return DaemonsUsing(dir_.path()).empty(); }, std::chrono::seconds(5));
    for (pid_t pid : DaemonsUsing(dir_.path())) {
      kill(pid, SIGTERM);
      EXPECT_TRUE(WaitUntil([&] { return Gone(pid); }, std::chrono::seconds(10))) << pid;
    }
    lowers_.ExpectUntouched();
    // What else the test mounted (a layer's own filesystem).
    for (const std::string& point : mounts_) ForceUnmount(point);
  }

  // dir_/name.
  std::string Path(const std::string& name) const { return dir_.path() + "/" + name; }
  std::string mnt() const { return Path("mnt"); }
  // Also detach `point` at the end of the test.
  void TrackMount(const std::string& point) { mounts_.push_back(point); }
  // Checks at the end of the test that the tree at `root` did not change
  // (for a lower mounted other than through Run()).
  void WatchLower(const std::string& root) { lowers_.Watch(root); }

  // Runs laminafs to completion (the daemon detaches) and returns its status.
  int Run(const std::vector<std::string>& args, std::string* output = nullptr) {
    for (const std::string& lower : LowerdirsInArgs(args)) lowers_.Watch(lower);
    std::vector<std::string> argv = {BuiltBinary("cmd/laminafs")};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildProcess child(argv);
    std::optional<int> status = child.Wait(std::chrono::seconds(30));
    if (output != nullptr) *output = child.output();
    return status.value_or(-1);
  }

  // Running laminafs processes whose command line names `text` (a test's
  // unique paths).
  static std::vector<pid_t> DaemonsNaming(const std::string& text) {
    std::vector<pid_t> pids;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
      std::string name = entry.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      // (Read with read(2): a process may exit in the middle, and
      // libstdc++'s streams throw on that read's ESRCH.)
      const std::string cmdline = ReadFileQuietly(entry.path() / "cmdline");
      std::string program = std::filesystem::path(cmdline.substr(0, cmdline.find('\0'))).filename();
      pid_t pid = std::stoi(name);
      if (program == "laminafs" && cmdline.find(text) != std::string::npos && !Gone(pid)) {
        pids.push_back(pid);
      }
    }
    return pids;
  }

  // Running laminafs processes that name `dir` on their command line or
  // hold a descriptor of something below it (a daemon given relative
  // paths holds its layers).
  static std::vector<pid_t> DaemonsUsing(const std::string& dir) {
    std::vector<pid_t> pids = DaemonsNaming(dir);
    for (pid_t pid : DaemonsNaming("")) {
      if (std::find(pids.begin(), pids.end(), pid) != pids.end()) continue;
      const std::string fds = "/proc/" + std::to_string(pid) + "/fd";
      for (const std::string& fd : ListDir(fds)) {
        std::error_code error;
        const std::string target = std::filesystem::read_symlink(fds + "/" + fd, error);
        if (!error && target.rfind(dir + "/", 0) == 0) {
          pids.push_back(pid);
          break;
        }
      }
    }
    return pids;
  }

  // Whether `pid` has exited (a zombie counts).
  static bool Gone(pid_t pid) {
    // The state follows the command name's closing parenthesis.
    const std::string stat = ReadFileQuietly("/proc/" + std::to_string(pid) + "/stat");
    const size_t paren = stat.rfind(')');
    return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] == 'Z';
  }

  // Unmounts `point` and waits until the daemon serving it has exited, so
  // the next mount there cannot meet it.
  void UnmountAndWait(const std::string& point) {
    std::vector<pid_t> daemons = DaemonsNaming(point);
    ASSERT_EQ(umount(point.c_str()), 0) << point;
    ASSERT_TRUE(WaitUntil([&] { return !IsFuseMounted(point); }, std::chrono::seconds(5)));
    for (pid_t pid : daemons) {
      EXPECT_TRUE(WaitUntil([&] { return Gone(pid); }, std::chrono::seconds(5)))
          << "daemon " << pid << " still running";
    }
  }

  // Runs `fn` in a child process with only the credentials uid/gid (no
  // supplementary groups); returns its result, or 100 if the switch failed.
  static int RunAs(uid_t uid, gid_t gid, const std::function<int()>& fn) {
    pid_t pid = fork();
    if (pid == 0) {
      if (setgroups(0, nullptr) != 0 || setresgid(gid, gid, gid) != 0 ||
          setresuid(uid, uid, uid) != 0) {
        _exit(100);
      }
      _exit(fn());
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
  }

  TempDir dir_{"lamina-ovl-cli"};
  std::vector<std::string> mounts_ = {mnt()};
  UntouchedLayers lowers_;
};

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_OVERLAY_LAMINAFS_CLI_FIXTURE_H_

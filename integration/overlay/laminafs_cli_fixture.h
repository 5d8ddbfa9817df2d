// A scratch directory and the built `laminafs` for tests that run the
// command as users do. TearDown detaches the mount point even when a test
// fails; the daemon ends with its mount.

#ifndef LAMINA_INTEGRATION_OVERLAY_LAMINAFS_CLI_FIXTURE_H_
#define LAMINA_INTEGRATION_OVERLAY_LAMINAFS_CLI_FIXTURE_H_

#include <grp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

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

namespace lamina::testing {

class LaminafsCliTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const std::string& point : mounts_) {
      ForceUnmount(point);
      WaitUntil([&] { return !IsFuseMounted(point); }, std::chrono::seconds(5));
    }
    // A daemon whose mount this process cannot see (another mount
    // namespace) ends on SIGTERM, unmounting it.
    for (pid_t pid : DaemonsNaming(dir_.path())) {
      kill(pid, SIGTERM);
      EXPECT_TRUE(WaitUntil([&] { return Gone(pid); }, std::chrono::seconds(10))) << pid;
    }
  }

  // dir_/name.
  std::string Path(const std::string& name) const { return dir_.path() + "/" + name; }
  std::string mnt() const { return Path("mnt"); }
  // Also detach `point` at the end of the test.
  void TrackMount(const std::string& point) { mounts_.push_back(point); }

  // Runs laminafs to completion (the daemon detaches) and returns its status.
  int Run(const std::vector<std::string>& args, std::string* output = nullptr) {
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
      std::ifstream file(entry.path() / "cmdline");
      std::string cmdline((std::istreambuf_iterator<char>(file)), {});
      std::string program = std::filesystem::path(cmdline.substr(0, cmdline.find('\0'))).filename();
      pid_t pid = std::stoi(name);
      if (program == "laminafs" && cmdline.find(text) != std::string::npos && !Gone(pid)) {
        pids.push_back(pid);
      }
    }
    return pids;
  }

  // Whether `pid` has exited (a zombie counts).
  static bool Gone(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string pid_field, comm, state;
    return !(stat >> pid_field >> comm >> state) || state == "Z";
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
};

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_OVERLAY_LAMINAFS_CLI_FIXTURE_H_

// A scratch directory and the built `laminafs` for tests that run the
// command as users do. TearDown detaches the mount point even when a test
// fails; the daemon ends with its mount.

#ifndef LAMINA_INTEGRATION_OVERLAY_LAMINAFS_CLI_FIXTURE_H_
#define LAMINA_INTEGRATION_OVERLAY_LAMINAFS_CLI_FIXTURE_H_

#include <chrono>
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

  TempDir dir_{"lamina-ovl-cli"};
  std::vector<std::string> mounts_ = {mnt()};
};

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_OVERLAY_LAMINAFS_CLI_FIXTURE_H_

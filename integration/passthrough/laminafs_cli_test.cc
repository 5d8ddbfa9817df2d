// The `laminafs passthrough` command: option errors, and a daemon whose
// parent returns only once the mount serves.

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"

namespace lamina::testing {
namespace {

std::string Laminafs() {
  return BuiltBinary("cmd/laminafs");
}

// Whether a live (not zombie) process has `text` in its command line.
bool ProcessWithArgumentRuns(const std::string& text) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string cmdline = ReadFile(entry.path().string() + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(text) != std::string::npos) return true;
  }
  return false;
}

// Unmounts on scope exit, so the daemon (which ends with its mount) never
// outlives the test.
struct UnmountGuard {
  std::string path;
  ~UnmountGuard() { ForceUnmount(path); }
};

std::optional<int> RunToEnd(const std::vector<std::string>& argv, std::string* output = nullptr) {
  ChildProcess child(argv);
  std::optional<int> status = child.Wait(std::chrono::seconds(30));
  if (output != nullptr) *output = child.output();
  return status;
}

TEST(passthrough_cli, UnknownOptionIsAUsageError) {
  TempDir dir("lamina-cli");
  std::string output;
  EXPECT_EQ(
      RunToEnd({Laminafs(), "passthrough", "-o", "ro,frobnicate", dir.Subdir("s"), dir.Subdir("m")},
               &output),
      2);
  EXPECT_NE(output.find("unknown option 'frobnicate'"), std::string::npos) << output;
}

TEST(passthrough_cli, MaxNodesMustBeANumber) {
  TempDir dir("lamina-cli");
  std::string output;
  EXPECT_EQ(RunToEnd({Laminafs(), "passthrough", "-o", "max_nodes=many", dir.Subdir("s"),
                      dir.Subdir("m")},
                     &output),
            2);
  EXPECT_NE(output.find("bad max_nodes 'many'"), std::string::npos) << output;
}

TEST(passthrough_cli, MaxNodesBoundsTheDaemonsDescriptors) {
  TempDir dir("lamina-cli");
  const std::string source = dir.Subdir("src"), mnt = dir.Subdir("mnt");
  constexpr int kFiles = 3000;
  for (int i = 0; i < kFiles; ++i) WriteFile(source + "/f" + std::to_string(i), "");
  UnmountGuard guard{mnt};
  ChildProcess daemon({Laminafs(), "passthrough", "-f", "-o", "max_nodes=300", source, mnt});
  ASSERT_TRUE(WaitUntil([&] { return IsFuseMounted(mnt); }, std::chrono::seconds(10)))
      << daemon.output();
  const int baseline = CountFds(daemon.pid());
  int peak = baseline;
  for (int i = 0; i < kFiles; ++i) {
    struct stat st;
    ASSERT_EQ(lstat((mnt + "/f" + std::to_string(i)).c_str(), &st), 0) << i;
    if (i % 100 == 0) peak = std::max(peak, CountFds(daemon.pid()));
  }
  EXPECT_LT(peak - baseline, 300 + 300 / 8) << "from " << baseline;
  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.Wait(std::chrono::seconds(10)), 0);
}

TEST(passthrough_cli, SourceMustBeADirectory) {
  TempDir dir("lamina-cli");
  WriteFile(dir.path() + "/file", "");
  std::string output;
  EXPECT_EQ(RunToEnd({Laminafs(), "passthrough", dir.path() + "/file", dir.Subdir("m")}, &output),
            2);
  EXPECT_NE(output.find("not a directory"), std::string::npos) << output;
}

TEST(passthrough_cli, DaemonServesAsSoonAsTheParentExits) {
  TempDir dir("lamina-cli");
  const std::string source = dir.Subdir("src"), mnt = dir.Subdir("mnt");
  WriteFile(source + "/hello", "hi");
  UnmountGuard guard{mnt};
  std::string output;
  ASSERT_EQ(RunToEnd({Laminafs(), "passthrough", "-o", "timeout=0,passthrough=off,threads=2",
                      source, mnt},
                     &output),
            0)
      << output;
  // No waiting: the parent only exits after INIT was answered.
  EXPECT_TRUE(IsFuseMounted(mnt));
  EXPECT_EQ(ReadFile(mnt + "/hello"), "hi");
  ForceUnmount(mnt);
  EXPECT_TRUE(WaitUntil([&] { return !IsFuseMounted(mnt); }, std::chrono::seconds(5)));
  // The daemon ends with its mount.
  EXPECT_TRUE(WaitUntil([&] { return !ProcessWithArgumentRuns(mnt); }, std::chrono::seconds(10)));
}

TEST(passthrough_cli, ForegroundWithRelativePaths) {
  TempDir dir("lamina-cli");
  dir.Subdir("src");
  const std::string mnt = dir.Subdir("mnt");
  WriteFile(dir.path() + "/src/f", "relative");
  UnmountGuard guard{mnt};
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof(cwd)), nullptr);
  ASSERT_EQ(chdir(dir.path().c_str()), 0);
  ChildProcess daemon({Laminafs(), "passthrough", "-f", "-d", "src", "mnt"});
  ASSERT_EQ(chdir(cwd), 0);
  ASSERT_TRUE(WaitUntil([&] { return IsFuseMounted(mnt); }, std::chrono::seconds(10)))
      << daemon.output();
  EXPECT_EQ(ReadFile(mnt + "/f"), "relative");
  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.Wait(std::chrono::seconds(10)), 0);
  EXPECT_FALSE(IsFuseMounted(mnt));
}

}  // namespace
}  // namespace lamina::testing

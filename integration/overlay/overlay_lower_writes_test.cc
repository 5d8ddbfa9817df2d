// Lower layers are never written, whatever the timing of opens, copy-ups
// and releases.
//
// With FUSE passthrough the kernel reopens a registered backing file with
// each open's own flags and the daemon's credentials, so a write open of a
// copied-up file that were handed its lower file's backing id would write
// the lower layer. Two windows once did that: an open that raced the
// copy-up of its node, and a release that gave back its count of lower
// opens before its backing id. The first two tests hold a request in each
// window (SyncPoints) while the race happens; the storm then does what a
// build step does all day, many times over, beside other processes.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "integration/overlay/overlay_harness.h"
#include "integration/overlay/sync_gate.h"

namespace lamina::testing {
namespace {

using overlay::SyncPoint;
using namespace std::chrono_literals;

std::string ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "open:" + Outcome(fd);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return n < 0 ? "read:" + Outcome(-1) : out;
}

std::string Append(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) return "open:" + Outcome(fd);
  std::string out = Outcome(static_cast<int>(write(fd, data.data(), data.size())));
  close(fd);
  return out;
}

class OverlayLowerWritesTest : public OverlayPair {
 protected:
  void SetUp() override {
    lamina_options_.passthrough = PassthroughMode::kAuto;
    Mount({{"d a", "f a/f lower-data"}});
  }
  void TearDown() override {
    if (fs_ != nullptr) {
      fs_->sync_points().Set(SyncPoint::kOpenBeforeRegister, nullptr);
      fs_->sync_points().Set(SyncPoint::kReleaseBeforeUnregister, nullptr);
    }
    OverlayPair::TearDown();
  }
  std::string lower_file() const { return lamina_lower(0) + "/a/f"; }
  std::string merged_file() const { return lamina_root() + "/a/f"; }
  size_t registered_backings() { return server_->session().backing().size(); }
};

// A read-only open reads which object is on top, opens it, and registers it
// for passthrough; a copy-up finishing in between must not leave the lower
// file registered as if it were the upper one.
TEST_F(OverlayLowerWritesTest, OpenRacingACopyUpNeverHandsTheLowerFileToAWriter) {
  auto gate = std::make_shared<SyncGate>();
  fs_->sync_points().Set(SyncPoint::kOpenBeforeRegister, [gate] { gate->Hold(); });
  std::atomic<int> reader{-1};
  const std::string path = merged_file();
  std::thread opener([&] { reader = open(path.c_str(), O_RDONLY | O_CLOEXEC); });
  const bool reached = gate->WaitUntilReached();
  // The open holds the lower file's descriptor; chmod copies the file up.
  if (reached) {
    EXPECT_EQ(chmod(path.c_str(), 0640), 0) << strerror(errno);
  }
  gate->Open();
  opener.join();
  ASSERT_TRUE(reached) << "the open never reached the daemon";
  ASSERT_GE(reader.load(), 0) << "the read-only open failed";
  EXPECT_GE(registered_backings(), 1U) << "FUSE passthrough is not in use: nothing is tested";

  EXPECT_EQ(Append(merged_file(), "+appended"), "ok");
  close(reader);
  EXPECT_EQ(ReadFile(merged_file()), "lower-data+appended");
  EXPECT_EQ(ReadFileQuietly(lower_file()), "lower-data") << "the append reached the lower layer";
  EXPECT_EQ(ReadFile(lamina_upper() + "/a/f"), "lower-data+appended");
}

// A release of a lower open gives back its count and its backing id; a
// write open between the two must not get the lower file's id.
TEST_F(OverlayLowerWritesTest, ReleaseRacingAWriteOpenNeverHandsItTheLowerFile) {
  int reader = open(merged_file().c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(reader, 0) << strerror(errno);
  EXPECT_GE(registered_backings(), 1U) << "FUSE passthrough is not in use: nothing is tested";
  EXPECT_EQ(chmod(merged_file().c_str(), 0640), 0) << strerror(errno);

  auto gate = std::make_shared<SyncGate>();
  fs_->sync_points().Set(SyncPoint::kReleaseBeforeUnregister, [gate] { gate->Hold(); });
  close(reader);  // the kernel sends RELEASE after close(2) returns
  const bool reached = gate->WaitUntilReached();
  const std::string appended = reached ? Append(merged_file(), "+appended") : "";
  gate->Open();
  ASSERT_TRUE(reached) << "the release never reached the daemon";
  EXPECT_EQ(appended, "ok");
  EXPECT_EQ(ReadFile(merged_file()), "lower-data+appended");
  EXPECT_EQ(ReadFileQuietly(lower_file()), "lower-data") << "the append reached the lower layer";
  EXPECT_EQ(ReadFile(lamina_upper() + "/a/f"), "lower-data+appended");
}

// Opens and closes files of its own until told to stop (in a child
// process, so that opens and releases of many processes interleave).
pid_t StartChurn(const std::vector<std::string>& paths, const std::string& stop_file) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  for (size_t i = 0; access(stop_file.c_str(), F_OK) != 0; ++i) {
    int fd = open(paths[i % paths.size()].c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) close(fd);
  }
  _exit(0);
}

// What the reporter ran: for each lower file, open it for reading,
// chmod it while open (a copy-up), close it, then append one byte, while two
// other processes open and close other files. On 1272ebd about 3% of the
// lower files got the byte.
TEST(OverlayLowerWritesStormTest, ReadChmodAppendNeverWritesALowerFile) {
  constexpr int kFiles = 2000;
  TempDir dir("lamina-storm");
  const std::string lower = dir.Subdir("lower");
  const std::string upper = dir.Subdir("upper");
  const std::string work = dir.Subdir("work");
  const std::string mnt = dir.Subdir("mnt");
  mkdir((lower + "/files").c_str(), 0755);
  mkdir((lower + "/other").c_str(), 0755);
  for (int i = 0; i < kFiles; ++i) {
    for (const char* sub : {"/files/", "/other/"}) {
      const std::string path = lower + sub + std::to_string(i);
      int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
      ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
      ASSERT_EQ(write(fd, "data", 4), 4);
      close(fd);
    }
  }
  OverlayOptions options;
  options.layers.lowers = {lower};
  options.layers.upper = upper;
  options.layers.work = work;
  auto fs = OverlayFs::Create(options);
  ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  ServerOptions server_options;
  server_options.mount_options = {"fsname=lamina-test", "default_permissions", "allow_other"};
  auto server = FuseServer::Start(**fs, mnt, server_options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();

  std::vector<std::string> others;
  for (int i = 0; i < kFiles; ++i) others.push_back(mnt + "/other/" + std::to_string(i));
  const std::string stop = dir.path() + "/stop";
  pid_t churn[2] = {StartChurn(others, stop), StartChurn(others, stop)};
  int failures = 0;
  size_t max_backings = 0;
  for (int i = 0; i < kFiles; ++i) {
    const std::string path = mnt + "/files/" + std::to_string(i);
    int reader = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    max_backings = std::max(max_backings, (*server)->session().backing().size());
    if (reader < 0 || chmod(path.c_str(), 0600) != 0 || close(reader) != 0 ||
        Append(path, "!") != "ok") {
      ++failures;
    }
  }
  close(open(stop.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  for (pid_t pid : churn) waitpid(pid, nullptr, 0);
  server->reset();
  fs->reset();

  EXPECT_EQ(failures, 0) << "open, chmod, close or append through the mount failed";
  EXPECT_GE(max_backings, 1U) << "FUSE passthrough is not in use: nothing is tested";
  int changed = 0, missing = 0;
  for (int i = 0; i < kFiles; ++i) {
    const std::string name = "/files/" + std::to_string(i);
    if (ReadFile(lower + name) != "data") ++changed;
    if (ReadFile(upper + name) != "data!") ++missing;
  }
  EXPECT_EQ(changed, 0) << "lower files written through the overlay";
  EXPECT_EQ(missing, 0) << "upper copies without the appended byte";
}

}  // namespace
}  // namespace lamina::testing

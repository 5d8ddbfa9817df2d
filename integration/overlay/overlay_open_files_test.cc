// Descriptors opened before a copy-up, against kernel overlayfs.
//
// With FUSE passthrough the kernel pins a lower file to its inode while a
// read-only open of it lives, and refuses other opens of that inode; these
// tests are what an overlay rootfs does all day (a running program whose
// file gets chmod'ed, a log read while it is appended to) and run with
// passthrough on and off.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

const std::vector<std::string> kLower = {"d a", "f a/log first", "f a/conf setting=1"};

std::string ReadAll(int fd) {
  std::string out;
  char buf[256];
  ssize_t n;
  off_t offset = 0;
  while ((n = pread(fd, buf, sizeof(buf), offset)) > 0) {
    out.append(buf, static_cast<size_t>(n));
    offset += n;
  }
  return n < 0 ? "read:" + Outcome(-1) : out;
}

std::string ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "open:" + Outcome(fd);
  std::string out = ReadAll(fd);
  close(fd);
  return out;
}

// Runs `path args...` and reports how it ended.
std::string RunProgram(const std::string& path, const char* arg) {
  pid_t pid = fork();
  if (pid == 0) {
    execl(path.c_str(), path.c_str(), arg, static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return "exit=" + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

class OverlayOpenFilesTest : public OverlayPair, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    lamina_options_.passthrough = GetParam() ? PassthroughMode::kAuto : PassthroughMode::kOff;
    Mount({kLower});
  }
};

TEST_P(OverlayOpenFilesTest, WriteOpenWhileOpenReadOnly) {
  std::string old_reads[2];
  int which = 0;
  ExpectSame(
      [&](const std::string& r) {
        const std::string path = r + "/a/log";
        int reader = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        std::string out = Outcome(reader) + ReadAll(reader);
        int writer = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        out += " append-open:" + Outcome(writer);
        out += Outcome(static_cast<int>(write(writer, "+second", 7)));
        out += " new-open:" + ReadFile(path);
        struct stat st {};
        out += Outcome(stat(path.c_str(), &st)) + " size=" + std::to_string(st.st_size);
        out += " writer-close:" + Outcome(close(writer));
        out += " after:" + ReadFile(path);
        old_reads[which++] = ReadAll(reader);
        close(reader);
        out += " last:" + ReadFile(path);
        return out;
      },
      "append while the file is open read-only");
  // The kernel's read-only descriptor follows the copy-up (since 4.19), and
  // so do Lamina's reads served by the daemon. With FUSE passthrough the
  // kernel reads the lower file it was given at open (docs/overlay.md).
  EXPECT_EQ(old_reads[0], GetParam() ? "first" : "first+second");
  EXPECT_EQ(old_reads[1], "first+second");
}

TEST_P(OverlayOpenFilesTest, MetadataCopyUpWhileOpenThenReopen) {
  ExpectSame(
      [](const std::string& r) {
        const std::string path = r + "/a/conf";
        int reader = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        std::string out = Outcome(reader);
        out += Outcome(chmod(path.c_str(), 0600));
        out += " reopen:" + ReadFile(path);
        int writer = open(path.c_str(), O_RDWR | O_TRUNC | O_CLOEXEC);
        out += " truncating-open:" + Outcome(writer);
        out += Outcome(static_cast<int>(write(writer, "setting=2", 9)));
        close(writer);
        close(reader);
        out += " final:" + ReadFile(path);
        return out;
      },
      "chmod of a file held open, then opens of it");
}

TEST_P(OverlayOpenFilesTest, RunningProgramChangedAndRunAgain) {
  // A lower copy of a program: while one instance runs, the file is
  // chmod'ed (copied up), then run again (a package manager's triggers do
  // this to binaries in use).
  UnmountLamina();
  UnmountKernel();
  ChangeLowers("a copy of /bin/sleep added", [&] {
    for (const std::string& set : set_) {
      const std::string dst = set + "/lower0/a/sleep";
      ASSERT_EQ(system(("cp /bin/sleep " + dst).c_str()), 0);
    }
  });
  MountBoth();
  ExpectSame(
      [](const std::string& r) {
        const std::string program = r + "/a/sleep";
        pid_t running = fork();
        if (running == 0) {
          execl(program.c_str(), program.c_str(), "3", static_cast<char*>(nullptr));
          _exit(127);
        }
        usleep(200 * 1000);
        std::string out = Outcome(chmod(program.c_str(), 0700));
        out += " again:" + RunProgram(program, "0");
        kill(running, SIGKILL);
        waitpid(running, nullptr, 0);
        out += " after:" + RunProgram(program, "0");
        return out;
      },
      "a running program copied up and run again");
}

INSTANTIATE_TEST_SUITE_P(Passthrough, OverlayOpenFilesTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("On") : std::string("Off");
                         });

}  // namespace
}  // namespace lamina::testing

// O_TMPFILE in a set-group-ID directory, side by side with kernel overlayfs
// (found by fstests' generic/633 and generic/697). The overlay made the
// unnamed file and then chowned it to the caller's uid and gid: the file
// lost the directory's group, and the chown dropped the set-group-ID bit
// even for root, who may keep it.

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

const std::vector<std::string> kLower = {"d sg", "d plain"};

// Makes an unnamed file in `dir` with `mode`, links it in as `name`; its
// mode and owner, or what failed.
std::string TmpfileIn(const std::string& dir, const std::string& name, mode_t mode) {
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
  if (fd < 0) return "tmpfile:" + Outcome(-1);
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  std::string out = "link:" + Outcome(linkat(AT_FDCWD, path.c_str(), AT_FDCWD,
                                             (dir + "/" + name).c_str(), AT_SYMLINK_FOLLOW));
  struct stat st {};
  fstat(fd, &st);
  close(fd);
  char mode_text[16];
  snprintf(mode_text, sizeof(mode_text), "%04o", st.st_mode & 07777);
  return out + " mode=" + mode_text + " uid=" + std::to_string(st.st_uid) +
         " gid=" + std::to_string(st.st_gid);
}

// Runs `op` as uid/gid 1000 in a child process; what it returned.
std::string AsUser1000(const std::function<std::string()>& op) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return "pipe";
  pid_t pid = fork();
  if (pid == 0) {
    close(pipe_fds[0]);
    std::string out = "setuid failed";
    if (setgroups(0, nullptr) == 0 && setgid(1000) == 0 && setuid(1000) == 0) out = op();
    (void)!write(pipe_fds[1], out.data(), out.size());
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string out;
  char buffer[256];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0) {
    out.append(buffer, static_cast<size_t>(n));
  }
  close(pipe_fds[0]);
  waitpid(pid, nullptr, 0);
  return out;
}

class OverlayTmpfileSetgidTest : public OverlayPair {
 protected:
  void SetUp() override {
    umask(022);
    chmod(dir_.path().c_str(), 0755);  // uid 1000 reaches both mounts
    Mount({kLower});
  }
};

TEST_F(OverlayTmpfileSetgidTest, RootKeepsTheBitAndTheDirectorysGroup) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = "chown:" + Outcome(chown((r + "/sg").c_str(), 0, 1234));
        out += " chmod:" + Outcome(chmod((r + "/sg").c_str(), 02777));
        out += " setgid dir: " + TmpfileIn(r + "/sg", "t", 02755);
        out += "; plain dir: " + TmpfileIn(r + "/plain", "t", 02755);
        return out;
      },
      "O_TMPFILE as root");
}

TEST_F(OverlayTmpfileSetgidTest, OtherUserGetsTheDirectorysGroup) {
  ExpectSame(
      [](const std::string& r) {
        std::string out = "chmod:" + Outcome(chmod((r + "/sg").c_str(), 02777));
        out += " chmod:" + Outcome(chmod((r + "/plain").c_str(), 0777));
        out += AsUser1000([&] {
          return " setgid dir: " + TmpfileIn(r + "/sg", "u", 02755) +
                 "; plain dir: " + TmpfileIn(r + "/plain", "u", 0644);
        });
        return out;
      },
      "O_TMPFILE as uid 1000");
}

}  // namespace
}  // namespace lamina::testing

// FIFOs, sockets and device nodes in either layer: every attribute change
// and open through the overlay returns promptly with kernel overlayfs'
// answer, and the daemon never opens them.
//
// `mkfifo p; chown 123:456 p` once hung the daemon's worker for good: the
// kernel asks the server to drop set-ID bits on every chown of a
// non-directory (FATTR_KILL_SUIDGID), and the overlay opened the object to
// do it, which for a FIFO waits for a writer. Each operation here runs in a
// child process with a deadline, so a hang fails the test instead of
// hanging it; the test then opens the FIFOs for writing itself, which
// releases a daemon stuck that way, so tear-down still works.

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {
namespace {

constexpr uid_t kOwner = 1000;
constexpr gid_t kOwnerGroup = 1000;

// The special objects, by name, in the lower layer (l-*) and the upper (u-*).
const std::vector<std::string> kObjects = {"l-fifo", "l-sock", "l-null",
                                           "u-fifo", "u-sock", "u-null"};

void MakeObject(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name;
  const std::string kind = name.substr(2);
  if (kind == "fifo") {
    ASSERT_EQ(mkfifo(path.c_str(), 06755), 0) << path << ": " << strerror(errno);
    ASSERT_EQ(chmod(path.c_str(), 06755), 0);  // set-ID bits for the kill to find
  } else if (kind == "sock") {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    ASSERT_LT(path.size(), sizeof(address.sun_path));
    memcpy(address.sun_path, path.c_str(), path.size() + 1);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0)
        << path << ": " << strerror(errno);
    close(fd);
  } else {
    ASSERT_EQ(mknod(path.c_str(), S_IFCHR | 0666, makedev(1, 3)), 0) << strerror(errno);
  }
  ASSERT_EQ(lchown(path.c_str(), kOwner, kOwnerGroup), 0);
}

// Opens every FIFO under `dir` for writing without blocking: a daemon
// thread stuck opening one for reading is released by it.
void ReleaseStuckFifoOpens(const std::string& dir) {
  for (const std::string& name : kObjects) {
    if (name.substr(2) != "fifo") continue;
    int fd = open((dir + "/" + name).c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) close(fd);
  }
}

enum class Transport { kDevFuse, kIoUring };
enum class Caller { kRoot, kOwner };
using Param = std::tuple<Transport, Caller, bool /*default_permissions*/>;

class OverlaySpecialFilesTest : public OverlayPair, public ::testing::WithParamInterface<Param> {
 protected:
  void SetUp() override {
    if (std::get<Transport>(GetParam()) == Transport::kIoUring) {
      uring_ = std::make_unique<FuseUringSetting>(true);
      if (!uring_->supported()) GTEST_SKIP() << uring_->unsupported_reason();
      ASSERT_TRUE(uring_->applied()) << "cannot set enable_uring";
      lamina_io_uring_ = true;
    }
    lamina_default_permissions_ = std::get<bool>(GetParam());
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);  // the owner reaches the mounts
    BuildLayers({{"d d"}}, {"d d"});
    for (const std::string& set : set_) {
      ASSERT_EQ(chown((set + "/lower0/d").c_str(), kOwner, kOwnerGroup), 0);
      ASSERT_EQ(chown((set + "/upper/d").c_str(), kOwner, kOwnerGroup), 0);
      for (const std::string& name : kObjects) {
        MakeObject(set + (name[0] == 'l' ? "/lower0/d" : "/upper/d"), name);
      }
    }
    MountBoth();
    if (lamina_io_uring_) {
      ASSERT_NE(server_->io_uring(), nullptr);
      ASSERT_TRUE(server_->io_uring()->active()) << "the kernel did not take the rings";
    }
  }

  // Runs `op` as the caller of this test case in a child process; its
  // errno name, "ok", or "HANG" if it did not return within the deadline.
  std::string Run(const std::function<int()>& op) {
    const bool owner = std::get<Caller>(GetParam()) == Caller::kOwner;
    pid_t pid = fork();
    if (pid == 0) {
      if (owner &&
          (setgroups(0, nullptr) != 0 || setresgid(kOwnerGroup, kOwnerGroup, kOwnerGroup) != 0 ||
           setresuid(kOwner, kOwner, kOwner) != 0)) {
        _exit(254);
      }
      errno = 0;
      int rc = op();
      _exit(rc >= 0 ? 0 : (errno & 0xff));
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        ReleaseStuckFifoOpens(lamina_lower(0) + "/d");
        ReleaseStuckFifoOpens(lamina_upper() + "/d");
        waitpid(pid, &status, 0);
        return "HANG";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!WIFEXITED(status)) return "killed";
    const int code = WEXITSTATUS(status);
    if (code == 254) return "no-credentials";
    if (code == 0) return "ok";
    const char* name = strerrorname_np(code);
    return name != nullptr ? name : std::to_string(code);
  }

  std::unique_ptr<FuseUringSetting> uring_;
};

std::string Describe(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return "stat:" + Outcome(-1);
  char text[64];
  snprintf(text, sizeof(text), " mode=%o uid=%u gid=%u", st.st_mode, st.st_uid, st.st_gid);
  return text;
}

TEST_P(OverlaySpecialFilesTest, AttributeChangesAndOpensReturnAsOnTheKernel) {
  for (const std::string& name : kObjects) {
    SCOPED_TRACE(name);
    ExpectSame(
        [&](const std::string& root) {
          const std::string path = root + "/d/" + name;
          const char* p = path.c_str();
          std::string out;
          out += " chgrp:" + Run([&] { return chown(p, -1, kOwnerGroup); }) + Describe(path);
          out += " chown:" + Run([&] { return chown(p, 123, 456); }) + Describe(path);
          out += " chown-same:" + Run([&] { return chown(p, -1, -1); }) + Describe(path);
          out += " chmod:" + Run([&] { return chmod(p, 04750); }) + Describe(path);
          out += " chgrp-set-id:" + Run([&] { return chown(p, -1, kOwnerGroup); }) + Describe(path);
          out += " truncate:" + Run([&] { return truncate(p, 0); });
          out += " utimes:" + Run([&] { return utimensat(AT_FDCWD, p, nullptr, 0); });
          out += " user-xattr:" + Run([&] { return setxattr(p, "user.x", "1", 1, 0); });
          out += " trusted-xattr:" + Run([&] { return lsetxattr(p, "trusted.x", "1", 1, 0); });
          out += " open:" + Run([&] {
                   int fd = open(p, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
                   if (fd >= 0) close(fd);
                   return fd;
                 });
          out += " stat:" + Describe(path);
          out += " reached:" + Run([&] {
                   struct stat st;
                   return lstat(p, &st);
                 });
          return out;
        },
        "attribute changes and opens of " + name);
  }
}

// Without default_permissions the in-process overlay checks no permission
// itself (laminafs always adds the option), so only root's answers are the
// kernel's there.
INSTANTIATE_TEST_SUITE_P(All, OverlaySpecialFilesTest,
                         ::testing::Values(Param{Transport::kDevFuse, Caller::kRoot, true},
                                           Param{Transport::kDevFuse, Caller::kOwner, true},
                                           Param{Transport::kDevFuse, Caller::kRoot, false},
                                           Param{Transport::kIoUring, Caller::kRoot, true},
                                           Param{Transport::kIoUring, Caller::kOwner, true},
                                           Param{Transport::kIoUring, Caller::kRoot, false}),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           std::string name = std::get<Transport>(info.param) == Transport::kIoUring
                                                  ? "IoUring"
                                                  : "DevFuse";
                           name += std::get<Caller>(info.param) == Caller::kOwner ? "AsOwner"
                                                                                  : "AsRoot";
                           name +=
                               std::get<bool>(info.param) ? "DefaultPermissions" : "DaemonChecks";
                           return name;
                         });

}  // namespace
}  // namespace lamina::testing

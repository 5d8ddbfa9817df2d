#define FUSE_USE_VERSION 314
#include "core/fuse_mount.h"

#include <fcntl.h>
#include <fuse3/fuse_lowlevel.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spdlog/spdlog.h"

namespace lamina {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountinfo(const std::string& field) {
  auto octal = [](char d) { return d >= '0' && d <= '7'; };
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && octal(field[i + 1]) && octal(field[i + 2]) &&
        octal(field[i + 3])) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                      (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

// Starts a helper program (fusermount3) with an argument vector, never
// through a shell, so no character of a mount point can become part of a
// command. `extra_env` ("NAME=VALUE") is added to the environment; with
// `quiet` its output goes to /dev/null. Returns the pid, or -1.
pid_t SpawnHelper(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                  bool quiet) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  // The environment, but with extra_env's values for the names it sets.
  auto overridden = [&](const char* entry) {
    for (const std::string& extra : extra_env) {
      if (std::strncmp(entry, extra.c_str(), extra.find('=') + 1) == 0) return true;
    }
    return false;
  };
  std::vector<char*> env;
  for (const std::string& entry : extra_env) env.push_back(const_cast<char*>(entry.c_str()));
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (!overridden(*entry)) env.push_back(*entry);
  }
  env.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (quiet) {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  }
  pid_t pid = -1;
  const int error = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) {
    spdlog::warn("cannot run {}: {}", argv[0], strerror(error));
    return -1;
  }
  return pid;
}

// Waits for a helper; its exit status, or -1 if it did not exit normally.
int WaitForHelper(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Mounts through the setuid fusermount3 helper, which opens /dev/fuse,
// mounts, and passes the descriptor back over a socket (_FUSE_COMMFD).
// `options` is the escaped list (JoinMountOptions).
absl::StatusOr<int> MountWithFusermount(const std::string& mountpoint, const std::string& options) {
  int sockets[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sockets) != 0) {
    return absl::InternalError(absl::StrCat("socketpair: ", strerror(errno)));
  }
  // The helper inherits its end only.
  fcntl(sockets[0], F_SETFD, FD_CLOEXEC);
  const std::string opts = options.empty() ? "rw" : options;
  const pid_t pid = SpawnHelper({"fusermount3", "-o", opts, "--", mountpoint},
                                {"_FUSE_COMMFD=" + std::to_string(sockets[1])}, /*quiet=*/false);
  close(sockets[1]);
  if (pid < 0) {
    close(sockets[0]);
    return absl::PermissionDeniedError(
        absl::StrCat("cannot run fusermount3 to mount ", mountpoint));
  }
  char byte;
  struct iovec iov = {&byte, 1};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = recvmsg(sockets[0], &msg, MSG_CMSG_CLOEXEC);
  close(sockets[0]);
  const int status = WaitForHelper(pid);
  struct cmsghdr* cmsg = n > 0 ? CMSG_FIRSTHDR(&msg) : nullptr;
  if (cmsg == nullptr || cmsg->cmsg_type != SCM_RIGHTS) {
    return absl::PermissionDeniedError(
        absl::StrCat("fusermount3 could not mount ", mountpoint, " (exit status ", status, ")"));
  }
  int fd;
  std::memcpy(&fd, CMSG_DATA(cmsg), sizeof(fd));
  return fd;
}

}  // namespace

std::string JoinMountOptions(const std::vector<std::string>& options) {
  std::string list;
  for (const std::string& option : options) {
    if (!list.empty()) list.push_back(',');
    for (char c : option) {
      if (c == ',' || c == '\\') list.push_back('\\');
      list.push_back(c);
    }
  }
  return list;
}

int FindMountMinor(const std::string& mountpoint) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  int minor = -1;
  while (std::getline(mountinfo, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 5 || UnescapeMountinfo(fields[4]) != mountpoint) continue;
    std::vector<std::string> dev = absl::StrSplit(fields[2], ':');
    if (dev.size() == 2) minor = std::atoi(dev[1].c_str());  // the last match is on top
  }
  return minor;
}

absl::StatusOr<std::unique_ptr<FuseMount>> FuseMount::Create(
    const std::string& mountpoint, const std::vector<std::string>& options) {
  char resolved[PATH_MAX];
  if (realpath(mountpoint.c_str(), resolved) == nullptr) {
    return absl::NotFoundError(absl::StrCat("mountpoint ", mountpoint, ": ", strerror(errno)));
  }
  struct stat st;
  if (stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("mountpoint ", mountpoint, " is not a directory"));
  }

  const std::string option_list = JoinMountOptions(options);
  std::vector<std::string> argv_storage = {"lamina"};
  if (!options.empty()) {
    argv_storage.push_back("-o");
    argv_storage.push_back(option_list);
  }
  std::vector<char*> argv;
  for (std::string& arg : argv_storage) argv.push_back(arg.data());
  struct fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  struct fuse_lowlevel_ops no_ops {};

  std::unique_ptr<FuseMount> mount(new FuseMount());
  mount->session_ = fuse_session_new(&args, &no_ops, sizeof(no_ops), nullptr);
  fuse_opt_free_args(&args);
  if (mount->session_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("libfuse rejected the mount options: ", option_list));
  }
  if (geteuid() != 0 && access("/dev/fuse", R_OK | W_OK) != 0) {
    // libfuse only falls back to fusermount3 when mount(2) is refused, not
    // when the device itself cannot be opened; the helper can open it.
    absl::StatusOr<int> fd = MountWithFusermount(resolved, option_list);
    if (!fd.ok()) return fd.status();
    mount->fd_ = *fd;
  } else if (fuse_session_mount(mount->session_, resolved) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot mount FUSE at ", resolved, " (see the message above)"));
  } else {
    // libfuse closes its descriptor inside fuse_session_unmount(), while our
    // workers may still be reading: serve on a duplicate we close ourselves.
    mount->fd_ = fcntl(fuse_session_fd(mount->session_), F_DUPFD_CLOEXEC, 0);
    if (mount->fd_ < 0) return absl::InternalError(absl::StrCat("dup: ", strerror(errno)));
  }
  mount->owns_fd_ = true;
  mount->mountpoint_ = resolved;
  mount->connection_id_ = FindMountMinor(resolved);
  return mount;
}

FuseMount::~FuseMount() {
  if (!mountpoint_.empty()) Unmount();
  if (session_ != nullptr) fuse_session_destroy(session_);  // closes a descriptor it mounted
  if (owns_fd_ && fd_ >= 0) close(fd_);
}

void FuseMount::Unmount() {
  std::lock_guard<std::mutex> lock(unmount_mu_);
  if (unmounted_ || mountpoint_.empty()) return;
  unmounted_ = true;
  // libfuse detaches lazily (via fusermount3 when unprivileged) but skips
  // connections that are already aborted, which would leave a dead mount
  // ("transport endpoint is not connected") behind: detach that one here.
  fuse_session_unmount(session_);
  // Only a dead connection answers ENOTCONN (ECONNABORTED once aborted,
  // with FUSE_ABORT_ERROR): a new mount made at the same place since (whose
  // device minor may well be ours again, the kernel reuses the lowest free
  // one) is left alone.
  // (Forced: cached attributes would answer without asking the connection.)
  struct statx stx;
  const bool dead =
      statx(AT_FDCWD, mountpoint_.c_str(), AT_STATX_FORCE_SYNC, STATX_TYPE, &stx) != 0 &&
      (errno == ENOTCONN || errno == ECONNABORTED);
  if (dead && connection_id_ >= 0 && FindMountMinor(mountpoint_) == connection_id_) {
    if (geteuid() == 0) {
      umount2(mountpoint_.c_str(), MNT_DETACH);
    } else {
      const pid_t pid =
          SpawnHelper({"fusermount3", "-u", "-z", "--", mountpoint_}, {}, /*quiet=*/true);
      if (pid < 0 || WaitForHelper(pid) != 0) spdlog::warn("could not unmount {}", mountpoint_);
    }
  }
}

bool FuseMount::Abort() {
  if (connection_id_ < 0) return false;
  const char* kFusectl = "/sys/fs/fuse/connections";
  std::string path = absl::StrCat(kFusectl, "/", connection_id_, "/abort");
  if (access(path.c_str(), W_OK) != 0 && geteuid() == 0) {
    mount("fusectl", kFusectl, "fusectl", 0, nullptr);  // absent on minimal hosts
  }
  std::ofstream abort_file(path);
  if (!abort_file) return false;
  abort_file << "1";
  abort_file.close();
  return !abort_file.fail();
}

std::string FuseMount::LibfuseVersion() {
  return fuse_pkgversion();
}

}  // namespace lamina

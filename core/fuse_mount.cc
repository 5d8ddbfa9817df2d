#define FUSE_USE_VERSION 314
#include "core/fuse_mount.h"

#include <fcntl.h>
#include <fuse3/fuse_lowlevel.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

// Mounts through the setuid fusermount3 helper, which opens /dev/fuse,
// mounts, and passes the descriptor back over a socket (_FUSE_COMMFD).
absl::StatusOr<int> MountWithFusermount(const std::string& mountpoint, const std::string& options) {
  int sockets[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sockets) != 0) {
    return absl::InternalError(absl::StrCat("socketpair: ", strerror(errno)));
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(sockets[0]);
    setenv("_FUSE_COMMFD", std::to_string(sockets[1]).c_str(), 1);
    std::string opts = options.empty() ? "rw" : options;
    execlp("fusermount3", "fusermount3", "-o", opts.c_str(), "--", mountpoint.c_str(), nullptr);
    _exit(127);
  }
  close(sockets[1]);
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
  int status = 0;
  waitpid(pid, &status, 0);
  struct cmsghdr* cmsg = n > 0 ? CMSG_FIRSTHDR(&msg) : nullptr;
  if (cmsg == nullptr || cmsg->cmsg_type != SCM_RIGHTS) {
    return absl::PermissionDeniedError(absl::StrCat("fusermount3 could not mount ", mountpoint,
                                                    " (exit status ", WEXITSTATUS(status), ")"));
  }
  int fd;
  std::memcpy(&fd, CMSG_DATA(cmsg), sizeof(fd));
  return fd;
}

}  // namespace

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

  std::vector<std::string> argv_storage = {"lamina"};
  if (!options.empty()) {
    argv_storage.push_back("-o");
    argv_storage.push_back(absl::StrJoin(options, ","));
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
        absl::StrCat("libfuse rejected the mount options: ", absl::StrJoin(options, ",")));
  }
  if (geteuid() != 0 && access("/dev/fuse", R_OK | W_OK) != 0) {
    // libfuse only falls back to fusermount3 when mount(2) is refused, not
    // when the device itself cannot be opened; the helper can open it.
    absl::StatusOr<int> fd = MountWithFusermount(resolved, absl::StrJoin(options, ","));
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
      std::string command = absl::StrCat("fusermount3 -u -z -- '", mountpoint_, "' 2>/dev/null");
      if (system(command.c_str()) != 0) spdlog::warn("could not unmount {}", mountpoint_);
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

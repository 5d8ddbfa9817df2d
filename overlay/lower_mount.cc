#include "overlay/lower_mount.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace lamina::overlay {
namespace {

// Makes the detached tree `tree_fd` read-only and private (nothing mounted
// later on the layer's own mount shows up in it), and noatime where the
// kernel allows: in a user namespace the atime flags the mounts were
// copied with are locked (EPERM). Returns 0 or the errno of the read-only
// step. Only system calls: the clone helper runs it in a forked child.
int MakeReadOnly(int tree_fd, bool* noatime) {
  constexpr unsigned kWholeTree = AT_EMPTY_PATH | AT_RECURSIVE;
  struct mount_attr attr {};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOATIME;
  attr.attr_clr = MOUNT_ATTR__ATIME;
  attr.propagation = MS_PRIVATE;
  *noatime = true;
  if (mount_setattr(tree_fd, "", kWholeTree, &attr, sizeof(attr)) == 0) return 0;
  if (errno != EPERM) return errno;
  attr.attr_set = MOUNT_ATTR_RDONLY;
  attr.attr_clr = 0;
  *noatime = false;
  if (mount_setattr(tree_fd, "", kWholeTree, &attr, sizeof(attr)) == 0) return 0;
  return errno;
}

// A read-only clone of the mount tree at `path` (relative to `dir_fd`; ""
// with AT_EMPTY_PATH clones the place `dir_fd` names). The descriptor, or
// -errno. Only system calls, as MakeReadOnly.
int CloneReadOnly(int dir_fd, const char* path, unsigned extra_flags, bool* noatime) {
  const int tree = static_cast<int>(
      open_tree(dir_fd, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | extra_flags));
  if (tree < 0) return -errno;
  const int error = MakeReadOnly(tree, noatime);
  if (error != 0) {
    close(tree);
    return -error;
  }
  return tree;
}

// What the helper sends for each path: 0 and the clone's descriptor (as
// SCM_RIGHTS), or the errno that stopped it.
struct HelperReply {
  int32_t error = 0;
  int32_t noatime = 0;
};

void SendReply(int sock, HelperReply reply, int fd) {
  struct iovec iov = {&reply, sizeof(reply)};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    struct cmsghdr* header = CMSG_FIRSTHDR(&msg);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &fd, sizeof(int));
  }
  while (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

// The helper child: born in a user namespace of its own, where it holds
// CAP_SYS_ADMIN over a mount namespace of its own (a copy of the daemon's,
// so the paths mean what they meant), clones each path there and sends the
// clones back. No uid map is written: the child reaches files with the
// daemon's own ids and no capability over any of them. Runs in a copy of a
// daemon that may have threads: system calls only, no allocation.
[[noreturn]] void RunCloneHelper(int sock, const std::vector<std::string>& paths) {
  for (const std::string& path : paths) {
    HelperReply reply;
    bool noatime = false;
    const int tree = CloneReadOnly(AT_FDCWD, path.c_str(), 0, &noatime);
    reply.error = tree < 0 ? -tree : 0;
    reply.noatime = noatime ? 1 : 0;
    SendReply(sock, reply, tree);
    if (tree >= 0) close(tree);
  }
  _exit(0);
}

// Receives one reply; the descriptor (or -1) and the reply, or nullopt-like
// error EPIPE when the helper died.
HelperReply ReceiveReply(int sock, int* fd) {
  HelperReply reply;
  struct iovec iov = {&reply, sizeof(reply)};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  *fd = -1;
  ssize_t n;
  while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  for (struct cmsghdr* h = CMSG_FIRSTHDR(&msg); n > 0 && h != nullptr; h = CMSG_NXTHDR(&msg, h)) {
    if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS &&
        h->cmsg_len == CMSG_LEN(sizeof(int))) {
      std::memcpy(fd, CMSG_DATA(h), sizeof(int));
    }
  }
  if (n != static_cast<ssize_t>(sizeof(reply))) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
    return HelperReply{EPIPE, 0};
  }
  if (reply.error == 0 && *fd < 0) reply.error = EPIPE;
  return reply;
}

// Clones `paths` in a helper child (see RunCloneHelper). One entry per
// path: a descriptor, or -errno.
std::vector<int> CloneInHelper(const std::vector<std::string>& paths, std::vector<bool>* noatime) {
  std::vector<int> trees(paths.size(), -EPIPE);
  noatime->assign(paths.size(), false);
  int sockets[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets) != 0) {
    trees.assign(paths.size(), -errno);
    return trees;
  }
  // clone(2) as fork() does it, but into new user and mount namespaces:
  // unshare(CLONE_NEWUSER) after a fork refuses a process with more than
  // one thread (EINVAL), and runtimes such as ThreadSanitizer's start one
  // in every forked child. (No atfork handlers run: the child only makes
  // system calls.)
  const pid_t child = static_cast<pid_t>(
      syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNS | SIGCHLD, nullptr, nullptr, nullptr, 0));
  if (child == 0) {
    close(sockets[0]);
    RunCloneHelper(sockets[1], paths);
  }
  close(sockets[1]);
  if (child < 0) {
    trees.assign(paths.size(), -errno);
    close(sockets[0]);
    return trees;
  }
  for (size_t i = 0; i < paths.size(); ++i) {
    int fd = -1;
    HelperReply reply = ReceiveReply(sockets[0], &fd);
    trees[i] = reply.error == 0 ? fd : -reply.error;
    (*noatime)[i] = reply.noatime != 0;
    if (reply.error == EPIPE && fd < 0) break;  // the helper is gone
  }
  close(sockets[0]);
  while (waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
  }
  return trees;
}

bool SameObject(int a, int b) {
  struct stat sa, sb;
  return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

bool IsReadOnlyMount(int fd) {
  struct statvfs st;
  return fstatvfs(fd, &st) == 0 && (st.f_flag & ST_RDONLY) != 0;
}

}  // namespace

absl::StatusOr<std::vector<LowerRoot>> OpenLowerRoots(const std::vector<std::string>& paths) {
  std::vector<LowerRoot> roots;
  auto close_all = [&roots] {
    for (const LowerRoot& root : roots) close(root.fd);
  };
  for (const std::string& path : paths) {
    const int fd = open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      const int error = errno;
      close_all();
      return absl::InvalidArgumentError(absl::StrCat("lowerdir ", path, ": ", strerror(error)));
    }
    roots.push_back(LowerRoot{fd});
  }

  // Directly, from the descriptors just opened (no second path walk); a
  // daemon without CAP_SYS_ADMIN over its mount namespace gets EPERM and
  // asks the helper, which walks the paths again in its own namespace.
  std::vector<int> trees(paths.size());
  std::vector<bool> noatime(paths.size());
  bool helper = false;
  for (size_t i = 0; i < paths.size(); ++i) {
    bool flag = false;
    trees[i] = CloneReadOnly(roots[i].fd, "", AT_EMPTY_PATH, &flag);
    noatime[i] = flag;
    if (trees[i] == -EPERM && i == 0) {
      helper = true;
      break;
    }
  }
  if (helper) trees = CloneInHelper(paths, &noatime);

  std::string failure;  // why some layer is left on its own mount
  bool atime_locked = false;
  for (size_t i = 0; i < paths.size(); ++i) {
    const int tree = trees[i];
    if (tree < 0) {
      failure = absl::StrCat(helper ? "in a user namespace: " : "", strerror(-tree));
      continue;
    }
    // A helper walked the path again: it must have found the same
    // directory, and the kernel must report the clone read-only.
    if (!SameObject(tree, roots[i].fd) || !IsReadOnlyMount(tree)) {
      close(tree);
      failure = "the clone is not the layer, or not read-only";
      continue;
    }
    close(roots[i].fd);
    roots[i] = LowerRoot{tree, true, noatime[i]};
    atime_locked = atime_locked || !noatime[i];
  }
  if (!failure.empty()) {
    spdlog::warn(
        "overlay: lower layers are used through their own mounts, not read-only clones ({}); "
        "the kernel would not refuse a write that reached them",
        failure);
  } else if (atime_locked) {
    // The normal case in a user namespace (rootless mounts): not a warning.
    spdlog::debug(
        "overlay: lower layers are read-only clones that keep their atime flags (locked in a "
        "user namespace); lower objects are read with O_NOATIME where permitted");
  }
  return roots;
}

}  // namespace lamina::overlay

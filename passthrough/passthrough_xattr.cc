// PassthroughFs: extended attributes and inode flags (chattr/lsattr).
//
// O_PATH descriptors do not support the f*xattr calls, so xattrs go through
// the node's /proc/self/fd magic link, which lands on the file itself (a
// symlink node included) without resolving any name in the source.

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cstring>

#include "passthrough/handles.h"
#include "passthrough/passthrough_fs.h"

namespace lamina {

namespace {

Result<size_t> SizeOrError(ssize_t n) {
  if (n < 0) return LastErrno();
  return static_cast<size_t>(n);
}

// Inode flags only root may change (the kernel requires CAP_LINUX_IMMUTABLE
// of the caller; the daemon has it, so the check is made here).
constexpr unsigned int kPrivilegedFlags = FS_IMMUTABLE_FL | FS_APPEND_FL;
constexpr unsigned int kPrivilegedXflags = FS_XFLAG_IMMUTABLE | FS_XFLAG_APPEND;

}  // namespace

Result<void> PassthroughFs::SetXattr(const Ctx&, NodeId node, std::string_view name,
                                     std::span<const std::byte> value, int flags, uint32_t) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  return CheckSyscall(setxattr(inode->ProcPath().c_str(), std::string(name).c_str(), value.data(),
                               value.size(), flags));
}

Result<size_t> PassthroughFs::GetXattr(const Ctx&, NodeId node, std::string_view name,
                                       std::span<char> out) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  return SizeOrError(
      getxattr(inode->ProcPath().c_str(), std::string(name).c_str(), out.data(), out.size()));
}

Result<size_t> PassthroughFs::ListXattr(const Ctx&, NodeId node, std::span<char> out) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  return SizeOrError(listxattr(inode->ProcPath().c_str(), out.data(), out.size()));
}

Result<void> PassthroughFs::RemoveXattr(const Ctx&, NodeId node, std::string_view name) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  return CheckSyscall(removexattr(inode->ProcPath().c_str(), std::string(name).c_str()));
}

Result<IoctlReply> PassthroughFs::Ioctl(const Ctx& ctx, NodeId node, const IoctlRequest& req,
                                        std::span<std::byte> out) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  // Directory handles are not descriptors (and IOCTL_DIR is not negotiated).
  if (inode->is_dir()) return Errno{ENOTTY};
  const int fd = passthrough::HandleFd(req.fh);
  struct stat st;
  if (fstat(fd, &st) != 0) return LastErrno();
  const bool owner = ctx.uid == 0 || ctx.uid == st.st_uid;
  IoctlReply reply;
  switch (req.cmd) {
    case FS_IOC_GETFLAGS: {
      // The kernel's definition says long, but every filesystem copies an int.
      int flags = 0;
      if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) return LastErrno();
      reply.out_size = std::min(out.size(), sizeof(long));
      std::memset(out.data(), 0, reply.out_size);
      std::memcpy(out.data(), &flags, std::min(reply.out_size, sizeof(flags)));
      return reply;
    }
    case FS_IOC_SETFLAGS: {
      if (req.in.size() < sizeof(int)) return Errno{EINVAL};
      if (!owner) return Errno{EPERM};
      int flags = 0, old = 0;
      std::memcpy(&flags, req.in.data(), sizeof(flags));
      if (ioctl(fd, FS_IOC_GETFLAGS, &old) != 0) return LastErrno();
      if (ctx.uid != 0 && ((flags ^ old) & kPrivilegedFlags) != 0) return Errno{EPERM};
      if (ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0) return LastErrno();
      return reply;
    }
    case FS_IOC_FSGETXATTR: {
      struct fsxattr attr {};
      if (out.size() < sizeof(attr)) return Errno{EINVAL};
      if (ioctl(fd, FS_IOC_FSGETXATTR, &attr) != 0) return LastErrno();
      std::memcpy(out.data(), &attr, sizeof(attr));
      reply.out_size = sizeof(attr);
      return reply;
    }
    case FS_IOC_FSSETXATTR: {
      struct fsxattr attr {
      }, old{};
      if (req.in.size() < sizeof(attr)) return Errno{EINVAL};
      if (!owner) return Errno{EPERM};
      std::memcpy(&attr, req.in.data(), sizeof(attr));
      if (ioctl(fd, FS_IOC_FSGETXATTR, &old) != 0) return LastErrno();
      if (ctx.uid != 0 && ((attr.fsx_xflags ^ old.fsx_xflags) & kPrivilegedXflags) != 0) {
        return Errno{EPERM};
      }
      if (ioctl(fd, FS_IOC_FSSETXATTR, &attr) != 0) return LastErrno();
      return reply;
    }
    default:
      return Errno{ENOTTY};
  }
}

}  // namespace lamina

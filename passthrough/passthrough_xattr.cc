// PassthroughFs: extended attributes and inode flags (chattr/lsattr).
//
// O_PATH descriptors do not support the f*xattr calls, so xattrs go through
// the node's /proc/self/fd magic link, which lands on the file itself (a
// symlink node included) without resolving any name in the source, and
// never opens it.
//
// The kernel checks who may get or set which names before a request comes
// here (the namespaces' rules: trusted.* needs CAP_SYS_ADMIN, security.*
// CAP_SYS_ADMIN to set, user.* the file's permissions, ACLs their owner);
// only listing must be filtered here.

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cstring>
#include <string_view>
#include <vector>

#include "core/connection.h"
#include "core/fuse_abi.h"
#include "core/notifier.h"
#include "passthrough/credentials.h"
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

constexpr std::string_view kTrustedPrefix = "trusted.";

}  // namespace

Result<void> PassthroughFs::SetXattr(const Ctx&, NodeId node, std::string_view name,
                                     std::span<const std::byte> value, int flags,
                                     uint32_t setxattr_flags) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  const std::string path = inode->ProcPath();
  if (setxattr(path.c_str(), std::string(name).c_str(), value.data(), value.size(), flags) != 0) {
    return LastErrno();
  }
  if ((setxattr_flags & abi::kSetxattrAclKillSgid) == 0) return Ok();
  // Setting an access ACL clears set-group-ID for a caller outside the
  // file's group without CAP_FSETID: the kernel decided so, and the
  // source's filesystem would not (the daemon has CAP_FSETID).
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return LastErrno();
  if ((st.st_mode & S_ISGID) == 0) return Ok();
  return CheckSyscall(chmod(path.c_str(), st.st_mode & 07777 & ~S_ISGID));
}

Result<size_t> PassthroughFs::GetXattr(const Ctx&, NodeId node, std::string_view name,
                                       std::span<char> out) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  return SizeOrError(
      getxattr(inode->ProcPath().c_str(), std::string(name).c_str(), out.data(), out.size()));
}

Result<size_t> PassthroughFs::ListXattr(const Ctx& ctx, NodeId node, std::span<char> out) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  // The source's filesystem lists trusted.* names only to CAP_SYS_ADMIN,
  // which the daemon has: list them only to a caller that has it too. The
  // full list is read whatever `out` holds, so a size query answers the
  // filtered size.
  if (ctx.uid == 0 && passthrough::CallerHasCapability(ctx, CAP_SYS_ADMIN)) {
    return SizeOrError(listxattr(inode->ProcPath().c_str(), out.data(), out.size()));
  }
  std::vector<char> names;
  while (true) {
    ssize_t size = listxattr(inode->ProcPath().c_str(), nullptr, 0);
    if (size < 0) return LastErrno();
    names.resize(static_cast<size_t>(size));
    ssize_t n = listxattr(inode->ProcPath().c_str(), names.data(), names.size());
    if (n >= 0) {
      names.resize(static_cast<size_t>(n));
      break;
    }
    if (errno != ERANGE) return LastErrno();  // ERANGE: the list grew meanwhile
  }
  size_t kept = 0;
  for (size_t pos = 0; pos < names.size();) {
    std::string_view name(names.data() + pos);
    const size_t length = name.size() + 1;
    if (!name.starts_with(kTrustedPrefix)) {
      if (!out.empty() && kept + length > out.size()) return Errno{ERANGE};
      if (!out.empty()) std::memcpy(out.data() + kept, name.data(), length);
      kept += length;
    }
    pos += length;
  }
  return kept;
}

Result<void> PassthroughFs::RemoveXattr(const Ctx&, NodeId node, std::string_view name) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  return CheckSyscall(removexattr(inode->ProcPath().c_str(), std::string(name).c_str()));
}

void PassthroughFs::AttributesChanged(NodeId node) const {
  if (connection_ != nullptr && connection_->notifier() != nullptr) {
    connection_->notifier()->InvalidateAttributesNow(node);
  }
}

Result<IoctlReply> PassthroughFs::Ioctl(const Ctx& ctx, NodeId node, const IoctlRequest& req,
                                        std::span<std::byte> out) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  // Directory handles are not descriptors (and IOCTL_DIR is not negotiated).
  if (inode->is_dir()) return Errno{ENOTTY};
  Result<passthrough::RequestFd> opened = DescriptorFor(node, req.fh);
  if (!opened.ok()) return Errno{opened.error()};
  const int fd = opened->get();
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
      AttributesChanged(node);
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
      AttributesChanged(node);
      return reply;
    }
    default:
      return Errno{ENOTTY};
  }
}

}  // namespace lamina

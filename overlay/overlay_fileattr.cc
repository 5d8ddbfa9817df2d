// OverlayFs: inode flags (chattr/lsattr): FS_IOC_GETFLAGS/SETFLAGS and
// FS_IOC_FSGETXATTR/FSSETXATTR, which the kernel sends for regular files
// and directories (after an OPEN or OPENDIR of its own).
//
// As kernel overlayfs does: get reads the object that answers for the node
// (upper if copied up, else lower) plus the protection flags recorded in
// overlay.protattr; set copies up first and applies the flags to the upper
// object, recording immutable and append-only in overlay.protattr ("a",
// "i", the kernel's format); copy-up carries sync, noatime, append-only and
// immutable over the same way.
//
// One deliberate difference: the kernel keeps the two protection flags off
// the upper inode and enforces them on its own overlay inode. FUSE has no
// way to mark the kernel's inode immutable, so Lamina also sets them on the
// upper inode, where the upper filesystem refuses the daemon what the
// kernel would refuse the caller (writes, unlink, rename, link, setattr).
// The kernel reads such an upper the same (it merges both sources).

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>

#include "core/connection.h"
#include "core/notifier.h"
#include "overlay/overlay_fs.h"

namespace lamina {

using overlay::FdPath;
using overlay::Node;

namespace {

constexpr unsigned int kProtectionFlags = FS_APPEND_FL | FS_IMMUTABLE_FL;
constexpr unsigned int kProtectionXflags = FS_XFLAG_APPEND | FS_XFLAG_IMMUTABLE;
// What copy-up carries over (the kernel's OVL_COPY_FS_FLAGS_MASK).
constexpr unsigned int kCopiedFlags = FS_SYNC_FL | FS_NOATIME_FL | kProtectionFlags;

unsigned int ToXflags(unsigned int flags) {
  return ((flags & FS_APPEND_FL) ? FS_XFLAG_APPEND : 0) |
         ((flags & FS_IMMUTABLE_FL) ? FS_XFLAG_IMMUTABLE : 0);
}
unsigned int FromXflags(unsigned int xflags) {
  return ((xflags & FS_XFLAG_APPEND) ? FS_APPEND_FL : 0) |
         ((xflags & FS_XFLAG_IMMUTABLE) ? FS_IMMUTABLE_FL : 0);
}

// A descriptor the flag ioctls accept (not O_PATH) on a layer object.
Result<int> OpenForIoctl(int path_fd, bool dir) {
  const std::string path = FdPath(path_fd);
  const int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | (dir ? O_DIRECTORY : 0);
  int fd = open(path.c_str(), flags | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = open(path.c_str(), flags);
  if (fd < 0) return LastErrno();
  return fd;
}

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// The layer's own answer (ENOTTY or EOPNOTSUPP where it has no flags, as
// kernel overlayfs passes on).
Errno FlagsError() {
  return Errno{errno};
}

}  // namespace

unsigned int OverlayFs::ReadProtection(int upper_fd) const {
  char value[32];
  ssize_t n = getxattr(FdPath(upper_fd).c_str(), layers_.PrivateXattr("protattr").c_str(), value,
                       sizeof(value));
  unsigned int flags = 0;
  for (ssize_t i = 0; i < n; ++i) {
    if (value[i] == 'a') flags |= FS_APPEND_FL;
    if (value[i] == 'i') flags |= FS_IMMUTABLE_FL;
  }
  return flags;
}

Result<void> OverlayFs::WriteProtection(int fd, unsigned int flags) const {
  const std::string name = layers_.PrivateXattr("protattr");
  std::string value;
  if (flags & FS_APPEND_FL) value.push_back('a');
  if (flags & FS_IMMUTABLE_FL) value.push_back('i');
  const std::string path = FdPath(fd);
  if (value.empty()) {
    if (removexattr(path.c_str(), name.c_str()) != 0 && errno != ENODATA) return LastErrno();
    return Ok();
  }
  return CheckSyscall(setxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0));
}

unsigned int OverlayFs::StageFileattr(int lower_fd, int staged_fd, bool dir) {
  Result<int> lower = OpenForIoctl(lower_fd, dir);
  if (!lower.ok()) return 0;
  int flags = 0;
  const bool read = ioctl(*lower, FS_IOC_GETFLAGS, &flags) == 0;
  close(*lower);
  if (!read || (flags & kCopiedFlags) == 0) return 0;
  const unsigned int protection = static_cast<unsigned int>(flags) & kProtectionFlags;
  if (protection != 0) (void)WriteProtection(staged_fd, protection);
  int staged = 0;
  if ((flags & (FS_SYNC_FL | FS_NOATIME_FL)) != 0 &&
      ioctl(staged_fd, FS_IOC_GETFLAGS, &staged) == 0) {
    staged |= flags & (FS_SYNC_FL | FS_NOATIME_FL);
    (void)ioctl(staged_fd, FS_IOC_SETFLAGS, &staged);
  }
  return protection;
}

void OverlayFs::ApplyProtection(int upper_fd, bool dir, unsigned int protection) {
  if (protection == 0) return;
  Result<int> fd = OpenForIoctl(upper_fd, dir);
  if (!fd.ok()) return;
  int flags = 0;
  if (ioctl(*fd, FS_IOC_GETFLAGS, &flags) == 0) {
    flags |= static_cast<int>(protection);
    (void)ioctl(*fd, FS_IOC_SETFLAGS, &flags);
  }
  close(*fd);
}

void OverlayFs::EnforceProtection(int upper_fd, mode_t type) {
  const unsigned int protection = ReadProtection(upper_fd);
  if (protection == 0) return;
  Result<int> fd = OpenForIoctl(upper_fd, S_ISDIR(type));
  if (!fd.ok()) return;
  int flags = 0;
  if (ioctl(*fd, FS_IOC_GETFLAGS, &flags) == 0 &&
      (static_cast<unsigned int>(flags) & protection) != protection) {
    flags |= static_cast<int>(protection);
    (void)ioctl(*fd, FS_IOC_SETFLAGS, &flags);
  }
  close(*fd);
}

namespace {

// Whether the object at `fd` is immutable or append-only (false if unknown).
bool IsProtected(int fd) {
  struct statx stx;
  if (fd < 0 || statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, 0, &stx) != 0) return false;
  const uint64_t protected_attrs =
      (STATX_ATTR_IMMUTABLE | STATX_ATTR_APPEND) & stx.stx_attributes_mask;
  return (stx.stx_attributes & protected_attrs) != 0;
}

}  // namespace

Result<void> OverlayFs::CheckLowerDeletable(int lower_fd) const {
  if (IsProtected(lower_fd)) return Errno{EPERM};
  return Ok();
}

Result<void> OverlayFs::CheckRemovable(int parent_fd, int victim_fd, bool victim_in_upper) const {
  if (IsProtected(parent_fd) || IsProtected(victim_fd)) return Errno{EPERM};
  if (victim_in_upper && ReadProtection(victim_fd) != 0) return Errno{EPERM};
  return Ok();
}

void OverlayFs::AttributesChanged(NodeId id) const {
  if (id != 0 && connection_ != nullptr && connection_->notifier() != nullptr) {
    connection_->notifier()->InvalidateAttributesNow(id);
  }
}

Result<IoctlReply> OverlayFs::Ioctl(const Ctx&, NodeId id, const IoctlRequest& req,
                                    std::span<std::byte> out) {
  NodePtr node = Get(id);
  if (node == nullptr) return Errno{ENOENT};
  if (!S_ISREG(node->type) && !node->is_dir()) return Errno{ENOTTY};
  const bool dir = node->is_dir();
  IoctlReply reply;
  switch (req.cmd) {
    case FS_IOC_GETFLAGS:
    case FS_IOC_FSGETXATTR: {
      const int upper = node->UpperFd();
      Result<int> fd = OpenForIoctl(upper >= 0 ? upper : node->TopFd(), dir);
      if (!fd.ok()) return Errno{fd.error()};
      Fd real{*fd};
      const unsigned int protection = upper >= 0 ? ReadProtection(upper) : 0;
      if (req.cmd == FS_IOC_GETFLAGS) {
        // Declared as long, but every filesystem copies an int.
        int flags = 0;
        if (ioctl(real.fd, FS_IOC_GETFLAGS, &flags) != 0) return FlagsError();
        flags |= static_cast<int>(protection);
        reply.out_size = std::min(out.size(), sizeof(long));
        std::memset(out.data(), 0, reply.out_size);
        std::memcpy(out.data(), &flags, std::min(reply.out_size, sizeof(flags)));
        return reply;
      }
      struct fsxattr attr {};
      if (out.size() < sizeof(attr)) return Errno{EINVAL};
      if (ioctl(real.fd, FS_IOC_FSGETXATTR, &attr) != 0) return FlagsError();
      attr.fsx_xflags |= ToXflags(protection);
      std::memcpy(out.data(), &attr, sizeof(attr));
      reply.out_size = sizeof(attr);
      return reply;
    }
    case FS_IOC_SETFLAGS:
    case FS_IOC_FSSETXATTR: {
      const bool xattr_form = req.cmd == FS_IOC_FSSETXATTR;
      int flags = 0;
      struct fsxattr attr {};
      if (req.in.size() < (xattr_form ? sizeof(attr) : sizeof(flags))) return Errno{EINVAL};
      if (xattr_form) {
        std::memcpy(&attr, req.in.data(), sizeof(attr));
      } else {
        std::memcpy(&flags, req.in.data(), sizeof(flags));
      }
      // The kernel's vfs_fileattr_set checked ownership (or CAP_FOWNER)
      // and CAP_LINUX_IMMUTABLE against its inode, which shows the view's
      // owner, before asking: no second guess here.
      Result<void> up = CopyUp(node);
      if (!up.ok()) return Errno{up.error()};
      const int upper = node->UpperFd();
      Result<int> fd = OpenForIoctl(upper, dir);
      if (!fd.ok()) return Errno{fd.error()};
      Fd real{*fd};
      int old = 0;
      if (ioctl(real.fd, FS_IOC_GETFLAGS, &old) != 0) return FlagsError();
      const unsigned int old_protection =
          (static_cast<unsigned int>(old) & kProtectionFlags) | ReadProtection(upper);
      const unsigned int protection = xattr_form
                                          ? FromXflags(attr.fsx_xflags)
                                          : static_cast<unsigned int>(flags) & kProtectionFlags;
      // The upper inode must not be immutable or append-only while its
      // other flags and its xattr change.
      const int old_real = old & static_cast<int>(kProtectionFlags);
      if (old_real != 0) {
        int cleared = old & ~static_cast<int>(kProtectionFlags);
        if (ioctl(real.fd, FS_IOC_SETFLAGS, &cleared) != 0) return FlagsError();
      }
      // The other flags first, so that a refused request changes nothing.
      flags &= ~static_cast<int>(kProtectionFlags);
      attr.fsx_xflags &= ~kProtectionXflags;
      const int rc = xattr_form ? ioctl(real.fd, FS_IOC_FSSETXATTR, &attr)
                                : ioctl(real.fd, FS_IOC_SETFLAGS, &flags);
      if (rc != 0) {
        Errno error = FlagsError();
        ApplyProtection(upper, dir, static_cast<unsigned int>(old_real));
        return error;
      }
      if (protection != old_protection || old_real != 0) {
        Result<void> recorded = WriteProtection(upper, protection);
        if (!recorded.ok()) return Errno{recorded.error()};
      }
      ApplyProtection(upper, dir, protection);
      AttributesChanged(id);
      return reply;
    }
    default:
      return Errno{ENOTTY};
  }
}

}  // namespace lamina

// PassthroughFs: operations that change the namespace.
//
// Each resolves names relative to the parent's O_PATH descriptor with the
// *at() calls, which never follow a symlink in the final component, so a
// symlink inside the source can be renamed, linked or removed but never
// redirects one of these operations elsewhere.

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "core/connection.h"
#include "passthrough/credentials.h"
#include "passthrough/handles.h"
#include "passthrough/passthrough_fs.h"

namespace lamina {

using passthrough::CheckName;
using passthrough::ScopedCredentials;

void PassthroughFs::UseCallerUmask(const Ctx& ctx) const {
  // Without FUSE_DONT_MASK the kernel has applied the caller's umask to the
  // mode. With it the umask reaches us unapplied, and the source's
  // filesystem applies it as it creates, unless the parent has a default
  // ACL, which then decides instead: exactly what the caller would get.
  const bool ours = connection_ != nullptr && connection_->Has(abi::kDontMask);
  passthrough::UseUmaskOnThisThread(ours ? ctx.umask : 0);
}

template <typename Make>
Result<Entry> PassthroughFs::CreateNode(const Ctx& ctx, NodeId parent, std::string_view name,
                                        Make&& make, std::span<const uint32_t> groups) {
  if (Result<void> valid = CheckName(name); !valid.ok()) return Errno{valid.error()};
  Result<InodePtr> dir = Dir(parent);
  if (!dir.ok()) return Errno{dir.error()};
  const std::string path(name);
  {
    UseCallerUmask(ctx);
    ScopedCredentials as_caller(ctx.uid, ctx.gid, groups);
    if (Result<void> s = as_caller.status(); !s.ok()) return Errno{s.error()};
    if (make((*dir)->fd(), path.c_str()) != 0) return LastErrno();
  }
  return LookupChild(**dir, name);
}

Result<Entry> PassthroughFs::Mknod(const Ctx& ctx, NodeId parent, std::string_view name,
                                   mode_t mode, dev_t rdev) {
  return CreateNode(
      ctx, parent, name, [&](int dirfd, const char* n) { return mknodat(dirfd, n, mode, rdev); },
      ctx.kernel_groups);
}

Result<Entry> PassthroughFs::Mkdir(const Ctx& ctx, NodeId parent, std::string_view name,
                                   mode_t mode) {
  return CreateNode(
      ctx, parent, name, [&](int dirfd, const char* n) { return mkdirat(dirfd, n, mode); },
      ctx.kernel_groups);
}

Result<Entry> PassthroughFs::Symlink(const Ctx& ctx, NodeId parent, std::string_view name,
                                     std::string_view target) {
  // The target is stored verbatim: it is only ever interpreted by the
  // client's kernel, relative to the mount, never by this daemon.
  const std::string link_target(target);
  return CreateNode(
      ctx, parent, name,
      [&](int dirfd, const char* n) { return symlinkat(link_target.c_str(), dirfd, n); },
      ctx.kernel_groups);
}

Result<Entry> PassthroughFs::Link(const Ctx& ctx, NodeId node, NodeId new_parent,
                                  std::string_view new_name) {
  InodePtr inode = Node(node);
  if (inode == nullptr) return Errno{ESTALE};
  const std::string proc = inode->ProcPath();
  auto make = [&](int dirfd, const char* n) {
    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH, which an fsuid switch drops;
    // the /proc magic link reaches the same inode without it.
    if (linkat(inode->fd(), "", dirfd, n, AT_EMPTY_PATH) == 0) return 0;
    if (errno != ENOENT && errno != EPERM) return -1;
    return linkat(AT_FDCWD, proc.c_str(), dirfd, n, AT_SYMLINK_FOLLOW);
  };
  // LINK carries no supplementary group from the kernel; the caller's full
  // list (read from /proc, slow but LINK is rare) lets a group-writable
  // directory accept the link.
  std::vector<gid_t> groups = ctx.uid == 0 ? std::vector<gid_t>{} : ctx.SupplementaryGroups();
  return CreateNode(ctx, new_parent, new_name, make, groups);
}

Result<void> PassthroughFs::Unlink(const Ctx&, NodeId parent, std::string_view name) {
  if (Result<void> valid = CheckName(name); !valid.ok()) return valid;
  Result<InodePtr> dir = Dir(parent);
  if (!dir.ok()) return Errno{dir.error()};
  const std::string n(name);
  const InodePtr kept = KeepIfKnown((*dir)->fd(), n);
  return CheckSyscall(unlinkat((*dir)->fd(), n.c_str(), 0));
}

Result<void> PassthroughFs::Rmdir(const Ctx&, NodeId parent, std::string_view name) {
  if (Result<void> valid = CheckName(name); !valid.ok()) return valid;
  Result<InodePtr> dir = Dir(parent);
  if (!dir.ok()) return Errno{dir.error()};
  const std::string n(name);
  const InodePtr kept = KeepIfKnown((*dir)->fd(), n);
  return CheckSyscall(unlinkat((*dir)->fd(), n.c_str(), AT_REMOVEDIR));
}

Result<void> PassthroughFs::Rename(const Ctx&, NodeId parent, std::string_view name,
                                   NodeId new_parent, std::string_view new_name, uint32_t flags) {
  if (Result<void> valid = CheckName(name); !valid.ok()) return valid;
  if (Result<void> valid = CheckName(new_name); !valid.ok()) return valid;
  Result<InodePtr> from = Dir(parent);
  if (!from.ok()) return Errno{from.error()};
  Result<InodePtr> to = Dir(new_parent);
  if (!to.ok()) return Errno{to.error()};
  const std::string to_name(new_name);
  const InodePtr kept =
      (flags & RENAME_EXCHANGE) != 0 ? nullptr : KeepIfKnown((*to)->fd(), to_name);
  return CheckSyscall(
      renameat2((*from)->fd(), std::string(name).c_str(), (*to)->fd(), to_name.c_str(), flags));
}

}  // namespace lamina

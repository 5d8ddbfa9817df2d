// OverlayFs: extended attributes.
//
// Everything passes through to the object that answers for the node, except
// overlayfs' private namespace ("trusted.overlay." as root, "user.overlay."
// with userxattr): its entries are hidden, and a caller's own attribute in
// that namespace is stored escaped as "<prefix>overlay.<rest>", as the
// kernel does, so overlays can be nested. Setting or removing copies up.
// With noxattrs=1 every request answers ENOSYS, as in fuse-overlayfs.

#include <sys/stat.h>
#include <sys/xattr.h>

#include <linux/capability.h>

#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include "overlay/overlay_fs.h"
#include "passthrough/credentials.h"

namespace lamina {

using overlay::FdPath;

namespace {

constexpr std::string_view kTrustedPrefix = "trusted.";

// The name stored in the layer for the caller's `name`.
std::string StoredName(const overlay::LayerStack& layers, std::string_view name) {
  const std::string& prefix = layers.private_prefix();
  if (name.substr(0, prefix.size()) != prefix) return std::string(name);
  return prefix + "overlay." + std::string(name.substr(prefix.size()));
}

}  // namespace

Result<void> OverlayFs::SetXattr(const Ctx&, NodeId id, std::string_view name,
                                 std::span<const std::byte> value, int flags,
                                 uint32_t setxattr_flags) {
  if (!options_.xattrs) return Errno{ENOSYS};
  NodePtr node = Get(id);
  if (node == nullptr) return Errno{ENOENT};
  Result<void> up = CopyUp(node);
  if (!up.ok()) return up;
  std::string stored = StoredName(layers_, name);
  const std::string path = FdPath(node->UpperFd());
  Result<void> set =
      CheckSyscall(setxattr(path.c_str(), stored.c_str(), value.data(), value.size(), flags));
  if (set.ok() && (setxattr_flags & abi::kSetxattrAclKillSgid) != 0) {
    // Setting an ACL clears set-group-ID for a caller outside the group
    // without CAP_FSETID; the kernel decided that, the daemon (root) would
    // not.
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && (st.st_mode & S_ISGID) != 0) {
      set = CheckSyscall(chmod(path.c_str(), st.st_mode & 07777 & ~S_ISGID));
    }
  }
  return set;
}

Result<size_t> OverlayFs::GetXattr(const Ctx&, NodeId id, std::string_view name,
                                   std::span<char> out) {
  if (!options_.xattrs) return Errno{ENOSYS};
  NodePtr node = Get(id);
  if (node == nullptr) return Errno{ENOENT};
  std::string stored = StoredName(layers_, name);
  ssize_t n = getxattr(FdPath(node->TopFd()).c_str(), stored.c_str(), out.data(), out.size());
  if (n < 0) return LastErrno();
  return static_cast<size_t>(n);
}

Result<size_t> OverlayFs::ListXattr(const Ctx& ctx, NodeId id, std::span<char> out) {
  if (!options_.xattrs) return Errno{ENOSYS};
  NodePtr node = Get(id);
  if (node == nullptr) return Errno{ENOENT};
  std::string path = FdPath(node->TopFd());
  ssize_t size = listxattr(path.c_str(), nullptr, 0);
  if (size < 0) return LastErrno();
  std::vector<char> names(static_cast<size_t>(size));
  size = listxattr(path.c_str(), names.data(), names.size());
  if (size < 0) return LastErrno();
  // Keep the caller's names, unescaping ours; drop overlayfs' own. Like
  // the layers' own filesystems (and kernel overlayfs, which asks them as
  // the caller), list trusted.* names only to a caller with CAP_SYS_ADMIN
  // (asked of /proc only when there are such names).
  const std::string& prefix = layers_.private_prefix();
  const std::string escaped = prefix + "overlay.";
  std::optional<bool> admin;
  auto shown = [&](std::string_view name) {
    if (name.substr(0, kTrustedPrefix.size()) != kTrustedPrefix) return true;
    if (!admin) admin = ctx.uid == 0 && passthrough::CallerHasCapability(ctx, CAP_SYS_ADMIN);
    return *admin;
  };
  std::string visible;
  for (const char* n = names.data(); n < names.data() + size; n += strlen(n) + 1) {
    std::string_view name(n);
    if (name.substr(0, escaped.size()) == escaped) {
      std::string unescaped = prefix + std::string(name.substr(escaped.size()));
      if (shown(unescaped)) visible.append(unescaped).push_back('\0');
    } else if (name.substr(0, prefix.size()) != prefix && shown(name)) {
      visible.append(name).push_back('\0');
    }
  }
  if (out.empty()) return visible.size();
  if (visible.size() > out.size()) return Errno{ERANGE};
  std::memcpy(out.data(), visible.data(), visible.size());
  return visible.size();
}

Result<void> OverlayFs::RemoveXattr(const Ctx&, NodeId id, std::string_view name) {
  if (!options_.xattrs) return Errno{ENOSYS};
  NodePtr node = Get(id);
  if (node == nullptr) return Errno{ENOENT};
  std::string stored = StoredName(layers_, name);
  // A name the lower object lacks is ENODATA before anything is copied
  // up, as on the kernel (ovl_xattr_set).
  if (node->UpperFd() < 0 &&
      getxattr(FdPath(node->TopFd()).c_str(), stored.c_str(), nullptr, 0) < 0) {
    return LastErrno();
  }
  Result<void> up = CopyUp(node);
  if (!up.ok()) return up;
  return CheckSyscall(removexattr(FdPath(node->UpperFd()).c_str(), stored.c_str()));
}

}  // namespace lamina

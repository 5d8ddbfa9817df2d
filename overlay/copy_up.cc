// OverlayFs: copy-up.
//
// The copy is built under a fresh name in work/work (data, owner, mode,
// xattrs including ACLs, timestamps, and the kernel's origin record), synced
// unless the mount is volatile, and only then renamed into the upper
// directory. A crash at any point leaves either the lower view (plus junk in
// work/work, emptied at the next mount) or the complete copy.
//
// A lower file with several hard links is copied into the index instead
// and linked from there to the name being copied up (overlay/index.h).

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "overlay/index.h"
#include "overlay/overlay_fs.h"

namespace lamina {

using overlay::FdPath;
using overlay::Node;

namespace {

// Copies [offset, offset+length) with copy_file_range, falling back to
// read/write where the kernel cannot copy between these files.
Result<void> CopyRange(int from, int to, off_t offset, off_t length) {
  off_t in = offset;
  off_t out = offset;
  while (length > 0) {
    ssize_t n = copy_file_range(from, &in, to, &out, static_cast<size_t>(length), 0);
    if (n > 0) {
      length -= n;
      continue;
    }
    if (n == 0) break;  // the source shrank underneath us
    if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS) {
      return LastErrno();
    }
    std::vector<char> buffer(1 << 20);
    while (length > 0) {
      ssize_t r = pread(from, buffer.data(),
                        static_cast<size_t>(std::min<off_t>(length, buffer.size())), in);
      if (r < 0) return LastErrno();
      if (r == 0) break;
      for (ssize_t done = 0; done < r;) {
        ssize_t w = pwrite(to, buffer.data() + done, static_cast<size_t>(r - done), out + done);
        if (w < 0) return LastErrno();
        done += w;
      }
      in += r;
      out += r;
      length -= r;
    }
  }
  return Ok();
}

// Copies extended attributes except overlayfs' own, from a "/proc/self/fd/N"
// path to a staging path. A caller's own attribute in the private
// namespace, stored escaped ("<prefix>overlay.X", a nested overlay's
// record), is the caller's and goes along, as on the kernel. (The path of
// an O_PATH descriptor of a symlink reaches the symlink itself, so
// symlinks' xattrs are copied too.)
Result<void> CopyXattrs(const overlay::LayerStack& layers, const std::string& from,
                        const std::string& to) {
  ssize_t size = listxattr(from.c_str(), nullptr, 0);
  if (size <= 0) return Ok();  // none, or the filesystem has no xattrs
  std::vector<char> names(static_cast<size_t>(size));
  size = listxattr(from.c_str(), names.data(), names.size());
  if (size < 0) return Ok();
  std::vector<char> value;
  for (const char* name = names.data(); name < names.data() + size; name += strlen(name) + 1) {
    std::string_view view(name);
    const std::string& prefix = layers.private_prefix();
    if (view.substr(0, prefix.size()) == prefix &&
        view.substr(prefix.size(), 8) != std::string_view("overlay.")) {
      continue;
    }
    ssize_t length = getxattr(from.c_str(), name, nullptr, 0);
    if (length < 0) continue;
    value.resize(static_cast<size_t>(length));
    length = getxattr(from.c_str(), name, value.data(), value.size());
    if (length < 0) continue;
    if (lsetxattr(to.c_str(), name, value.data(), static_cast<size_t>(length), 0) != 0) {
      // security.* or trusted.* may be refused to an unprivileged daemon,
      // as they are to the kernel's copy-up in a user namespace.
      if (errno == EPERM || errno == EOPNOTSUPP) continue;
      return LastErrno();
    }
  }
  return Ok();
}

}  // namespace

Result<void> OverlayFs::CopyData(int from_fd, int to_fd, off_t size) {
  // A reflink shares the blocks: instant, and no space used.
  if (ioctl(to_fd, FICLONE, from_fd) == 0) return Ok();
  // Otherwise copy only the data extents, so holes stay holes.
  off_t offset = 0;
  while (offset < size) {
    off_t data = lseek(from_fd, offset, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      Result<void> all = CopyRange(from_fd, to_fd, offset, size - offset);
      if (!all.ok()) return all;
      break;
    }
    off_t hole = lseek(from_fd, data, SEEK_HOLE);
    if (hole < 0) hole = size;
    Result<void> copied = CopyRange(from_fd, to_fd, data, hole - data);
    if (!copied.ok()) return copied;
    offset = hole;
  }
  return CheckSyscall(ftruncate(to_fd, size));
}

Result<void> OverlayFs::CopyUp(const NodePtr& node) {
  NodePtr parent;
  std::string name;
  {
    std::shared_lock lock(node->mu);
    parent = node->parent;
    name = node->name;
  }
  return CopyUpAs(node, parent, name);
}

Result<void> OverlayFs::CopyUpAs(const NodePtr& node, const NodePtr& parent,
                                 const std::string& name) {
  Result<void> writable = RequireUpper();
  if (!writable.ok()) return writable;
  const bool indexed = UsesIndex(*node);
  if (node->UpperFd() >= 0 && !indexed) return Ok();
  // Only the root has no parent, and it has an upper.
  if (parent == nullptr) return node->UpperFd() >= 0 ? Ok() : Result<void>(Errno{EIO});
  Result<void> parent_up = CopyUp(parent);
  if (!parent_up.ok()) return parent_up;
  int parent_upper = parent->UpperFd();
  std::unique_lock lock(node->mu);
  const bool copy = node->upper_fd < 0;  // else another request finished it first
  Result<void> result = copy ? CopyUpLocked(*node, parent_upper, name) : Ok();
  if (result.ok() && indexed) {
    result = LinkUpLocked(*node, *parent, parent_upper, name);
    // The protection flags copied from below, now that the link exists.
    if (result.ok() && copy) ApplyProtection(node->upper_fd, false, ReadProtection(node->upper_fd));
  }
  lock.unlock();
  // The name now has an upper object: a listing of the parent that says
  // which layer has it (DirItem::layer) is out of date.
  if (copy || indexed) parent->DropListing();
  // A directory over lower ones is merged now, and shows one link
  // (ViewNlink) where the kernel may have cached the lower one's count.
  if (copy && result.ok() && node->is_dir() && node->HasLower()) {
    struct stat st;
    if (fstat(node->lowers.front().fd, &st) == 0) {
      AttributesChanged(table_.IdOf(overlay::NodeKey{st.st_dev, st.st_ino}));
    }
  }
  return result;
}

Result<void> OverlayFs::LinkUpLocked(Node& node, const Node& parent, int parent_upper_fd,
                                     const std::string& name) {
  // Only a name that still shows the lower object and has nothing in the
  // upper layer: a name deleted through the mount (a whiteout, or no name
  // at all where nothing is below) stays deleted.
  if (overlay::StatAt(parent_upper_fd, name).has_value()) return Ok();
  if (!NameExistsBelow(parent, name)) return Ok();
  struct stat st;
  if (fstat(node.upper_fd, &st) != 0) return LastErrno();
  const nlink_t view = overlay::ViewNlink(layers_, node.upper_fd, st.st_nlink, node.lower_nlink);
  // The parent is about to hold an indexed name (marked first, as the
  // kernel's link-up does).
  if (Result<void> impure = overlay::MarkImpure(layers_, parent_upper_fd); !impure.ok()) {
    return impure;
  }
  return overlay::LinkUp(layers_, node.upper_fd, parent_upper_fd, name, view, node.lower_nlink);
}

Result<void> OverlayFs::CopyUpLocked(Node& node, int parent_upper_fd, const std::string& name) {
  const overlay::LowerRef& lower = node.lowers.front();
  struct stat st;
  if (fstatat(lower.fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
  const int staging = layers_.staging_fd();
  const std::string staged = layers_.StagingName();
  const std::string staged_path = FdPath(staging) + "/" + staged;

  Result<void> result = Ok();
  int data_fd = -1;  // the staged copy, opened, for regular files and dirs
  if (S_ISREG(st.st_mode)) {
    int from = open(FdPath(lower.fd).c_str(), O_RDONLY | O_CLOEXEC | O_NOATIME);
    if (from < 0 && errno == EPERM) from = open(FdPath(lower.fd).c_str(), O_RDONLY | O_CLOEXEC);
    if (from < 0) return LastErrno();
    data_fd = openat(staging, staged.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (data_fd < 0) {
      result = LastErrno();
    } else {
      result = CopyData(from, data_fd, st.st_size);
    }
    close(from);
  } else if (S_ISDIR(st.st_mode)) {
    if (mkdirat(staging, staged.c_str(), 0700) != 0) return LastErrno();
    data_fd = openat(staging, staged.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (data_fd < 0) result = LastErrno();
  } else if (S_ISLNK(st.st_mode)) {
    char target[PATH_MAX];
    ssize_t n = readlinkat(lower.fd, "", target, sizeof(target) - 1);
    if (n < 0) return LastErrno();
    target[n] = '\0';
    if (symlinkat(target, staging, staged.c_str()) != 0) return LastErrno();
  } else {
    if (mknodat(staging, staged.c_str(), st.st_mode, st.st_rdev) != 0) return LastErrno();
  }

  // Metadata: owner before mode (chown clears set-id bits), xattrs, origin,
  // then timestamps last, since everything before touches ctime/mtime.
  if (result.ok()) {
    result =
        CheckSyscall(fchownat(staging, staged.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW));
  }
  if (result.ok() && !S_ISLNK(st.st_mode)) {
    result = CheckSyscall(fchmodat(staging, staged.c_str(), st.st_mode & 07777, 0));
  }
  bool symlink = S_ISLNK(st.st_mode);
  if (result.ok()) result = CopyXattrs(layers_, FdPath(lower.fd), staged_path);
  // Like the kernel, a lower hard link records its origin only when it is
  // indexed: a copy of one name alone is a new object, not the lower one.
  const bool indexed = UsesIndex(node) && S_ISREG(st.st_mode);
  const bool record_origin = S_ISDIR(st.st_mode) || st.st_nlink == 1 || indexed;
  if (result.ok() && !symlink && record_origin) {
    // Without a usable file handle (the daemon may not decode them, or the
    // lower filesystem cannot encode them) the record is empty, as the
    // kernel writes it: the object is still marked as copied up.
    std::string origin = layers_.decode_handles()
                             ? overlay::EncodeOrigin(layers_.layer(lower.layer), lower.fd)
                             : std::string();
    if (lsetxattr(staged_path.c_str(), layers_.PrivateXattr("origin").c_str(), origin.data(),
                  origin.size(), 0) != 0 &&
        errno != EPERM && errno != EOPNOTSUPP) {
      result = LastErrno();
    }
  }
  // Inode flags; immutable and append-only only once the copy is in place
  // (and linked, for the index), since they forbid renaming and linking.
  unsigned int protection = 0;
  if (result.ok() && data_fd >= 0)
    protection = StageFileattr(lower.fd, data_fd, S_ISDIR(st.st_mode));
  if (result.ok()) {
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    result = CheckSyscall(utimensat(staging, staged.c_str(), times, AT_SYMLINK_NOFOLLOW));
  }
  // A lower hard link goes to the index, named by its lower file handle;
  // the view's link count is recorded relative to the copy's single link.
  int dest_dir = parent_upper_fd;
  std::string dest = name;
  // Without file handles (the lower) or xattrs (the upper) the index is
  // unusable and the copy goes to the name, as the kernel's index=off.
  if (indexed && result.ok() && data_fd >= 0) {
    std::string index_name = overlay::IndexName(layers_.layer(lower.layer), lower.fd);
    Result<void> recorded =
        index_name.empty()
            ? Result<void>(Errno{EOPNOTSUPP})
            : overlay::WriteNlinkRecord(layers_, data_fd, {'U', static_cast<int>(st.st_nlink) - 1});
    if (recorded.ok()) {
      dest_dir = layers_.index_fd();
      dest = std::move(index_name);
    } else if (recorded.error() != EOPNOTSUPP && recorded.error() != EPERM) {
      result = recorded;
    }
  }
  if (result.ok() && data_fd >= 0 && !options_.volatile_mode) result = CheckSyscall(fsync(data_fd));
  if (data_fd >= 0) close(data_fd);
  // The parent is about to hold an object that continues a lower one
  // (marked first, as the kernel does).
  if (result.ok()) result = overlay::MarkImpure(layers_, parent_upper_fd);
  if (result.ok()) {
    result =
        CheckSyscall(renameat2(staging, staged.c_str(), dest_dir, dest.c_str(), RENAME_NOREPLACE));
  }
  if (!result.ok()) {
    unlinkat(staging, staged.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
    return result;
  }
  Result<int> upper = overlay::OpenPathAt(dest_dir, dest);
  if (!upper.ok()) return Errno{upper.error()};
  node.SetUpperFd(*upper);
  node.upper_marks = {};
  if (!indexed) ApplyProtection(*upper, S_ISDIR(st.st_mode), protection);
  return Ok();
}

}  // namespace lamina

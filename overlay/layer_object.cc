#include "overlay/layer_object.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <sys/syscall.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "overlay/layer_warnings.h"
#include "passthrough/access_times.h"

namespace lamina::overlay {

std::string FdPath(int fd) {
  return absl::StrCat("/proc/self/fd/", fd);
}

std::optional<struct stat> StatAt(int dir_fd, std::string_view name) {
  struct stat st;
  if (fstatat(dir_fd, std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return std::nullopt;
  }
  return st;
}

Result<int> OpenPathAt(int dir_fd, std::string_view name) {
  int fd = openat(dir_fd, std::string(name).c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return LastErrno();
  return fd;
}

int OpenInLayer(const Layer& layer, int dir_fd, const char* path, int flags) {
  if (!layer.open_noatime) return openat(dir_fd, path, flags);
  return passthrough::OpenatWithoutAtime(dir_fd, path, flags);
}

namespace {

// `path` is "/proc/self/fd/N" of a directory or regular file: the plain
// (following) xattr calls reach the object itself through the magic link.
bool XattrEquals(const std::string& path, const std::string& name, std::string_view want) {
  char value[8];
  ssize_t n = getxattr(path.c_str(), name.c_str(), value, sizeof(value));
  return n >= 0 && std::string_view(value, static_cast<size_t>(n)) == want;
}

// getxattrat(2) (Linux 6.13): an xattr of `name` in `dir_fd` without
// following it, in one call. The same number on every architecture.
constexpr long kGetxattratSyscall = 464;
struct XattrArgs {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};
static_assert(sizeof(XattrArgs) == 16);

// lgetxattr of `name` in the directory `dir_fd`: getxattrat where the
// kernel has it (a third of the cost of a walk through /proc), else the
// /proc path. The size of the value, or -1 with errno.
ssize_t XattrAt(int dir_fd, std::string_view name, const std::string& xattr, char* value,
                size_t size) {
  static std::atomic<bool> have_getxattrat{true};
  const std::string file(name);
  if (have_getxattrat.load(std::memory_order_relaxed)) {
    XattrArgs args{reinterpret_cast<uintptr_t>(value), static_cast<uint32_t>(size), 0};
    long n = syscall(kGetxattratSyscall, dir_fd, file.c_str(), AT_SYMLINK_NOFOLLOW, xattr.c_str(),
                     &args, sizeof(args));
    // (No read of an xattr answers EPERM; a seccomp filter that does not
    // know the call may, instead of ENOSYS.)
    if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return n;
    have_getxattrat.store(false, std::memory_order_relaxed);
  }
  return lgetxattr(absl::StrCat(FdPath(dir_fd), "/", file).c_str(), xattr.c_str(), value, size);
}

}  // namespace

bool IsDeviceWhiteout(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

bool IsXattrWhiteout(const LayerStack& layers, int dir_fd, std::string_view name,
                     const struct stat& st) {
  if (!S_ISREG(st.st_mode) || st.st_size != 0) return false;
  return XattrAt(dir_fd, name, layers.PrivateXattr("whiteout"), nullptr, 0) >= 0;
}

bool IsWhiteout(const LayerStack& layers, int dir_fd, std::string_view name,
                const struct stat& st) {
  return IsDeviceWhiteout(st) || IsXattrWhiteout(layers, dir_fd, name, st);
}

bool HasOciWhiteout(int dir_fd, std::string_view name) {
  std::string wh = absl::StrCat(std::string(kOciWhiteoutPrefix), std::string(name));
  struct stat st;
  return fstatat(dir_fd, wh.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

DirMarks ReadDirMarks(const LayerStack& layers, int dir_fd, bool upper) {
  DirMarks marks;
  const std::string path = FdPath(dir_fd);
  // One listxattr says which markers exist: most directories carry none,
  // and each getxattr is a path walk through /proc. A list too long for
  // the buffer (or none at all) falls back to asking for each marker.
  char list[1024];
  const ssize_t size = listxattr(path.c_str(), list, sizeof(list));
  auto listed = [&](std::string_view name) {
    if (size < 0) return true;
    for (size_t at = 0; at < static_cast<size_t>(size);) {
      std::string_view entry(list + at);
      if (entry == name) return true;
      at += entry.size() + 1;
    }
    return false;
  };
  // The mount's own namespace only: the other one is a user's attribute
  // (anyone owning a file may set user.overlay.* through a trusted mount),
  // and the kernel reads neither.
  const std::string opaque = layers.PrivateXattr("opaque");
  if (listed(opaque)) {
    char value[8];
    ssize_t n = getxattr(path.c_str(), opaque.c_str(), value, sizeof(value));
    if (n == 1 && value[0] == 'y') marks.opaque = true;
    if (n == 1 && value[0] == 'x') marks.xattr_whiteouts = true;
  }
  // fuse-overlayfs marks its layers this way when it may not use trusted.*;
  // in the upper, where a user of the mount could set it, it is theirs.
  if (!upper && !marks.opaque && listed("user.fuseoverlayfs.opaque")) {
    marks.opaque = XattrEquals(path, "user.fuseoverlayfs.opaque", "y");
  }
  if (!marks.opaque) {
    struct stat st;
    marks.opaque =
        fstatat(dir_fd, std::string(kOciOpaqueMarker).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  }
  marks.redirected = listed(layers.PrivateXattr("redirect"));
  return marks;
}

int CheckRedirect(std::string_view redirect) {
  if (redirect.empty() || redirect[0] != '/') {
    return redirect.find('/') == std::string_view::npos ? 0 : EINVAL;
  }
  // "/a/b": every component non-empty (so no "/", "//" or trailing '/').
  for (size_t start = 1; start <= redirect.size();) {
    const size_t slash = std::min(redirect.find('/', start), redirect.size());
    if (slash == start) return EINVAL;
    start = slash + 1;
  }
  return 0;
}

Result<std::optional<std::string>> ReadRedirect(const LayerStack& layers, int dir_fd) {
  const std::string path = FdPath(dir_fd);
  const std::string name = layers.PrivateXattr("redirect");
  std::string value(PATH_MAX, '\0');
  ssize_t n = getxattr(path.c_str(), name.c_str(), value.data(), value.size());
  if (n < 0 && errno == ERANGE) {  // longer than a path: read it all, as the kernel does
    n = getxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (n > 0) {
      value.resize(static_cast<size_t>(n));
      n = getxattr(path.c_str(), name.c_str(), value.data(), value.size());
    }
  }
  if (n < 0) {
    if (errno == ENODATA || errno == EOPNOTSUPP) return std::optional<std::string>();
    return LastErrno();
  }
  const bool empty = n == 0;
  // The kernel reads the value as a C string: it ends at the first NUL.
  value.resize(std::min(static_cast<size_t>(n), value.find('\0')));
  if (int error = empty ? EINVAL : CheckRedirect(value); error != 0) {
    WarnAboutLayer("invalid redirect \"%s\"", Printable(value));
    return Errno{error};
  }
  return std::optional<std::string>(std::move(value));
}

Result<void> WriteRedirect(const LayerStack& layers, int dir_fd, const std::string& redirect) {
  return CheckSyscall(setxattr(FdPath(dir_fd).c_str(), layers.PrivateXattr("redirect").c_str(),
                               redirect.data(), redirect.size(), 0));
}

Result<void> CheckNotMetacopy(const LayerStack& layers, int dir_fd, std::string_view name) {
  ssize_t n = XattrAt(dir_fd, name, layers.PrivateXattr("metacopy"), nullptr, 0);
  if (n < 0) {
    // Not one, or unreadable, which the kernel also takes for "not one"
    // (with user xattrs and no read permission).
    return Ok();
  }
  // An empty record is the classic form; 4 bytes and more the one with a
  // data digest; anything between is malformed.
  if (n > 0 && n < 4) {
    WarnAboutLayer("metacopy file \"%s\" has too small xattr", Printable(name));
    return Errno{EIO};
  }
  WarnAboutLayer("refusing to follow metacopy origin for \"%s\" (metacopy is off)",
                 Printable(name));
  return Errno{EPERM};
}

Result<bool> CreateStagedWhiteout(const LayerStack& layers, const std::string& name) {
  if (mknodat(layers.staging_fd(), name.c_str(), S_IFCHR | 0, makedev(0, 0)) == 0) {
    return false;
  }
  if (errno != EPERM && errno != EOPNOTSUPP) return LastErrno();
  // Unprivileged: an empty file marked as a whiteout (the kernel reads it
  // in directories marked opaque "x").
  int fd = openat(layers.staging_fd(), name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0);
  if (fd < 0) return LastErrno();
  int rc = fsetxattr(fd, layers.PrivateXattr("whiteout").c_str(), "", 0, 0);
  int error = errno;
  close(fd);
  if (rc != 0) return Errno{error};
  return true;
}

namespace {

// The lower object's file handle: type byte plus handle bytes.
std::optional<std::pair<uint8_t, std::string>> HandleOf(int fd) {
  struct {
    struct file_handle header;
    unsigned char bytes[MAX_HANDLE_SZ];
  } handle{};
  handle.header.handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  if (name_to_handle_at(fd, "", &handle.header, &mount_id, AT_EMPTY_PATH) != 0) {
    return std::nullopt;
  }
  return std::make_pair(static_cast<uint8_t>(handle.header.handle_type),
                        std::string(reinterpret_cast<const char*>(handle.header.f_handle),
                                    handle.header.handle_bytes));
}

constexpr size_t kOriginHeader = 21;  // version, magic, len, flags, type, uuid[16]

}  // namespace

std::string EncodeOrigin(const Layer& layer, int lower_fd) {
  auto handle = HandleOf(lower_fd);
  if (!handle || kOriginHeader + handle->second.size() > 255) return {};
  std::string out;
  out.push_back(0);                                                         // version
  out.push_back(static_cast<char>(0xfb));                                   // magic
  out.push_back(static_cast<char>(kOriginHeader + handle->second.size()));  // len
  out.push_back(0);  // flags: little-endian fid, lower object
  out.push_back(static_cast<char>(handle->first));
  out.append(reinterpret_cast<const char*>(layer.uuid.data()), layer.uuid.size());
  out.append(handle->second);
  return out;
}

bool HasOrigin(const LayerStack& layers, int upper_fd, int lower_fd) {
  // Never through a symlink's descriptor: the call would follow its target.
  struct stat st;
  if (fstat(upper_fd, &st) != 0 || S_ISLNK(st.st_mode)) return false;
  char value[256];
  ssize_t n = getxattr(FdPath(upper_fd).c_str(), layers.PrivateXattr("origin").c_str(), value,
                       sizeof(value));
  if (n < static_cast<ssize_t>(kOriginHeader) || static_cast<uint8_t>(value[1]) != 0xfb) {
    return false;
  }
  auto handle = HandleOf(lower_fd);
  return handle && static_cast<uint8_t>(value[4]) == handle->first &&
         std::string_view(value + kOriginHeader, static_cast<size_t>(n) - kOriginHeader) ==
             handle->second;
}

std::optional<std::pair<int, int>> DecodeOrigin(const LayerStack& layers, int upper_fd,
                                                mode_t type) {
  struct stat st;
  if (fstat(upper_fd, &st) != 0 || S_ISLNK(st.st_mode)) return std::nullopt;
  unsigned char value[256];
  ssize_t n = getxattr(FdPath(upper_fd).c_str(), layers.PrivateXattr("origin").c_str(), value,
                       sizeof(value));
  if (n <= static_cast<ssize_t>(kOriginHeader) || value[1] != 0xfb) return std::nullopt;
  size_t bytes = static_cast<size_t>(n) - kOriginHeader;
  struct {
    struct file_handle header;
    unsigned char bytes[MAX_HANDLE_SZ];
  } handle{};
  if (bytes > MAX_HANDLE_SZ) return std::nullopt;
  handle.header.handle_bytes = static_cast<unsigned>(bytes);
  handle.header.handle_type = value[4];
  std::memcpy(handle.header.f_handle, value + kOriginHeader, bytes);
  for (const Layer& layer : layers.layers()) {
    if (layer.upper || std::memcmp(layer.uuid.data(), value + 5, 16) != 0) continue;
    if (layer.handle_fd < 0) continue;
    int fd = open_by_handle_at(layer.handle_fd, &handle.header, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) continue;
    // The kernel's "invalid origin": an object of another type is no
    // origin (and would share a node with it).
    struct stat found;
    if (fstat(fd, &found) != 0 || (found.st_mode & S_IFMT) != (type & S_IFMT)) {
      WarnAboutLayer("invalid origin (type %o, origin type %o): ignored", type & S_IFMT,
                     found.st_mode & S_IFMT);
      close(fd);
      return std::nullopt;
    }
    return std::make_pair(fd, layer.index);
  }
  return std::nullopt;
}

Result<void> MarkOpaque(const LayerStack& layers, int dir_fd) {
  return CheckSyscall(
      setxattr(FdPath(dir_fd).c_str(), layers.PrivateXattr("opaque").c_str(), "y", 1, 0));
}

bool IsImpure(const LayerStack& layers, int dir_fd) {
  return XattrEquals(FdPath(dir_fd), layers.PrivateXattr("impure"), "y");
}

Result<void> MarkImpure(const LayerStack& layers, int dir_fd) {
  const std::string path = FdPath(dir_fd);
  const std::string name = layers.PrivateXattr("impure");
  if (XattrEquals(path, name, "y")) return Ok();
  if (setxattr(path.c_str(), name.c_str(), "y", 1, 0) != 0 && errno != EOPNOTSUPP) {
    return LastErrno();
  }
  return Ok();
}

Result<void> MarkXattrWhiteouts(const LayerStack& layers, int dir_fd) {
  if (ReadDirMarks(layers, dir_fd, /*upper=*/true).opaque) return Ok();
  return CheckSyscall(
      setxattr(FdPath(dir_fd).c_str(), layers.PrivateXattr("opaque").c_str(), "x", 1, 0));
}

}  // namespace lamina::overlay

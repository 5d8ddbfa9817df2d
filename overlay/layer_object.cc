#include "overlay/layer_object.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

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

int OpenForReading(const Layer& layer, int dir_fd, const char* path, int flags) {
  if (layer.upper || layer.noatime) return openat(dir_fd, path, flags);
  const int fd = openat(dir_fd, path, flags | O_NOATIME);
  if (fd >= 0 || errno != EPERM) return fd;
  return openat(dir_fd, path, flags);
}

namespace {

// `path` is "/proc/self/fd/N" of a directory or regular file: the plain
// (following) xattr calls reach the object itself through the magic link.
bool XattrEquals(const std::string& path, const std::string& name, std::string_view want) {
  char value[8];
  ssize_t n = getxattr(path.c_str(), name.c_str(), value, sizeof(value));
  return n >= 0 && std::string_view(value, static_cast<size_t>(n)) == want;
}

bool HasXattr(const std::string& path, const std::string& name) {
  return lgetxattr(path.c_str(), name.c_str(), nullptr, 0) >= 0;
}

}  // namespace

bool IsWhiteout(const LayerStack& layers, int dir_fd, std::string_view name, const struct stat& st,
                const DirMarks& marks) {
  if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) return true;
  if (marks.xattr_whiteouts && S_ISREG(st.st_mode) && st.st_size == 0) {
    std::string path = absl::StrCat(FdPath(dir_fd), "/", std::string(name));
    return HasXattr(path, layers.PrivateXattr("whiteout")) ||
           HasXattr(path, "trusted.overlay.whiteout") || HasXattr(path, "user.overlay.whiteout");
  }
  return false;
}

bool HasOciWhiteout(int dir_fd, std::string_view name) {
  std::string wh = absl::StrCat(std::string(kOciWhiteoutPrefix), std::string(name));
  struct stat st;
  return fstatat(dir_fd, wh.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

DirMarks ReadDirMarks(const LayerStack& layers, int dir_fd) {
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
  const std::string opaque = layers.PrivateXattr("opaque");
  char value[8];
  const std::string_view names[] = {opaque, "trusted.overlay.opaque", "user.overlay.opaque"};
  for (size_t i = 0; i < std::size(names); ++i) {
    const std::string_view name = names[i];
    if (!listed(name) || (i > 0 && name == opaque)) continue;  // asked already
    ssize_t n = getxattr(path.c_str(), std::string(name).c_str(), value, sizeof(value));
    if (n == 1 && value[0] == 'y') marks.opaque = true;
    if (n == 1 && value[0] == 'x') marks.xattr_whiteouts = true;
  }
  if (!marks.opaque && listed("user.fuseoverlayfs.opaque")) {
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
  if (redirect.empty() || redirect.find('\0') != std::string_view::npos) return EINVAL;
  if (redirect[0] != '/' && redirect.find('/') != std::string_view::npos) return EINVAL;
  // Like the kernel's one-component lookups, "." and ".." are refused with
  // EACCES, in a name or anywhere in a path.
  for (size_t start = redirect[0] == '/' ? 1 : 0; start <= redirect.size();) {
    const size_t slash = std::min(redirect.find('/', start), redirect.size());
    const std::string_view component = redirect.substr(start, slash - start);
    if (component.empty()) return EINVAL;
    if (component == "." || component == "..") return EACCES;
    start = slash + 1;
  }
  return 0;
}

Result<std::string> ReadRedirect(const LayerStack& layers, int dir_fd) {
  char value[PATH_MAX];
  ssize_t n = getxattr(FdPath(dir_fd).c_str(), layers.PrivateXattr("redirect").c_str(), value,
                       sizeof(value));
  if (n <= 0) return std::string();
  std::string redirect(value, static_cast<size_t>(n));
  // A name or a path from the layer roots, nothing that could climb out.
  if (int error = CheckRedirect(redirect); error != 0) return Errno{error};
  return redirect;
}

Result<void> WriteRedirect(const LayerStack& layers, int dir_fd, const std::string& redirect) {
  return CheckSyscall(setxattr(FdPath(dir_fd).c_str(), layers.PrivateXattr("redirect").c_str(),
                               redirect.data(), redirect.size(), 0));
}

std::optional<int> OpenLayerPath(int root_fd, const std::string& path, const LayerStack* layers,
                                 std::string* below) {
  int fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
  std::string moved;  // the path so far, as the layers below see it
  size_t start = 0;
  while (fd >= 0 && start < path.size()) {
    size_t slash = path.find('/', start);
    std::string component = path.substr(start, slash == std::string::npos ? slash : slash - start);
    start = slash == std::string::npos ? path.size() : slash + 1;
    if (component.empty() || component == ".") continue;
    int next = -1;
    struct stat st;
    // Never "..": a redirect must not climb out of the layer.
    if (component != ".." && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      next = openat(fd, component.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    }
    close(fd);
    fd = next;
    if (fd < 0 || below == nullptr) continue;
    Result<std::string> redirect = ReadRedirect(*layers, fd);
    if (!redirect.ok() || redirect->empty()) {
      moved += "/" + component;
    } else if ((*redirect)[0] == '/') {
      moved = *redirect;
    } else {
      moved += "/" + *redirect;
    }
  }
  if (fd < 0) return std::nullopt;
  if (below != nullptr) *below = moved;
  return fd;
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

std::optional<std::pair<int, int>> DecodeOrigin(const LayerStack& layers, int upper_fd) {
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
    if (fd >= 0) return std::make_pair(fd, layer.index);
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
  if (ReadDirMarks(layers, dir_fd).opaque) return Ok();
  return CheckSyscall(
      setxattr(FdPath(dir_fd).c_str(), layers.PrivateXattr("opaque").c_str(), "x", 1, 0));
}

}  // namespace lamina::overlay

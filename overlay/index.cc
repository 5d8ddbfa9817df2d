#include "overlay/index.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <vector>

#include "overlay/layer_object.h"
#include "overlay/layer_warnings.h"
#include "spdlog/spdlog.h"

namespace lamina::overlay {
namespace {

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

}  // namespace

std::string IndexName(const Layer& layer, int lower_fd) {
  return Hex(EncodeOrigin(layer, lower_fd));
}

std::optional<int> OpenIndexEntry(const LayerStack& layers, const Layer& layer, int lower_fd) {
  if (layers.index_fd() < 0) return std::nullopt;
  const std::string origin = EncodeOrigin(layer, lower_fd);
  if (origin.empty()) return std::nullopt;
  const std::string name = Hex(origin);
  std::optional<struct stat> st = StatAt(layers.index_fd(), name);
  // Only regular files are indexed here; the kernel also indexes other
  // non-directories, and with nfs_export leaves whiteouts (both ignored).
  if (!st || !S_ISREG(st->st_mode)) return std::nullopt;
  Result<int> fd = OpenPathAt(layers.index_fd(), name);
  if (!fd.ok()) return std::nullopt;
  // An entry is the copy of the lower file its name says: it records that
  // origin itself (what the kernel verifies of every entry at mount, where
  // a mismatch refuses the mount; here the entry is ignored).
  char recorded[256];
  ssize_t n = getxattr(FdPath(*fd).c_str(), layers.PrivateXattr("origin").c_str(), recorded,
                       sizeof(recorded));
  if (n < 0 || std::string_view(recorded, static_cast<size_t>(n)) != origin) {
    WarnAboutLayer("index entry %s records another origin: ignored", name);
    close(*fd);
    return std::nullopt;
  }
  return *fd;
}

std::optional<NlinkRecord> ReadNlinkRecord(const LayerStack& layers, int upper_fd) {
  char value[16];
  ssize_t n = getxattr(FdPath(upper_fd).c_str(), layers.PrivateXattr("nlink").c_str(), value,
                       sizeof(value));
  // "U+1", "L-2": a base, a sign, decimal digits.
  if (n < 3 || (value[0] != 'U' && value[0] != 'L') || (value[1] != '+' && value[1] != '-') ||
      value[2] < '0' || value[2] > '9') {
    return std::nullopt;
  }
  int diff = 0;
  const char* end = value + n;
  auto [ptr, error] = std::from_chars(value + 2, end, diff);
  if (error != std::errc() || ptr != end) return std::nullopt;
  return NlinkRecord{value[0], value[1] == '-' ? -diff : diff};
}

Result<void> WriteNlinkRecord(const LayerStack& layers, int upper_fd, NlinkRecord record) {
  char value[16];
  int n = std::snprintf(value, sizeof(value), "%c%+d", record.base, record.diff);
  return CheckSyscall(setxattr(FdPath(upper_fd).c_str(), layers.PrivateXattr("nlink").c_str(),
                               value, static_cast<size_t>(n), 0));
}

nlink_t ViewNlink(const LayerStack& layers, int upper_fd, nlink_t upper_nlink,
                  nlink_t lower_nlink) {
  if (lower_nlink <= 1) return upper_nlink;
  std::optional<NlinkRecord> record = ReadNlinkRecord(layers, upper_fd);
  if (!record) return upper_nlink;
  const long long view =
      static_cast<long long>(record->base == 'L' ? lower_nlink : upper_nlink) + record->diff;
  return view > 0 ? static_cast<nlink_t>(view) : upper_nlink;
}

Result<void> LinkUp(const LayerStack& layers, int upper_fd, int dir_fd, const std::string& name,
                    nlink_t view_nlink, nlink_t lower_nlink) {
  const int view = static_cast<int>(view_nlink);
  // Valid whether or not the link below happens (a crash in between).
  Result<void> ok = WriteNlinkRecord(layers, upper_fd, {'L', view - static_cast<int>(lower_nlink)});
  if (!ok.ok()) return ok;
  ok = CheckSyscall(
      linkat(AT_FDCWD, FdPath(upper_fd).c_str(), dir_fd, name.c_str(), AT_SYMLINK_FOLLOW));
  if (!ok.ok()) return ok;
  struct stat st;
  if (fstat(upper_fd, &st) != 0) return LastErrno();
  return WriteNlinkRecord(layers, upper_fd, {'U', view - static_cast<int>(st.st_nlink)});
}

void DropIndexIfUnlinked(const LayerStack& layers, int upper_fd) {
  if (layers.index_fd() < 0) return;
  struct stat st;
  if (fstat(upper_fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) return;
  std::optional<NlinkRecord> record = ReadNlinkRecord(layers, upper_fd);
  if (!record || record->base != 'U' || 1 + record->diff > 0) return;
  // The entry's name is its origin record in hex.
  char origin[256];
  ssize_t n = getxattr(FdPath(upper_fd).c_str(), layers.PrivateXattr("origin").c_str(), origin,
                       sizeof(origin));
  if (n <= 0) return;
  const std::string name = Hex(std::string_view(origin, static_cast<size_t>(n)));
  std::optional<struct stat> entry = StatAt(layers.index_fd(), name);
  if (!entry || entry->st_ino != st.st_ino || entry->st_dev != st.st_dev) return;
  if (unlinkat(layers.index_fd(), name.c_str(), 0) != 0) {
    spdlog::warn("overlay: cannot remove unused index entry {}: {}", name, strerror(errno));
  }
}

void RemoveOrphanIndexEntries(const LayerStack& layers) {
  if (layers.index_fd() < 0) return;
  int fd = openat(layers.index_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    close(fd);
    return;
  }
  std::vector<std::string> names;
  while (struct dirent* e = readdir(dir)) {
    if (e->d_type == DT_REG || e->d_type == DT_UNKNOWN) names.emplace_back(e->d_name);
  }
  closedir(dir);
  for (const std::string& name : names) {
    Result<int> entry = OpenPathAt(layers.index_fd(), name);
    if (!entry.ok()) continue;
    DropIndexIfUnlinked(layers, *entry);
    close(*entry);
  }
}

}  // namespace lamina::overlay

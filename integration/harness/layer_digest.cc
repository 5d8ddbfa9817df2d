#include "integration/harness/layer_digest.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <utility>

#include "xxhash.h"

namespace lamina::testing {
namespace {

std::string ErrnoName(int error) {
  const char* name = strerrorname_np(error);
  return name != nullptr ? name : std::to_string(error);
}

// A descriptor closed on destruction.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    Reset();
    fd_ = std::exchange(other.fd_, -1);
    return *this;
  }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  int Release() { return std::exchange(fd_, -1); }

 private:
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int fd_;
};

// Opens `name` below `dir` without following a symlink and without
// touching atime (O_NOATIME needs ownership or CAP_FOWNER; the mount is
// noatime anyway, so without it the open is just as quiet).
Fd OpenQuietly(int dir, const char* name, int flags) {
  flags |= O_RDONLY | O_NOFOLLOW | O_CLOEXEC;
  int fd = openat(dir, name, flags | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = openat(dir, name, flags);
  return Fd(fd);
}

// A private read-only, noatime clone of the mount at `root`, attached
// nowhere (so no other mount namespace ever copies it): its root as an
// O_PATH descriptor.
Fd QuietViewOf(const std::string& root, std::string* error) {
  Fd tree(
      open_tree(AT_FDCWD, root.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW));
  if (!tree.ok()) {
    *error = "open_tree(" + root + "): " + ErrnoName(errno);
    return tree;
  }
  struct mount_attr attr {};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOATIME;
  attr.attr_clr = MOUNT_ATTR__ATIME;
  if (mount_setattr(tree.get(), "", AT_EMPTY_PATH, &attr, sizeof(attr)) != 0) {
    *error = "mount_setattr(" + root + ", ro,noatime): " + ErrnoName(errno);
    return Fd();
  }
  return tree;
}

// A hash of the file's bytes, read into `buffer`; holes count as the zeros
// they are without being read (a 1 GiB sparse file costs a hash of zeros,
// not 1 GiB of reads).
std::string HashContents(int fd, off_t size, std::vector<char>& buffer, std::string* problem) {
  static const std::vector<char> kZeros(1 << 20, 0);
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(),
                                                                 &XXH3_freeState);
  XXH3_128bits_reset(state.get());
  auto hash_zeros = [&](off_t count) {
    while (count > 0) {
      const size_t n = static_cast<size_t>(std::min<off_t>(count, kZeros.size()));
      XXH3_128bits_update(state.get(), kZeros.data(), n);
      count -= static_cast<off_t>(n);
    }
  };
  off_t at = 0;
  while (at < size) {
    off_t data = lseek(fd, at, SEEK_DATA);
    if (data < 0) {
      if (errno != ENXIO) {
        *problem = "contents: lseek: " + ErrnoName(errno);
        return "";
      }
      data = size;  // only a hole is left
    }
    data = std::min(data, size);
    hash_zeros(data - at);
    if (data == size) break;
    off_t hole = lseek(fd, data, SEEK_HOLE);
    hole = hole < 0 ? size : std::min(hole, size);
    for (at = data; at < hole;) {
      const size_t want = static_cast<size_t>(std::min<off_t>(hole - at, buffer.size()));
      const ssize_t n = pread(fd, buffer.data(), want, at);
      if (n <= 0) {
        *problem = "contents: " + (n < 0 ? "pread: " + ErrnoName(errno) : "shorter than its size");
        return "";
      }
      XXH3_128bits_update(state.get(), buffer.data(), static_cast<size_t>(n));
      at += n;
    }
  }
  const XXH128_hash_t hash = XXH3_128bits_digest(state.get());
  char hex[48];
  std::snprintf(hex, sizeof(hex), "xxh3-128:%016llx%016llx",
                static_cast<unsigned long long>(hash.high64),
                static_cast<unsigned long long>(hash.low64));
  return hex;
}

// Every extended attribute of an object, read through its descriptor
// (`fd` >= 0) or, for objects never opened (symlinks, device nodes, FIFOs,
// sockets), through a path whose last component is not followed.
std::vector<std::pair<std::string, std::string>> ReadXattrs(int fd, const std::string& path,
                                                            std::string* problem) {
  auto list = [&](char* buffer, size_t size) {
    return fd >= 0 ? flistxattr(fd, buffer, size) : llistxattr(path.c_str(), buffer, size);
  };
  auto get = [&](const char* name, void* buffer, size_t size) {
    return fd >= 0 ? fgetxattr(fd, name, buffer, size)
                   : lgetxattr(path.c_str(), name, buffer, size);
  };
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::string names;
  for (;;) {
    const ssize_t size = list(nullptr, 0);
    if (size < 0) {
      if (errno != ENOTSUP) *problem = "xattr names: " + ErrnoName(errno);
      return xattrs;
    }
    names.resize(static_cast<size_t>(size));
    const ssize_t n = list(names.data(), names.size());
    if (n >= 0) {
      names.resize(static_cast<size_t>(n));
      break;
    }
    if (errno != ERANGE) {  // E2BIG: more names than one listxattr returns
      *problem = "xattr names: " + ErrnoName(errno) + " (" + std::to_string(size) + " bytes)";
      return xattrs;
    }
  }
  for (size_t at = 0; at < names.size();) {
    const std::string name(names.c_str() + at);
    at += name.size() + 1;
    std::string value;
    for (;;) {
      const ssize_t size = get(name.c_str(), nullptr, 0);
      ssize_t n = -1;
      if (size >= 0) {
        value.resize(static_cast<size_t>(size));
        n = get(name.c_str(), value.data(), value.size());
      }
      if (n >= 0) {
        value.resize(static_cast<size_t>(n));
        break;
      }
      if (errno != ERANGE) {
        value = "(unreadable: " + ErrnoName(errno) + ")";
        break;
      }
    }
    xattrs.emplace_back(name, value);
  }
  std::sort(xattrs.begin(), xattrs.end());
  return xattrs;
}

// A value as readable text: printable ASCII as it is, other bytes as \xNN,
// long values cut with their length.
std::string Printable(const std::string& value) {
  constexpr size_t kShown = 48;
  std::string out = "\"";
  for (size_t i = 0; i < value.size() && i < kShown; ++i) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", c);
      out += escaped;
    }
  }
  out += "\"";
  if (value.size() > kShown) out += "... (" + std::to_string(value.size()) + " bytes)";
  return out;
}

std::string TimeText(const struct timespec& t) {
  char text[48];
  std::snprintf(text, sizeof(text), "%lld.%09ld", static_cast<long long>(t.tv_sec), t.tv_nsec);
  return text;
}

std::string TypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "regular file";
    case S_IFDIR:
      return "directory";
    case S_IFLNK:
      return "symlink";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "socket";
    case S_IFCHR:
      return "character device";
    case S_IFBLK:
      return "block device";
    default:
      return "unknown type";
  }
}

}  // namespace

// Walks the tree depth first holding two descriptors at most: it goes down
// by name and back up by "..", checking that it arrived where it left.
class LayerDigest::Walker {
 public:
  Walker(LayerDigest& digest, Fd root) : digest_(digest) { MoveTo(std::move(root)); }
  ~Walker() { MoveTo(Fd()); }
  Walker(const Walker&) = delete;
  Walker& operator=(const Walker&) = delete;

  void Run() {
    Object root;
    if (fstat(current_, &root.st) != 0) return Fail("fstat of the root");
    ReadOpenObject(current_, root);
    digest_.objects_.push_back(std::move(root));
    std::vector<Level> stack;
    stack.push_back(ReadDirectory(0));
    while (!stack.empty() && digest_.error_.empty()) {
      Level& level = stack.back();
      if (level.next < level.subdirectories.size()) {
        const int child = level.subdirectories[level.next++];
        if (!Enter(child)) return;
        stack.push_back(ReadDirectory(child));
        continue;
      }
      stack.pop_back();
      if (!stack.empty() && !Leave(stack.back().directory)) return;
    }
  }

 private:
  // A directory being walked: its subdirectories, the next to enter.
  struct Level {
    int directory = 0;
    std::vector<int> subdirectories;
    size_t next = 0;
  };

  void Fail(const std::string& what) {
    if (digest_.error_.empty()) digest_.error_ = what + ": " + ErrnoName(errno);
  }

  // Records the entries of the directory open as current_, by name.
  Level ReadDirectory(int directory) {
    Level level;
    level.directory = directory;
    std::vector<std::string> names;
    // getdents64 on the descriptor itself: fdopendir would take it over.
    for (;;) {
      const long n = syscall(SYS_getdents64, current_, buffer_.data(), buffer_.size());
      if (n < 0) {
        Fail("getdents64 in " + digest_.PathOf(directory));
        return level;
      }
      if (n == 0) break;
      for (long at = 0; at < n;) {
        const auto* entry = reinterpret_cast<const struct dirent64*>(buffer_.data() + at);
        const std::string name = entry->d_name;
        if (name != "." && name != "..") names.push_back(name);
        at += entry->d_reclen;
      }
    }
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      Object object;
      object.parent = directory;
      object.name = name;
      if (fstatat(current_, name.c_str(), &object.st, AT_SYMLINK_NOFOLLOW) != 0) {
        object.problem = "lstat: " + ErrnoName(errno);
      } else {
        ReadEntry(object);
      }
      const bool is_directory = object.problem.empty() && S_ISDIR(object.st.st_mode);
      digest_.objects_.push_back(std::move(object));
      if (is_directory)
        level.subdirectories.push_back(static_cast<int>(digest_.objects_.size()) - 1);
    }
    return level;
  }

  // Fills in what lstat does not give, by the object's type.
  void ReadEntry(Object& object) {
    const char* name = object.name.c_str();
    const mode_t type = object.st.st_mode & S_IFMT;
    if (type == S_IFREG || type == S_IFDIR) {
      Fd fd = OpenQuietly(current_, name, type == S_IFDIR ? O_DIRECTORY : O_NONBLOCK);
      struct stat st;
      if (!fd.ok()) {
        object.problem = "open: " + ErrnoName(errno);
      } else if (fstat(fd.get(), &st) != 0 || st.st_ino != object.st.st_ino) {
        object.problem = "replaced while read";
      } else {
        ReadOpenObject(fd.get(), object);
      }
      return;
    }
    if (type == S_IFLNK) {
      std::string target(4096, '\0');
      const ssize_t n = readlinkat(current_, name, target.data(), target.size());
      if (n < 0) {
        object.problem = "readlink: " + ErrnoName(errno);
      } else {
        object.target = target.substr(0, static_cast<size_t>(n));
      }
    }
    // Never opened: a FIFO's open would block, a device's reach a driver.
    const std::string path = "/proc/self/fd/" + std::to_string(current_) + "/" + object.name;
    object.xattrs = ReadXattrs(-1, path, &object.problem);
  }

  // Flags, xattrs and (for a regular file) contents, through `fd`.
  void ReadOpenObject(int fd, Object& object) {
    int flags = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
      object.flags = static_cast<uint32_t>(flags);
      object.has_flags = true;
    }
    object.xattrs = ReadXattrs(fd, "", &object.problem);
    if (S_ISREG(object.st.st_mode)) {
      std::string problem;
      object.contents = HashContents(fd, object.st.st_size, buffer_, &problem);
      if (!problem.empty()) object.problem += (object.problem.empty() ? "" : "; ") + problem;
    }
  }

  // Makes the subdirectory `child` of the current directory current.
  bool Enter(int child) {
    const Object& object = digest_.objects_[static_cast<size_t>(child)];
    Fd fd = OpenQuietly(current_, object.name.c_str(), O_DIRECTORY);
    struct stat st;
    if (!fd.ok() || fstat(fd.get(), &st) != 0) {
      Fail("open of " + digest_.PathOf(child));
      return false;
    }
    if (st.st_ino != object.st.st_ino) {
      errno = ESTALE;
      Fail(digest_.PathOf(child) + " was replaced during the walk");
      return false;
    }
    MoveTo(std::move(fd));
    return true;
  }

  // Goes back up to `parent`, which the current directory must be in.
  bool Leave(int parent) {
    Fd fd = OpenQuietly(current_, "..", O_DIRECTORY);
    struct stat st;
    if (!fd.ok() || fstat(fd.get(), &st) != 0) {
      Fail("open of .. to return to " + digest_.PathOf(parent));
      return false;
    }
    if (st.st_ino != digest_.objects_[static_cast<size_t>(parent)].st.st_ino) {
      errno = ESTALE;
      Fail("a directory moved during the walk, below " + digest_.PathOf(parent));
      return false;
    }
    MoveTo(std::move(fd));
    return true;
  }

  // Makes `directory` the current one, closing the last. (current_ is a
  // plain int: where a unity build includes this file, GCC refuses a field
  // of a type from an anonymous namespace in a class with linkage.)
  void MoveTo(Fd directory) {
    if (current_ >= 0) close(current_);
    current_ = directory.Release();
  }

  LayerDigest& digest_;
  int current_ = -1;                                       // the directory being read
  std::vector<char> buffer_ = std::vector<char>(1 << 20);  // for entries and contents
};

LayerDigest LayerDigest::Take(const std::string& root) {
  LayerDigest digest;
  digest.root_ = root;
  Fd view = QuietViewOf(root, &digest.error_);
  if (!view.ok()) return digest;
  Fd top = OpenQuietly(view.get(), ".", O_DIRECTORY);
  if (!top.ok()) {
    digest.error_ = "open of " + root + ": " + ErrnoName(errno);
    return digest;
  }
  Walker(digest, std::move(top)).Run();
  if (!digest.error_.empty()) digest.objects_.clear();
  return digest;
}

std::vector<std::pair<std::string, std::string>> LayerDigest::Fields(const Object& object) {
  const struct stat& st = object.st;
  char mode[16];
  std::snprintf(mode, sizeof(mode), "0%o", st.st_mode & 07777);
  std::vector<std::pair<std::string, std::string>> fields = {
      {"type", TypeName(st.st_mode)},
      {"mode", mode},
      {"uid", std::to_string(st.st_uid)},
      {"gid", std::to_string(st.st_gid)},
      {"size", std::to_string(st.st_size)},
      {"rdev", std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev))},
      {"nlink", std::to_string(st.st_nlink)},
      {"ino", std::to_string(st.st_ino)},
      {"atime", TimeText(st.st_atim)},
      {"mtime", TimeText(st.st_mtim)},
      {"ctime", TimeText(st.st_ctim)},
  };
  if (object.has_flags) {
    char flags[16];
    std::snprintf(flags, sizeof(flags), "0x%x", object.flags);
    fields.emplace_back("flags", flags);
  }
  if (S_ISLNK(st.st_mode)) fields.emplace_back("target", Printable(object.target));
  if (S_ISREG(st.st_mode)) fields.emplace_back("contents", object.contents);
  for (const auto& [name, value] : object.xattrs) {
    fields.emplace_back("xattr " + name, Printable(value));
  }
  if (!object.problem.empty()) fields.emplace_back("unreadable", object.problem);
  return fields;
}

void LayerDigest::Print(std::ostream& out) const {
  if (!error_.empty()) out << "error: " << error_ << "\n";
  for (size_t i = 0; i < objects_.size(); ++i) {
    const std::string path = PathOf(static_cast<int>(i));
    for (const auto& [name, value] : Fields(objects_[i])) {
      out << path << ": " << name << " " << value << "\n";
    }
  }
}

std::string LayerDigest::PathOf(int index) const {
  std::vector<const std::string*> names;
  for (int at = index; at > 0; at = objects_[static_cast<size_t>(at)].parent) {
    names.push_back(&objects_[static_cast<size_t>(at)].name);
  }
  if (names.empty()) return "/";
  std::reverse(names.begin(), names.end());
  // A 10,000-deep chain: the first and last few components.
  constexpr size_t kEnds = 4;
  std::string path;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names.size() > 3 * kEnds && i == kEnds) {
      path += "/...(" + std::to_string(names.size() - 2 * kEnds) + " more)...";
      i = names.size() - kEnds - 1;
      continue;
    }
    path += "/" + *names[i];
  }
  return path;
}

LayerDigest::Comparison LayerDigest::Compare(const LayerDigest& before, const LayerDigest& after,
                                             size_t max_listed) {
  Comparison comparison;
  auto note = [&](const std::function<std::string()>& line) {
    if (comparison.count++ < max_listed) comparison.listed.push_back(line());
  };
  if (!before.error_.empty() || !after.error_.empty()) {
    if (before.error_ != after.error_) {
      note([&] {
        return "the layer itself: " + (before.error_.empty() ? "readable" : before.error_) +
               " -> " + (after.error_.empty() ? "readable" : after.error_);
      });
    }
    return comparison;
  }
  // Each object of `before` by (parent, name), and which were found again.
  std::map<std::pair<int, std::string>, int> by_name;
  for (size_t i = 1; i < before.objects_.size(); ++i) {
    by_name.emplace(std::pair(before.objects_[i].parent, before.objects_[i].name),
                    static_cast<int>(i));
  }
  std::vector<bool> found(before.objects_.size(), false);
  std::vector<int> counterpart(after.objects_.size(), -1);  // after's index -> before's
  for (size_t i = 0; i < after.objects_.size(); ++i) {
    const Object& object = after.objects_[i];
    int match = -1;
    if (i == 0) {
      match = before.objects_.empty() ? -1 : 0;
    } else if (counterpart[static_cast<size_t>(object.parent)] >= 0) {
      auto it = by_name.find({counterpart[static_cast<size_t>(object.parent)], object.name});
      if (it != by_name.end()) match = it->second;
    }
    counterpart[i] = match;
    if (match < 0) {
      // (Below an added directory, only the directory is reported.)
      if (i == 0 || counterpart[static_cast<size_t>(object.parent)] >= 0) {
        note([&] {
          return after.PathOf(static_cast<int>(i)) + ": added (" + TypeName(object.st.st_mode) +
                 ")";
        });
      }
      continue;
    }
    found[static_cast<size_t>(match)] = true;
    const auto was = Fields(before.objects_[static_cast<size_t>(match)]);
    const auto now = Fields(object);
    // Both lists in one order, save the xattrs (by name) and "unreadable"
    // at their ends: merge them by name.
    std::map<std::string, std::pair<std::string, std::string>> merged;
    std::vector<std::string> order;
    for (const auto& [name, value] : was) {
      if (merged.emplace(name, std::pair(value, std::string("(none)"))).second) {
        order.push_back(name);
      }
    }
    for (const auto& [name, value] : now) {
      auto [it, inserted] = merged.emplace(name, std::pair(std::string("(none)"), value));
      if (inserted) {
        order.push_back(name);
      } else {
        it->second.second = value;
      }
    }
    for (const std::string& name : order) {
      const auto& [old_value, new_value] = merged[name];
      if (old_value == new_value) continue;
      note([&] {
        return after.PathOf(static_cast<int>(i)) + ": " + name + " " + old_value + " -> " +
               new_value;
      });
    }
  }
  for (size_t i = 0; i < before.objects_.size(); ++i) {
    if (found[i]) continue;
    const int parent = before.objects_[i].parent;
    if (parent >= 0 && !found[static_cast<size_t>(parent)]) continue;  // its directory went
    note([&] {
      return before.PathOf(static_cast<int>(i)) + ": removed (" +
             TypeName(before.objects_[i].st.st_mode) + ")";
    });
  }
  return comparison;
}

}  // namespace lamina::testing

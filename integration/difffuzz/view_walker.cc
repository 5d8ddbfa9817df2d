#include "integration/difffuzz/view_walker.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "integration/difffuzz/case_spec.h"
#include "integration/difffuzz/fs_util.h"

namespace lamina::difffuzz {
namespace {

std::string TypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "file";
    case S_IFDIR:
      return "dir";
    case S_IFLNK:
      return "symlink";
    case S_IFCHR:
      return "chr";
    case S_IFBLK:
      return "blk";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "sock";
  }
  return "type?";
}

std::string DirentTypeName(unsigned char type) {
  switch (type) {
    case DT_REG:
      return "file";
    case DT_DIR:
      return "dir";
    case DT_LNK:
      return "symlink";
    case DT_CHR:
      return "chr";
    case DT_BLK:
      return "blk";
    case DT_FIFO:
      return "fifo";
    case DT_SOCK:
      return "sock";
  }
  return "unknown";
}

// Contents of short files as they are, longer ones as size and hash.
std::string Contents(int dir, const std::string& name) {
  int fd = openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return "open=" + ErrnoName(errno);
  std::string data;
  char buffer[65536];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0 && data.size() < (1 << 20)) {
    data.append(buffer, static_cast<size_t>(n));
  }
  const int error = errno;
  close(fd);
  if (n < 0) return "read=" + ErrnoName(error);
  if (data.size() <= 48) return "data=" + Quote(data);
  return "data=" + std::to_string(data.size()) +
         "b:" + std::to_string(std::hash<std::string>()(data) & 0xffffffffffff);
}

std::string Xattrs(int dir, const std::string& name) {
  const std::string path = ProcPath(dir, name);
  std::vector<char> names(65536);
  ssize_t size = llistxattr(path.c_str(), names.data(), names.size());
  if (size < 0) return " listxattr=" + ErrnoName(errno);
  std::vector<std::string> sorted;
  for (ssize_t at = 0; at < size;) {
    std::string entry(names.data() + at);
    at += static_cast<ssize_t>(entry.size()) + 1;
    sorted.push_back(entry);
  }
  std::sort(sorted.begin(), sorted.end());
  std::string out;
  std::vector<char> value(65536);
  for (const std::string& entry : sorted) {
    ssize_t n = lgetxattr(path.c_str(), entry.c_str(), value.data(), value.size());
    out += " x:" + Printable(entry) + "=";
    out += n < 0 ? ErrnoName(errno) : Quote(std::string(value.data(), static_cast<size_t>(n)));
  }
  return out;
}

class Walker {
 public:
  Walker(size_t max_objects, View* view) : max_objects_(max_objects), view_(view) {}

  void Walk(const std::string& root) {
    int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      view_->lines.push_back("/ open=" + ErrnoName(errno));
      return;
    }
    struct stat st;
    if (fstat(fd, &st) == 0) {
      root_dev_ = st.st_dev;
      view_->lines.push_back("/ " + Describe(st, std::nullopt, "") + Xattrs(fd, "."));
    }
    WalkDir(fd, "", 0);
    close(fd);
  }

  // A path below the root, looked up one component at a time without
  // following symlinks.
  void Probe(const std::string& root, const std::string& path) {
    if (listed_.contains(path)) return;
    int dir = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    size_t start = 0;
    std::string line = "probe " + Printable(path) + " ";
    while (dir >= 0) {
      const size_t slash = path.find('/', start);
      const std::string component =
          path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      struct stat st;
      if (slash == std::string::npos) {
        line += fstatat(dir, component.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0
                    ? TypeName(st.st_mode)
                    : ErrnoName(errno);
        break;
      }
      int next = openat(dir, component.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0) line += "parent=" + ErrnoName(errno);
      close(dir);
      dir = next;
      start = slash + 1;
    }
    if (dir >= 0) close(dir);
    // A name that is neither listed nor there says nothing the listing
    // did not; what resolves, or fails otherwise, does.
    for (const char* boring : {" ENOENT", " parent=ENOENT", " parent=ENOTDIR"}) {
      if (line.size() >= strlen(boring) &&
          line.compare(line.size() - strlen(boring), std::string::npos, boring) == 0) {
        return;
      }
    }
    view_->lines.push_back(line);
  }

 private:
  // "self" for the first object seen with an inode number, the path of
  // that object for the others: which names share an inode, independent of
  // the numbers (the two overlays' layers are different copies) and of
  // objects only one view has.
  std::string InodeClass(ino_t ino, const std::string& path) {
    auto [it, added] = first_path_.emplace(ino, path);
    return added ? "self" : Printable(it->second.empty() ? "/" : it->second);
  }

  std::string Describe(const struct stat& st, std::optional<ino_t> d_ino, const std::string& path) {
    char mode[16];
    snprintf(mode, sizeof(mode), "%04o", st.st_mode & 07777);
    std::string out = TypeName(st.st_mode) + " mode=" + mode + " own=" + std::to_string(st.st_uid) +
                      ":" + std::to_string(st.st_gid) + " nlink=" + std::to_string(st.st_nlink);
    if (!S_ISDIR(st.st_mode)) out += " size=" + std::to_string(st.st_size);
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      out += " rdev=" + std::to_string(major(st.st_rdev)) + "," + std::to_string(minor(st.st_rdev));
    }
    out += " ino=" + InodeClass(st.st_ino, path);
    if (d_ino && *d_ino != st.st_ino) out += " d_ino!=ino";
    if (st.st_dev != root_dev_) out += " dev=other";
    return out;
  }

  void WalkDir(int dir, const std::string& path, int depth) {
    int copy = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR* stream = copy < 0 ? nullptr : fdopendir(copy);
    if (stream == nullptr) {
      view_->lines.push_back(Printable(path.empty() ? "/" : path) + " opendir=" + ErrnoName(errno));
      if (copy >= 0) close(copy);
      return;
    }
    std::vector<std::pair<std::string, std::pair<ino_t, unsigned char>>> entries;
    errno = 0;
    while (struct dirent* e = readdir(stream)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") entries.push_back({name, {e->d_ino, e->d_type}});
      errno = 0;
    }
    if (errno != 0) {
      view_->lines.push_back(Printable(path.empty() ? "/" : path) + " readdir=" + ErrnoName(errno));
    }
    closedir(stream);
    std::sort(entries.begin(), entries.end());
    for (size_t i = 1; i < entries.size(); ++i) {
      if (entries[i].first == entries[i - 1].first) {
        view_->lines.push_back(Printable(path + "/" + entries[i].first) + " listed twice");
      }
    }
    for (const auto& [name, info] : entries) {
      if (++objects_ > max_objects_) {
        view_->lines.push_back("... more than " + std::to_string(max_objects_) + " objects");
        return;
      }
      const std::string child = path.empty() ? name : path + "/" + name;
      listed_.insert(child);
      std::string line = Printable(child) + " ";
      struct stat st;
      if (fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        view_->lines.push_back(line + "listed, lstat=" + ErrnoName(errno) +
                               " dtype=" + DirentTypeName(info.second));
        continue;
      }
      line += Describe(st, info.first, child);
      if (DirentTypeName(info.second) != TypeName(st.st_mode)) {
        line += " dtype=" + DirentTypeName(info.second);
      }
      if (S_ISREG(st.st_mode)) {
        line += " " + Contents(dir, name);
      } else if (S_ISLNK(st.st_mode)) {
        char target[8192];
        ssize_t n = readlinkat(dir, name.c_str(), target, sizeof(target));
        line += n < 0 ? " readlink=" + ErrnoName(errno)
                      : " -> " + Printable(std::string(target, static_cast<size_t>(n)));
      }
      line += Xattrs(dir, name);
      view_->lines.push_back(line);
      if (S_ISDIR(st.st_mode)) {
        if (depth >= 80) {
          view_->lines.push_back(Printable(child) + " (deeper not walked)");
          continue;
        }
        int sub = openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
          view_->lines.push_back(Printable(child) + " open=" + ErrnoName(errno));
          continue;
        }
        WalkDir(sub, child, depth + 1);
        close(sub);
      }
    }
  }

  size_t max_objects_;
  View* view_;
  size_t objects_ = 0;
  dev_t root_dev_ = 0;
  std::map<ino_t, std::string> first_path_;
  std::set<std::string> listed_;
};

// The path a line is about (its first field, as printed).
std::string LineKey(const std::string& line) {
  // "probe PATH ..." is keyed "probe PATH"; PATH may be quoted.
  const size_t start = line.compare(0, 6, "probe ") == 0 ? 6 : 0;
  if (start < line.size() && line[start] == '"') {
    for (size_t i = start + 1; i < line.size(); ++i) {
      if (line[i] == '\\') {
        ++i;
      } else if (line[i] == '"') {
        return line.substr(0, i + 1);
      }
    }
  }
  return line.substr(0, line.find(' ', start));
}

}  // namespace

std::string ViewLineKey(const std::string& line) {
  return LineKey(line);
}

View DescribeView(const std::string& root, const std::vector<std::string>& probes,
                  size_t max_objects) {
  View view;
  Walker walker(max_objects, &view);
  walker.Walk(root);
  for (const std::string& probe : probes) walker.Probe(root, probe);
  std::stable_sort(
      view.lines.begin(), view.lines.end(),
      [](const std::string& a, const std::string& b) { return LineKey(a) < LineKey(b); });
  return view;
}

std::map<std::string, std::pair<std::string, std::string>> PairViews(const View& a, const View& b) {
  std::map<std::string, std::pair<std::string, std::string>> by_path;
  for (const std::string& line : a.lines) by_path[LineKey(line)].first += line + "\n";
  for (const std::string& line : b.lines) by_path[LineKey(line)].second += line + "\n";
  return by_path;
}

std::string DiffViews(const View& a, const View& b, const std::string& label_a,
                      const std::string& label_b, size_t max_paths) {
  const auto by_path = PairViews(a, b);
  std::string out;
  size_t shown = 0, differing = 0;
  for (const auto& [path, sides] : by_path) {
    if (sides.first == sides.second) continue;
    ++differing;
    if (shown++ >= max_paths) continue;
    out += "  " + label_a + ": " + (sides.first.empty() ? "(nothing)\n" : sides.first);
    out += "  " + label_b + ": " + (sides.second.empty() ? "(nothing)\n" : sides.second);
  }
  if (differing > max_paths) {
    out += "  ... " + std::to_string(differing - max_paths) + " more paths differ\n";
  }
  return out;
}

}  // namespace lamina::difffuzz

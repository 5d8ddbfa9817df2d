#include "integration/difffuzz/stack_builder.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <set>
#include <utility>

#include "integration/difffuzz/fs_util.h"

namespace lamina::difffuzz {
namespace {

// A descriptor closed on destruction.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) close(fd_);
      fd_ = other.fd_;
      other.fd_ = -1;
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

// The parent directory of `path` below `root`, made (0755) where missing,
// never through a symlink; `*leaf` gets the last component. Not ok when a
// component is something else than a directory.
Fd OpenParent(const std::string& root, const std::string& path, std::string* leaf,
              bool make = true) {
  Fd dir(open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  size_t start = 0;
  while (dir.ok()) {
    const size_t slash = path.find('/', start);
    if (slash == std::string::npos) {
      *leaf = path.substr(start);
      return dir;
    }
    const std::string component = path.substr(start, slash - start);
    start = slash + 1;
    if (make) mkdirat(dir.get(), component.c_str(), 0755);
    dir = Fd(openat(dir.get(), component.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  }
  return dir;
}

void WriteContents(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

std::array<uint8_t, 16> FilesystemUuid(const std::string& path) {
  // FS_IOC_GETFSUUID (Linux 6.5): struct fsuuid2 { u8 len; u8 uuid[16]; }.
  struct {
    uint8_t len;
    uint8_t uuid[16];
  } fsuuid{};
  constexpr unsigned long kGetFsUuid = _IOR(0x15, 0, decltype(fsuuid));
  std::array<uint8_t, 16> uuid{};
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  fsuuid.len = sizeof(fsuuid.uuid);
  if (fd.ok() && ioctl(fd.get(), kGetFsUuid, &fsuuid) == 0 && fsuuid.len == 16) {
    std::memcpy(uuid.data(), fsuuid.uuid, 16);
  }
  return uuid;
}

// Deterministic filler bytes for a garbage record.
std::string Garbage(const std::string& seed_text, size_t size) {
  uint64_t state = std::hash<std::string>()(seed_text) | 1;
  std::string out;
  for (size_t i = 0; i < size; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    out.push_back(static_cast<char>(state & 0xff));
  }
  return out;
}

constexpr size_t kOriginHeader = 21;  // version, magic, len, flags, type, uuid[16]

// The record `form` asks for, made from the object `ref` of this set.
std::string MakeOrigin(OriginForm form, const std::string& ref, const StackDirs& dirs) {
  switch (form) {
    case OriginForm::kEmpty:
      return "";
    case OriginForm::kGarbage:
      return Garbage(ref, 40);
    case OriginForm::kOutside:
      return OriginRecord(dirs.outside() + "/secret");
    default:
      break;
  }
  std::string record = OriginRecord(ref);
  if (record.size() <= kOriginHeader) return record;
  switch (form) {
    case OriginForm::kForeignUuid:
      for (size_t i = 5; i < kOriginHeader; ++i) record[i] = 0x42;
      break;
    case OriginForm::kWrongType:
      record[4] = static_cast<char>(record[4] ^ 0x7f);
      break;
    case OriginForm::kTruncated:
      record.resize(kOriginHeader + (record.size() - kOriginHeader) / 2);
      break;
    default:
      break;
  }
  return record;
}

bool Exists(const std::string& root, const std::string& path) {
  std::string leaf;
  Fd parent = OpenParent(root, path, &leaf, /*make=*/false);
  struct stat st;
  return parent.ok() && fstatat(parent.get(), leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

void SetXattr(const std::string& root, const std::string& path, const std::string& name,
              const std::string& value) {
  std::string leaf;
  Fd parent = OpenParent(root, path, &leaf, /*make=*/false);
  if (!parent.ok()) return;
  const std::string target = leaf.empty() ? ProcPath(parent.get()) : ProcPath(parent.get(), leaf);
  lsetxattr(target.c_str(), name.c_str(), value.data(), value.size(), 0);
}

void WriteIndexEntry(const Entry& e, const CaseSpec& spec, const StackDirs& dirs) {
  if (!spec.options.upper) return;
  const std::string index = dirs.work() + "/index";
  mkdir(index.c_str(), 0700);
  const std::string ref = dirs.Layer(e.ref_layer) + "/" + e.ref_path;
  if (!Exists(dirs.Layer(e.ref_layer), e.ref_path)) return;
  const std::string record = OriginRecord(ref);
  if (record.empty()) return;
  const std::string name = index + "/" + Hex(record);
  const std::string prefix = spec.options.PrivatePrefix();
  switch (e.index) {
    case Entry::IndexForm::kLinkUp: {
      // As a copy-up through the index leaves it: the upper file records
      // its origin and is a second name of the index entry.
      if (!Exists(dirs.Layer(kUpperLayer), e.path)) return;
      SetXattr(dirs.Layer(kUpperLayer), e.path, prefix + "origin", record);
      std::string leaf;
      Fd parent = OpenParent(dirs.Layer(kUpperLayer), e.path, &leaf, /*make=*/false);
      if (parent.ok()) linkat(parent.get(), leaf.c_str(), AT_FDCWD, name.c_str(), 0);
      return;
    }
    case Entry::IndexForm::kBadName: {
      Fd fd(open((index + "/not-a-handle").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
      return;
    }
    case Entry::IndexForm::kSymlink:
      symlink((dirs.outside() + "/secret").c_str(), name.c_str());
      return;
    case Entry::IndexForm::kDirectory:
      mkdir(name.c_str(), 0755);
      lsetxattr(name.c_str(), (prefix + "origin").c_str(), record.data(), record.size(), 0);
      return;
    case Entry::IndexForm::kWhiteout:
      mknod(name.c_str(), S_IFCHR | 0, makedev(0, 0));
      return;
    case Entry::IndexForm::kOrphan: {
      Fd fd(open(name.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
      if (fd.ok()) {
        WriteContents(fd.get(), "orphan");
        fsetxattr(fd.get(), (prefix + "origin").c_str(), record.data(), record.size(), 0);
      }
      return;
    }
  }
}

// Writes one object entry (the kinds that make names).
void WriteObject(const Entry& e, const std::string& root) {
  std::string leaf;
  Fd parent = OpenParent(root, e.path, &leaf);
  if (!parent.ok() || leaf.empty()) return;
  const int dir = parent.get();
  switch (e.kind) {
    case Entry::Kind::kDir:
      if (mkdirat(dir, leaf.c_str(), e.mode) == 0) {
        fchmodat(dir, leaf.c_str(), e.mode, 0);  // past the umask
      }
      return;
    case Entry::Kind::kFile: {
      Fd fd(openat(dir, leaf.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!fd.ok()) return;
      WriteContents(fd.get(), e.data);
      fchmod(fd.get(), e.mode);
      return;
    }
    case Entry::Kind::kSymlink:
      symlinkat(e.data.c_str(), dir, leaf.c_str());
      return;
    case Entry::Kind::kHardlink: {
      std::string existing_leaf;
      Fd existing = OpenParent(root, e.data, &existing_leaf, /*make=*/false);
      if (existing.ok()) linkat(existing.get(), existing_leaf.c_str(), dir, leaf.c_str(), 0);
      return;
    }
    case Entry::Kind::kWhiteout:
      mknodat(dir, leaf.c_str(), S_IFCHR | 0, makedev(0, 0));
      return;
    default:
      return;
  }
}

}  // namespace

std::string StackDirs::Layer(int layer) const {
  return layer == kUpperLayer ? root_ + "/upper" : root_ + "/lower" + std::to_string(layer);
}

std::vector<std::string> StackDirs::Lowers(const StackOptions& options) const {
  std::vector<std::string> lowers;
  for (int i = 1; i <= options.lowers; ++i) lowers.push_back(Layer(i));
  return lowers;
}

std::string OriginRecord(const std::string& path) {
  struct {
    struct file_handle header;
    unsigned char bytes[MAX_HANDLE_SZ];
  } handle{};
  handle.header.handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  if (name_to_handle_at(AT_FDCWD, path.c_str(), &handle.header, &mount_id, 0) != 0) return "";
  if (kOriginHeader + handle.header.handle_bytes > 255) return "";
  const std::array<uint8_t, 16> uuid = FilesystemUuid(path.substr(0, path.rfind('/') + 1));
  std::string record;
  record.push_back(0);                                                              // version
  record.push_back(static_cast<char>(0xfb));                                        // magic
  record.push_back(static_cast<char>(kOriginHeader + handle.header.handle_bytes));  // len
  record.push_back(0);  // flags: little-endian, a lower object
  record.push_back(static_cast<char>(handle.header.handle_type));
  record.append(reinterpret_cast<const char*>(uuid.data()), uuid.size());
  record.append(reinterpret_cast<const char*>(handle.header.f_handle), handle.header.handle_bytes);
  return record;
}

std::string Hex(const std::string& bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

void BuildStack(const CaseSpec& spec, const StackDirs& dirs) {
  mkdir(dirs.root().c_str(), 0755);
  mkdir(dirs.outside().c_str(), 0755);
  {
    Fd secret(open((dirs.outside() + "/secret").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    if (secret.ok()) WriteContents(secret.get(), "outside the layers");
    mkdir((dirs.outside() + "/victim-dir").c_str(), 0755);
    Fd inner(
        open((dirs.outside() + "/victim-dir/keep").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
  }
  for (int i = 1; i <= spec.options.lowers; ++i) mkdir(dirs.Layer(i).c_str(), 0755);
  if (spec.options.upper) {
    mkdir(dirs.Layer(kUpperLayer).c_str(), 0755);
    mkdir(dirs.work().c_str(), 0755);
  }
  auto layer_exists = [&](int layer) {
    return layer >= 1 ? layer <= spec.options.lowers : spec.options.upper;
  };
  // Objects first (hard links name earlier objects), then what is set on
  // them, then what refers to them by file handle.
  for (const Entry& e : spec.entries) {
    if (layer_exists(e.layer)) WriteObject(e, dirs.Layer(e.layer));
  }
  for (const Entry& e : spec.entries) {
    if (!layer_exists(e.layer)) continue;
    const std::string root = dirs.Layer(e.layer);
    if (e.kind == Entry::Kind::kXattr) {
      SetXattr(root, e.path, e.name, e.data);
    } else if (e.kind == Entry::Kind::kOwner) {
      std::string leaf;
      Fd parent = OpenParent(root, e.path, &leaf, /*make=*/false);
      if (parent.ok()) fchownat(parent.get(), leaf.c_str(), e.uid, e.gid, AT_SYMLINK_NOFOLLOW);
    }
  }
  for (const Entry& e : spec.entries) {
    if (e.kind == Entry::Kind::kOrigin && layer_exists(e.layer) && layer_exists(e.ref_layer) &&
        Exists(dirs.Layer(e.layer), e.path)) {
      const std::string ref = dirs.Layer(e.ref_layer) + "/" + e.ref_path;
      if (e.origin != OriginForm::kGarbage && e.origin != OriginForm::kEmpty &&
          e.origin != OriginForm::kOutside && !Exists(dirs.Layer(e.ref_layer), e.ref_path)) {
        continue;
      }
      SetXattr(dirs.Layer(e.layer), e.path, spec.options.PrivatePrefix() + "origin",
               MakeOrigin(e.origin, ref, dirs));
    } else if (e.kind == Entry::Kind::kIndexEntry && layer_exists(e.ref_layer)) {
      WriteIndexEntry(e, spec, dirs);
    }
  }
  for (const Entry& e : spec.entries) {
    if (e.kind != Entry::Kind::kWorkLink || !spec.options.upper) continue;
    const std::string link = dirs.work() + "/" + e.path;
    symlink((dirs.root() + "/" + e.data).c_str(), link.c_str());
  }
}

namespace {

std::vector<std::string> ListNames(int dir) {
  std::vector<std::string> names;
  int copy = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* stream = copy < 0 ? nullptr : fdopendir(copy);
  if (stream == nullptr) {
    if (copy >= 0) close(copy);
    return names;
  }
  while (struct dirent* e = readdir(stream)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(stream);
  std::sort(names.begin(), names.end());
  return names;
}

void TranslateDir(int dir, const std::string& opaque, bool upper, int depth) {
  constexpr std::string_view kPrefix = ".wh.";
  constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
  const std::vector<std::string> names = ListNames(dir);
  const std::set<std::string> present(names.begin(), names.end());
  bool make_opaque = false;
  for (const std::string& name : names) {
    if (name.compare(0, kPrefix.size(), kPrefix) != 0) continue;
    if (unlinkat(dir, name.c_str(), 0) != 0) unlinkat(dir, name.c_str(), AT_REMOVEDIR);
    if (name == kOpaqueMarker) {
      make_opaque = true;
      continue;
    }
    const std::string hidden = name.substr(kPrefix.size());
    if (hidden.empty() || hidden.compare(0, kPrefix.size(), kPrefix) == 0) continue;
    if (!present.contains(hidden)) {
      mknodat(dir, hidden.c_str(), S_IFCHR | 0, makedev(0, 0));
      continue;
    }
    // Beside NAME: NAME hides the layers below (a non-directory does anyway).
    Fd beside(openat(dir, hidden.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (beside.ok()) setxattr(ProcPath(beside.get()).c_str(), opaque.c_str(), "y", 1, 0);
  }
  if (!upper) {
    char value[8];
    ssize_t n = getxattr(ProcPath(dir).c_str(), "user.fuseoverlayfs.opaque", value, sizeof(value));
    if (n == 1 && value[0] == 'y') make_opaque = true;
  }
  if (make_opaque) setxattr(ProcPath(dir).c_str(), opaque.c_str(), "y", 1, 0);
  if (depth > 64) return;
  for (const std::string& name : ListNames(dir)) {
    Fd child(openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (child.ok()) TranslateDir(child.get(), opaque, upper, depth + 1);
  }
}

}  // namespace

void TranslateForKernel(const StackOptions& options, const StackDirs& dirs) {
  std::vector<std::pair<std::string, bool>> layers;  // path, upper
  for (const std::string& lower : dirs.Lowers(options)) layers.emplace_back(lower, false);
  if (options.upper) layers.emplace_back(dirs.Layer(kUpperLayer), true);
  for (const auto& [layer, upper] : layers) {
    Fd root(open(layer.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (root.ok()) TranslateDir(root.get(), options.PrivatePrefix() + "opaque", upper, 0);
  }
}

}  // namespace lamina::difffuzz

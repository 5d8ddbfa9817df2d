#include "core/examples/memory_filesystem.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <time.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_split.h"

namespace lamina::examples {
namespace {

constexpr double kTimeout = 1.0;
// Files live in memory: refuse sizes that would exhaust it (and offsets
// whose end would overflow) instead of throwing from std::string::resize.
constexpr uint64_t kMaxFileSize = uint64_t{1} << 30;

struct timespec Now() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts;
}

void Touch(struct stat& st, bool modify) {
  struct timespec now = Now();
  st.st_ctim = now;
  if (modify) st.st_mtim = now;
}

}  // namespace

MemoryFilesystem::MemoryFilesystem() {
  auto root = std::make_shared<Node>();
  root->attr.st_ino = 1;
  root->attr.st_mode = S_IFDIR | 0755;
  root->attr.st_nlink = 2;
  root->attr.st_uid = getuid();
  root->attr.st_gid = getgid();
  root->attr.st_blksize = 4096;
  root->attr.st_atim = root->attr.st_mtim = root->attr.st_ctim = Now();
  table_.SetRoot(1, root);
}

void MemoryFilesystem::AddFile(const std::string& path, const std::string& contents) {
  std::unique_lock lock(mu_);
  Ctx ctx;
  ctx.uid = getuid();
  ctx.gid = getgid();
  std::shared_ptr<Node> dir = table_.Get(kRootNodeId);
  std::vector<std::string> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
  for (size_t i = 0; i < parts.size(); ++i) {
    bool last = i + 1 == parts.size();
    auto it = dir->children.find(parts[i]);
    if (it == dir->children.end()) {
      auto node = NewNode(ctx, last ? (S_IFREG | 0644) : (S_IFDIR | 0755));
      if (!last) ++dir->attr.st_nlink;
      it = dir->children.emplace(parts[i], node).first;
    }
    if (last) {
      it->second->data = contents;
      it->second->attr.st_size = static_cast<off_t>(contents.size());
    }
    dir = it->second;
  }
}

std::shared_ptr<MemoryFilesystem::Node> MemoryFilesystem::NewNode(const Ctx& ctx, mode_t mode) {
  auto node = std::make_shared<Node>();
  struct stat& st = node->attr;
  st.st_ino = next_ino_++;
  st.st_mode = mode;
  st.st_nlink = S_ISDIR(mode) ? 2 : 1;
  st.st_uid = ctx.uid;
  st.st_gid = ctx.gid;
  st.st_blksize = 4096;
  st.st_atim = st.st_mtim = st.st_ctim = Now();
  return node;
}

std::shared_ptr<MemoryFilesystem::Node> MemoryFilesystem::Dir(NodeId id) const {
  std::shared_ptr<Node> node = table_.Get(id);
  return node != nullptr && S_ISDIR(node->attr.st_mode) ? node : nullptr;
}

Entry MemoryFilesystem::EntryFor(NodeId id, const Node& node) const {
  Entry entry;
  entry.node = id;
  entry.attr = node.attr;
  entry.attr.st_blocks = (node.attr.st_size + 511) / 512;
  entry.entry_timeout = kTimeout;
  entry.attr_timeout = kTimeout;
  return entry;
}

Result<Entry> MemoryFilesystem::Lookup(const Ctx&, NodeId parent, std::string_view name) {
  std::shared_ptr<Node> dir = Dir(parent);
  if (dir == nullptr) return Errno{ENOTDIR};
  std::unique_lock lock(mu_);
  auto it = dir->children.find(name);
  if (it == dir->children.end()) return Errno{ENOENT};
  std::shared_ptr<Node> child = it->second;
  auto handle = table_.Acquire(child->attr.st_ino, [&] { return child; });
  return EntryFor(handle.id, *child);
}

void MemoryFilesystem::Forget(NodeId node, uint64_t nlookup) {
  table_.Forget(node, nlookup);
}

Result<Attributes> MemoryFilesystem::GetAttr(const Ctx&, NodeId id, std::optional<uint64_t>) {
  std::shared_ptr<Node> node = table_.Get(id);
  if (node == nullptr) return Errno{ENOENT};
  std::unique_lock lock(mu_);
  return Attributes{EntryFor(id, *node).attr, kTimeout};
}

Result<Attributes> MemoryFilesystem::SetAttr(const Ctx& ctx, NodeId id, const SetAttrRequest& req) {
  std::shared_ptr<Node> node = table_.Get(id);
  if (node == nullptr) return Errno{ENOENT};
  std::unique_lock lock(mu_);
  struct stat& st = node->attr;
  if (req.Has(abi::kFattrSize)) {
    if (S_ISDIR(st.st_mode)) return Errno{EISDIR};
    if (req.size > kMaxFileSize) return Errno{EFBIG};
    node->data.resize(req.size);
    st.st_size = static_cast<off_t>(req.size);
    Touch(st, true);
  }
  if (req.Has(abi::kFattrMode)) st.st_mode = (st.st_mode & S_IFMT) | (req.mode & 07777);
  if (req.Has(abi::kFattrUid)) st.st_uid = req.uid;
  if (req.Has(abi::kFattrGid)) st.st_gid = req.gid;
  if (req.Has(abi::kFattrKillSuidgid) && ctx.uid != 0) st.st_mode &= ~(S_ISUID | S_ISGID);
  struct timespec now = Now();
  if (req.Has(abi::kFattrAtime)) st.st_atim = req.atime.tv_nsec == UTIME_NOW ? now : req.atime;
  if (req.Has(abi::kFattrMtime)) st.st_mtim = req.mtime.tv_nsec == UTIME_NOW ? now : req.mtime;
  st.st_ctim = now;
  return Attributes{EntryFor(id, *node).attr, kTimeout};
}

Result<std::string> MemoryFilesystem::ReadLink(const Ctx&, NodeId id) {
  std::shared_ptr<Node> node = table_.Get(id);
  if (node == nullptr) return Errno{ENOENT};
  std::unique_lock lock(mu_);
  if (!S_ISLNK(node->attr.st_mode)) return Errno{EINVAL};
  return node->data;
}

Result<struct statvfs> MemoryFilesystem::StatFs(const Ctx&, NodeId) {
  struct statvfs st {};
  st.f_bsize = st.f_frsize = 4096;
  st.f_blocks = st.f_bfree = st.f_bavail = 1 << 20;
  st.f_files = st.f_ffree = 1 << 20;
  st.f_namemax = 255;
  return st;
}

Result<Entry> MemoryFilesystem::Insert(const Ctx&, NodeId parent, std::string_view name,
                                       std::shared_ptr<Node> node) {
  std::shared_ptr<Node> dir = Dir(parent);
  if (dir == nullptr) return Errno{ENOTDIR};
  if (name.size() > 255) return Errno{ENAMETOOLONG};
  if (dir->children.contains(name)) return Errno{EEXIST};
  dir->children.emplace(std::string(name), node);
  if (S_ISDIR(node->attr.st_mode)) ++dir->attr.st_nlink;
  Touch(dir->attr, true);
  auto handle = table_.Acquire(node->attr.st_ino, [&] { return node; });
  return EntryFor(handle.id, *node);
}

Result<Entry> MemoryFilesystem::Mknod(const Ctx& ctx, NodeId parent, std::string_view name,
                                      mode_t mode, dev_t rdev) {
  std::unique_lock lock(mu_);
  auto node = NewNode(ctx, mode & ~ctx.umask);
  node->attr.st_rdev = rdev;
  return Insert(ctx, parent, name, node);
}

Result<Entry> MemoryFilesystem::Mkdir(const Ctx& ctx, NodeId parent, std::string_view name,
                                      mode_t mode) {
  std::unique_lock lock(mu_);
  return Insert(ctx, parent, name, NewNode(ctx, S_IFDIR | (mode & ~ctx.umask & 07777)));
}

Result<Entry> MemoryFilesystem::Symlink(const Ctx& ctx, NodeId parent, std::string_view name,
                                        std::string_view target) {
  std::unique_lock lock(mu_);
  auto node = NewNode(ctx, S_IFLNK | 0777);
  node->data = target;
  node->attr.st_size = static_cast<off_t>(target.size());
  return Insert(ctx, parent, name, node);
}

Result<Entry> MemoryFilesystem::Link(const Ctx& ctx, NodeId id, NodeId new_parent,
                                     std::string_view new_name) {
  std::shared_ptr<Node> node = table_.Get(id);
  if (node == nullptr) return Errno{ENOENT};
  std::unique_lock lock(mu_);
  if (S_ISDIR(node->attr.st_mode)) return Errno{EPERM};
  Result<Entry> entry = Insert(ctx, new_parent, new_name, node);
  if (entry.ok()) {
    ++node->attr.st_nlink;
    Touch(node->attr, false);
    entry->attr.st_nlink = node->attr.st_nlink;
  }
  return entry;
}

Result<void> MemoryFilesystem::Remove(NodeId parent, std::string_view name, bool directory) {
  std::shared_ptr<Node> dir = Dir(parent);
  if (dir == nullptr) return Errno{ENOTDIR};
  std::unique_lock lock(mu_);
  auto it = dir->children.find(name);
  if (it == dir->children.end()) return Errno{ENOENT};
  Node& child = *it->second;
  if (directory) {
    if (!S_ISDIR(child.attr.st_mode)) return Errno{ENOTDIR};
    if (!child.children.empty()) return Errno{ENOTEMPTY};
    --dir->attr.st_nlink;
    child.attr.st_nlink = 0;
  } else {
    if (S_ISDIR(child.attr.st_mode)) return Errno{EISDIR};
    --child.attr.st_nlink;
  }
  Touch(child.attr, false);
  Touch(dir->attr, true);
  dir->children.erase(it);  // open files keep the node alive through the table
  return Ok();
}

Result<void> MemoryFilesystem::Unlink(const Ctx&, NodeId parent, std::string_view name) {
  return Remove(parent, name, /*directory=*/false);
}

Result<void> MemoryFilesystem::Rmdir(const Ctx&, NodeId parent, std::string_view name) {
  return Remove(parent, name, /*directory=*/true);
}

Result<void> MemoryFilesystem::Rename(const Ctx&, NodeId parent, std::string_view name,
                                      NodeId new_parent, std::string_view new_name,
                                      uint32_t flags) {
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0) return Errno{EINVAL};
  std::shared_ptr<Node> from_dir = Dir(parent);
  std::shared_ptr<Node> to_dir = Dir(new_parent);
  if (from_dir == nullptr || to_dir == nullptr) return Errno{ENOTDIR};
  std::unique_lock lock(mu_);
  auto from = from_dir->children.find(name);
  if (from == from_dir->children.end()) return Errno{ENOENT};
  std::shared_ptr<Node> moving = from->second;
  auto to = to_dir->children.find(new_name);
  if ((flags & RENAME_EXCHANGE) != 0) {
    if (to == to_dir->children.end()) return Errno{ENOENT};
    std::swap(from->second, to->second);
    return Ok();
  }
  if (to != to_dir->children.end()) {
    if ((flags & RENAME_NOREPLACE) != 0) return Errno{EEXIST};
    if (to->second == moving) return Ok();
    Node& victim = *to->second;
    if (S_ISDIR(victim.attr.st_mode)) {
      if (!S_ISDIR(moving->attr.st_mode)) return Errno{EISDIR};
      if (!victim.children.empty()) return Errno{ENOTEMPTY};
      --to_dir->attr.st_nlink;
    } else if (S_ISDIR(moving->attr.st_mode)) {
      return Errno{ENOTDIR};
    }
    --victim.attr.st_nlink;
    to_dir->children.erase(to);
  }
  from_dir->children.erase(from);
  to_dir->children.emplace(std::string(new_name), moving);
  if (S_ISDIR(moving->attr.st_mode) && from_dir != to_dir) {
    --from_dir->attr.st_nlink;
    ++to_dir->attr.st_nlink;
  }
  Touch(from_dir->attr, true);
  Touch(to_dir->attr, true);
  Touch(moving->attr, false);
  return Ok();
}

Result<CreateReply> MemoryFilesystem::Create(const Ctx& ctx, NodeId parent, std::string_view name,
                                             mode_t mode, const OpenRequest&) {
  std::unique_lock lock(mu_);
  Result<Entry> entry =
      Insert(ctx, parent, name, NewNode(ctx, S_IFREG | (mode & ~ctx.umask & 07777)));
  if (!entry.ok()) return Errno{entry.error()};
  return CreateReply{*entry, OpenReply{}};
}

Result<OpenReply> MemoryFilesystem::Open(const Ctx&, NodeId id, const OpenRequest& req) {
  std::shared_ptr<Node> node = table_.Get(id);
  if (node == nullptr) return Errno{ENOENT};
  std::unique_lock lock(mu_);
  if ((req.flags & O_TRUNC) != 0) {
    node->data.clear();
    node->attr.st_size = 0;
    Touch(node->attr, true);
  }
  return OpenReply{};
}

Result<size_t> MemoryFilesystem::Read(const Ctx&, NodeId id, uint64_t, uint64_t offset,
                                      std::span<std::byte> out) {
  std::shared_ptr<Node> node = table_.Get(id);
  if (node == nullptr) return Errno{ENOENT};
  std::unique_lock lock(mu_);
  if (offset >= node->data.size()) return size_t{0};
  size_t n = std::min(out.size(), node->data.size() - offset);
  std::memcpy(out.data(), node->data.data() + offset, n);
  return n;
}

Result<size_t> MemoryFilesystem::Write(const Ctx& ctx, NodeId id, const WriteRequest& req) {
  std::shared_ptr<Node> node = table_.Get(id);
  if (node == nullptr) return Errno{ENOENT};
  std::unique_lock lock(mu_);
  uint64_t offset = (req.flags & O_APPEND) != 0 ? node->data.size() : req.offset;
  if (offset > kMaxFileSize || req.data.size() > kMaxFileSize - offset) return Errno{EFBIG};
  if (offset + req.data.size() > node->data.size()) node->data.resize(offset + req.data.size());
  std::memcpy(node->data.data() + offset, req.data.data(), req.data.size());
  node->attr.st_size = static_cast<off_t>(node->data.size());
  if (req.kill_suidgid && ctx.uid != 0) node->attr.st_mode &= ~(S_ISUID | S_ISGID);
  Touch(node->attr, true);
  return req.data.size();
}

Result<OpenReply> MemoryFilesystem::OpenDir(const Ctx&, NodeId id, int) {
  if (Dir(id) == nullptr) return Errno{ENOTDIR};
  return OpenReply{};
}

Result<void> MemoryFilesystem::ReadDir(const Ctx&, NodeId id, uint64_t, uint64_t offset,
                                       DirentWriter& out) {
  std::shared_ptr<Node> dir = Dir(id);
  if (dir == nullptr) return Errno{ENOTDIR};
  std::unique_lock lock(mu_);
  // Offsets: 1 = after ".", 2 = after "..", 2 + i = after the i-th child.
  if (offset < 1 && !out.Add(".", dir->attr.st_ino, DT_DIR, 1)) return Ok();
  if (offset < 2 && !out.Add("..", 1, DT_DIR, 2)) return Ok();
  uint64_t index = 0;
  for (const auto& [name, child] : dir->children) {
    ++index;
    if (index + 2 <= offset) continue;
    if (!out.plus()) {
      if (!out.Add(name, child->attr.st_ino, (child->attr.st_mode & S_IFMT) >> 12, index + 2)) {
        break;
      }
      continue;
    }
    if (!out.Fits(name)) break;
    // An init-capture: clang before 16 cannot capture structured bindings.
    auto handle = table_.Acquire(child->attr.st_ino, [node = child] { return node; });
    out.AddPlus(name, EntryFor(handle.id, *child), index + 2);
  }
  return Ok();
}

}  // namespace lamina::examples

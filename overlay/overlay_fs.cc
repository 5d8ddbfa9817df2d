// OverlayFs: setup, lookup and attributes.

#include "overlay/overlay_fs.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "core/backing_registry.h"
#include "core/connection.h"
#include "core/node_shedder.h"
#include "core/resource_limits.h"
#include "overlay/index.h"
#include "passthrough/credentials.h"

namespace lamina {

using overlay::DirMarks;
using overlay::LowerRef;
using overlay::Node;
using overlay::NodeKey;

void OverlayFs::Resolved::Release() {
  if (upper_fd >= 0) close(upper_fd);
  for (const LowerRef& lower : lowers) {
    if (lower.fd >= 0) close(lower.fd);
  }
  upper_fd = -1;
  lowers.clear();
}

absl::StatusOr<std::unique_ptr<OverlayFs>> OverlayFs::Create(OverlayOptions options) {
  absl::StatusOr<overlay::LayerStack> layers = overlay::LayerStack::Open(options.layers);
  if (!layers.ok()) return layers.status();
  overlay::RemoveOrphanIndexEntries(*layers);
  const rlim_t file_limit = RaiseDescriptorLimit();
  const size_t descriptor_limit = options.max_descriptors.value_or(
      DefaultNodeDescriptorLimit(file_limit, kMaxNodeDescriptorsCap));
  std::unique_ptr<OverlayFs> fs(
      new OverlayFs(std::move(options), std::move(*layers), descriptor_limit));

  // The root merges the roots of every layer (an opaque upper root hides
  // nothing: the kernel ignores opaque on the root too).
  const overlay::LayerStack& stack = fs->layers_;
  Resolved root;
  for (const overlay::Layer& layer : stack.layers()) {
    int fd = fcntl(layer.fd, F_DUPFD_CLOEXEC, 0);
    if (layer.upper) {
      root.upper_fd = fd;
    } else {
      root.lowers.push_back(LowerRef{layer.index, fd, overlay::ReadDirMarks(stack, fd)});
    }
  }
  int top = root.upper_fd >= 0 ? root.upper_fd : root.lowers.front().fd;
  fstat(top, &root.top);
  const struct stat& identity_stat = root.top;
  auto node = std::make_shared<Node>(S_IFDIR, stack.Fold(identity_stat.st_ino));
  {
    std::unique_lock lock(node->mu);
    node->upper_fd = root.upper_fd;
  }
  node->lowers = std::move(root.lowers);
  node->CountDescriptorsIn(&fs->held_descriptors_);
  fs->table_.SetRoot(NodeKey{identity_stat.st_dev, identity_stat.st_ino}, node);
  return fs;
}

OverlayFs::OverlayFs(OverlayOptions options, overlay::LayerStack layers, size_t descriptor_limit)
    : options_(std::move(options)),
      layers_(std::move(layers)),
      shedder_(descriptor_limit,
               [this](size_t descriptors) { return PickNodesToShed(descriptors); }),
      cached_nodes_(options_.max_cached_nodes,
                    [this](size_t count) { return table_.LeastRecentlyUsed(count); }) {}

Gauges OverlayFs::GetGauges() const {
  return {{"nodes", node_count()},
          {"node_descriptors", held_descriptors()},
          {"descriptor_limit", max_descriptors()},
          {"nodes_offered", nodes_offered()},
          {"nodes_parked", nodes_parked()}};
}

std::vector<NodeId> OverlayFs::PickNodesToShed(size_t descriptors) {
  // Nodes hold one descriptor (a lower file), two (a copied-up file),
  // several (a merged directory) or none (parked, skipped: the kernel
  // could give back nothing either), so `descriptors` nodes are enough.
  const size_t before = held_descriptors();
  auto enough = [&] { return before - std::min(before, held_descriptors()) >= descriptors; };
  std::vector<NodeId> offer;
  absl::flat_hash_set<const Node*> dirs;  // offered directories
  auto holding = [](const Node& node) { return !node.parked.load(std::memory_order_relaxed); };
  for (NodeId id : table_.LeastRecentlyUsed(std::max<size_t>(descriptors, 1), holding)) {
    if (enough()) break;
    if (Park(id)) continue;
    NodePtr node = table_.Get(id);
    if (node == nullptr || node->parked.load(std::memory_order_relaxed)) continue;
    offer.push_back(id);
    if (node->is_dir()) dirs.insert(node.get());
  }
  if (enough() || dirs.empty()) return offer;
  // Short, because directories (and open files) took much of the least
  // recently used: park files further down the order first.
  auto parkable = [](const Node& node) {
    return !node.is_dir() && !node.parked.load(std::memory_order_relaxed);
  };
  for (NodeId id : table_.LeastRecentlyUsed(4 * descriptors, parkable)) {
    if (enough()) break;
    Park(id);
  }
  if (enough()) return offer;
  // Still short: directories hold most of the descriptors. The kernel
  // keeps a directory while it caches any entry of it, and parked files,
  // holding no descriptor, are offered by nothing else: with more
  // directories than the limit (an untar of a large tree), no directory
  // could ever go. So the offered directories' parked entries are offered
  // too, ahead of them, which lets the kernel drop both at once. (Not
  // sooner: a parked file the kernel forgets costs a lookup when used
  // again.)
  auto parked_entry = [&dirs](const Node& node) {
    if (!node.parked.load(std::memory_order_relaxed)) return false;
    std::shared_lock lock(node.mu, std::try_to_lock);  // never waits under the table's lock
    return lock.owns_lock() && dirs.contains(node.parent.get());
  };
  std::vector<NodeId> entries = table_.LeastRecentlyUsed(table_.size(), parked_entry);
  entries.insert(entries.end(), offer.begin(), offer.end());
  return entries;
}

OverlayFs::NodePtr OverlayFs::Get(NodeId id) const {
  NodePtr node = table_.Get(id);
  if (node != nullptr && node->parked.load(std::memory_order_acquire) && !Unpark(*node).ok()) {
    return nullptr;
  }
  return node;
}

void OverlayFs::Init(InitConfig& config) {
  if (options_.max_write != 0) config.max_write = options_.max_write;
  // Locks stay in the kernel (per mount), as with kernel overlayfs.
  if (options_.passthrough != PassthroughMode::kOff && config.KernelOffers(abi::kPassthrough)) {
    config.want |= abi::kPassthrough;
    config.max_stack_depth = 1;
  }
  if (options_.posix_acl && config.KernelOffers(abi::kPosixAcl | abi::kDontMask)) {
    config.want |= abi::kPosixAcl | abi::kDontMask;
  }
}

void OverlayFs::Connected(Connection& connection) {
  connection_ = &connection;
  if (connection.Has(abi::kPassthrough) && connection.backing() != nullptr) {
    backing_ = connection.backing();
  }
  shedder_.Connected(connection);
  cached_nodes_.Connected(connection);
}

Result<OverlayFs::NodePtr> OverlayFs::Dir(NodeId id) const {
  NodePtr node = table_.Get(id);
  if (node == nullptr) return Errno{ENOENT};
  if (!node->is_dir()) return Errno{ENOTDIR};
  return node;
}

void OverlayFs::UseCallerUmask(const Ctx& ctx) const {
  // With FUSE_DONT_MASK the caller's umask reaches us unapplied; the upper
  // filesystem applies it, unless the parent has a default ACL.
  const bool ours = connection_ != nullptr && connection_->Has(abi::kDontMask);
  passthrough::UseUmaskOnThisThread(ours ? ctx.umask : 0);
}

Result<void> OverlayFs::RequireUpper() const {
  if (!layers_.has_upper()) return Errno{EROFS};
  return Ok();
}

namespace {

// Where a name may exist in one lower layer: a directory of that layer and
// the name in it.
struct Candidate {
  int layer;
  int dir_fd;
  std::string name;
  DirMarks marks;  // of dir_fd
  bool owned;      // dir_fd was opened for this candidate
};

}  // namespace

Result<OverlayFs::Resolved> OverlayFs::Resolve(const Node& dir, std::string_view name,
                                               bool* upper_whiteout, int first_layer) const {
  if (overlay::IsHiddenName(name)) return Errno{ENOENT};
  Resolved r;
  bool found = false;
  int dir_upper;
  DirMarks dir_upper_marks;
  {
    std::shared_lock lock(dir.mu);
    dir_upper = dir.upper_fd;
    dir_upper_marks = dir.upper_marks;
    r.lower_path = dir.dir->lower_path + "/" + std::string(name);
  }
  std::string redirect;
  if (dir_upper >= 0 && first_layer == 0) {
    std::optional<struct stat> st = overlay::StatAt(dir_upper, name);
    if (st) {
      if (overlay::IsWhiteout(layers_, dir_upper, name, *st, dir_upper_marks)) {
        if (upper_whiteout != nullptr) *upper_whiteout = true;
        return Errno{ENOENT};
      }
      Result<int> fd = overlay::OpenPathAt(dir_upper, name);
      if (!fd.ok()) return Errno{fd.error()};
      r.upper_fd = *fd;
      r.type = st->st_mode & S_IFMT;
      r.top = *st;
      found = true;
      if (S_ISDIR(r.type)) {
        r.upper_marks = overlay::ReadDirMarks(layers_, r.upper_fd);
        if (r.upper_marks.opaque) return r;
        Result<std::string> recorded = r.upper_marks.redirected
                                           ? overlay::ReadRedirect(layers_, r.upper_fd)
                                           : Result<std::string>(std::string());
        if (!recorded.ok()) {
          r.Release();
          return Errno{recorded.error()};
        }
        redirect = *recorded;
      }
    } else if (!dir.lowers.empty() && overlay::HasOciWhiteout(dir_upper, name)) {
      // (Without merged lowers there is nothing for such a marker to hide:
      // a new directory's lookups of new names cost one stat.)
      return Errno{ENOENT};
    }
  }

  // Where to look below: the same name in each merged lower directory or,
  // once a directory on the way says it was renamed (overlay.redirect), the
  // path it came from: a name in the same parent, or a path from the roots.
  // Only the upper's record moves lower_path, the path that a rename
  // records: a redirect written in the upper is read in the layer right
  // below it, and that layer's own record takes over from there.
  auto follow = [&](const std::string& to, bool in_upper) {
    if (to.empty()) return;
    if (in_upper) {
      if (to[0] == '/') {
        r.lower_path = to;
      } else {
        std::shared_lock lock(dir.mu);
        r.lower_path = dir.dir->lower_path + "/" + to;
      }
    }
    redirect = to;
  };
  follow(redirect, /*in_upper=*/true);
  Result<void> status = Ok();
  int last_layer = found ? 0 : -1;
  for (const overlay::Layer& layer : layers_.layers()) {
    if (layer.upper || layer.index <= last_layer || layer.index < first_layer) continue;
    Candidate c{layer.index, -1, redirect.empty() ? std::string(name) : redirect, {}, false};
    if (redirect.empty() || redirect[0] != '/') {
      auto merged = std::find_if(dir.lowers.begin(), dir.lowers.end(),
                                 [&](const LowerRef& l) { return l.layer == layer.index; });
      if (merged == dir.lowers.end()) continue;
      if (!redirect.empty() && !options_.redirect_follow) {
        status = Errno{EPERM};
        break;
      }
      c.dir_fd = merged->fd;
      c.marks = merged->marks;
    } else {
      if (!options_.redirect_follow) {
        status = Errno{EPERM};
        break;
      }
      size_t slash = redirect.rfind('/');
      std::string below;
      std::optional<int> fd =
          overlay::OpenLayerPath(layer.fd, redirect.substr(0, slash), &layers_, &below);
      if (!fd) continue;
      c = Candidate{layer.index, *fd, redirect.substr(slash + 1),
                    overlay::ReadDirMarks(layers_, *fd), true};
      // A directory on the way renamed in this layer moves the path for
      // the layers below (the object's own record, if any, overrides it).
      redirect = below + "/" + c.name;
    }
    // Closes a descriptor opened just for this candidate.
    auto done = [&c] {
      if (c.owned) close(c.dir_fd);
    };
    std::optional<struct stat> st = overlay::StatAt(c.dir_fd, c.name);
    if (!st) {
      bool hidden = overlay::HasOciWhiteout(c.dir_fd, c.name);
      done();
      if (hidden) break;
      continue;
    }
    bool whiteout = overlay::IsWhiteout(layers_, c.dir_fd, c.name, *st, c.marks);
    mode_t type = st->st_mode & S_IFMT;
    bool merge = !found || (S_ISDIR(r.type) && S_ISDIR(type));
    bool origin = found && !S_ISDIR(r.type) && type == r.type;
    Result<int> fd = (whiteout || (!merge && !origin)) ? Result<int>(Errno{ENOENT})
                                                       : overlay::OpenPathAt(c.dir_fd, c.name);
    done();
    if (whiteout || (!merge && !origin)) break;
    if (!fd.ok()) {
      status = Errno{fd.error()};
      break;
    }
    if (origin) {
      // An upper non-directory continues a lower one only if it was copied
      // up from it; a file created over a whiteout is a new object.
      if (overlay::HasOrigin(layers_, r.upper_fd, *fd)) {
        r.lowers.push_back(LowerRef{c.layer, *fd, {}});
      } else {
        close(*fd);
      }
      break;
    }
    LowerRef ref{c.layer, *fd, {}};
    if (S_ISDIR(type)) ref.marks = overlay::ReadDirMarks(layers_, *fd);
    r.lowers.push_back(ref);
    last_layer = c.layer;
    if (!found) {
      r.type = type;
      r.top = *st;
      found = true;
    }
    if (!S_ISDIR(type) || ref.marks.opaque) break;
    // A lower layer's own rename record redirects the layers beneath it.
    Result<std::string> recorded = ref.marks.redirected ? overlay::ReadRedirect(layers_, *fd)
                                                        : Result<std::string>(std::string());
    if (!recorded.ok()) {
      status = Errno{recorded.error()};
      break;
    }
    follow(*recorded, /*in_upper=*/false);
  }
  if (!status.ok()) {
    r.Release();
    return Errno{status.error()};
  }
  if (!found) return Errno{ENOENT};
  if (r.upper_fd < 0 && !r.lowers.empty()) {
    r.lower_nlink = r.top.st_nlink;
    if (S_ISREG(r.type) && r.lower_nlink > 1) {
      // Another name of this lower hard link may have been copied up: then
      // its index entry is the upper object (the kernel's index=on).
      const LowerRef& lower = r.lowers.front();
      if (auto fd = overlay::OpenIndexEntry(layers_, layers_.layer(lower.layer), lower.fd)) {
        struct stat st;
        if (fstat(*fd, &st) == 0) {
          r.upper_fd = *fd;
          r.upper_from_index = true;
          r.top = st;
        } else {
          close(*fd);
        }
      }
    }
  }
  if (r.upper_fd >= 0 && !S_ISDIR(r.type) && r.lowers.empty()) {
    // Copied up under another name (a hard link) or before a rename: the
    // origin record still leads to the object whose identity it keeps.
    if (auto origin = overlay::DecodeOrigin(layers_, r.upper_fd)) {
      r.lowers.push_back(LowerRef{origin->second, origin->first, {}});
    }
  }
  return r;
}

nlink_t OverlayFs::ViewNlink(const Node& node, int upper_fd, nlink_t top_nlink) const {
  if (upper_fd < 0 || !UsesIndex(node)) return top_nlink;
  return overlay::ViewNlink(layers_, upper_fd, top_nlink, node.lower_nlink);
}

Entry OverlayFs::MakeEntry(NodeId id, const Node& node, const struct stat& st) const {
  Entry entry;
  entry.node = id;
  entry.attr = st;
  entry.attr.st_ino = node.ino;
  entry.attr.st_nlink = ViewNlink(node, node.UpperFd(), st.st_nlink);
  ToView(entry.attr);
  entry.entry_timeout = options_.entry_timeout;
  entry.attr_timeout = options_.attr_timeout;
  return entry;
}

Result<Entry> OverlayFs::Adopt(const NodePtr& parent, std::string_view name, Resolved r,
                               bool created) {
  // Identity: the topmost lower object if any, else the upper one.
  bool from_lower = !r.lowers.empty();
  int identity_fd = from_lower ? r.lowers.front().fd : r.upper_fd;
  int identity_layer = from_lower ? r.lowers.front().layer : 0;
  // The identity's stat is the resolution's own when the identity is the
  // topmost object (no lower object, or no upper one).
  struct stat identity = r.top;
  if (from_lower && r.upper_fd >= 0 &&
      fstatat(identity_fd, "", &identity, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
    r.Release();
    return LastErrno();
  }
  NodeKey key{identity.st_dev, identity.st_ino};
  shedder_.MakeRoom([this] { return held_descriptors(); });
  bool adopted = false;
  auto make = [&] {
    auto node =
        std::make_shared<Node>(r.type, layers_.MergedInode(identity_layer, identity.st_ino));
    {
      std::unique_lock lock(node->mu);
      node->upper_fd = r.upper_fd;
      node->upper_marks = r.upper_marks;
      node->parent = parent;
      node->name = std::string(name);
      if (node->dir != nullptr) node->dir->lower_path = r.lower_path;
    }
    node->lowers = std::move(r.lowers);
    if (from_lower && !S_ISDIR(r.type)) node->lower_nlink = identity.st_nlink;
    // Born parked: its lower object is opened by name on first use.
    if (r.unopened) node->parked.store(true, std::memory_order_relaxed);
    node->CountDescriptorsIn(&held_descriptors_);
    adopted = true;
    return node;
  };
  auto handle = table_.Acquire(key, make);
  if (!adopted && handle.node->type != (r.type & S_IFMT)) {
    // The key's inode number now belongs to another object: the node's was
    // deleted behind the mount's back while parked (removals through the
    // mount keep it, see KeepIfKnown), and the kernel has not forgotten the
    // node yet. The new object gets a node of its own.
    table_.Unmap(key, handle.id);
    Forget(handle.id, 1);
    handle = table_.Acquire(key, make);
  }
  if (adopted) {
    shedder_.Added(held_descriptors());
    cached_nodes_.Added(table_.size());
    const int upper = handle.node->UpperFd();
    if (!created && upper >= 0 && (S_ISREG(r.type) || S_ISDIR(r.type))) {
      EnforceProtection(upper, r.type);
    }
  } else {
    // A known object: keep its descriptors, but follow it to this name
    // (by which a parked node reopens them: it resolved just now; an
    // unopened resolution opened nothing to check, so it stays parked).
    if (handle.node->parked.load(std::memory_order_acquire) && !r.unopened) {
      {
        std::unique_lock lock(handle.node->mu);
        handle.node->parent = parent;
        handle.node->name = std::string(name);
      }
      Result<void> back = Unpark(*handle.node);
      if (!back.ok()) {
        r.Release();
        table_.Forget(handle.id, 1);
        return Errno{back.error()};
      }
    }
    {
      std::unique_lock lock(handle.node->mu);
      if (handle.node->upper_fd < 0 && r.upper_fd >= 0) {
        // Copied up by someone else (another name of a hard link).
        handle.node->SetUpperFd(r.upper_fd);
        r.upper_fd = -1;
      }
      handle.node->parent = parent;
      handle.node->name = std::string(name);
      // A lower name of an object copied up under another name: the
      // attributes are the upper object's.
      if (handle.node->upper_fd >= 0 && r.upper_fd < 0 && !handle.node->is_dir()) {
        fstatat(handle.node->upper_fd, "", &r.top, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
      }
    }
    r.Release();
  }
  return MakeEntry(handle.id, *handle.node, r.top);
}

Result<Entry> OverlayFs::Lookup(const Ctx&, NodeId parent, std::string_view name) {
  // FUSE passes names up to 1024 bytes; no layer can hold one past NAME_MAX.
  if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
  Result<NodePtr> dir = Dir(parent);
  if (!dir.ok()) return Errno{dir.error()};
  bool over_whiteout = false;
  Result<Resolved> r = Resolve(**dir, name, &over_whiteout);
  if (!r.ok()) {
    // Out of descriptors: have the kernel forget nodes so that later
    // lookups succeed again.
    if (r.error() == EMFILE || r.error() == ENFILE) shedder_.OutOfDescriptors(held_descriptors());
    if (r.error() == ENOENT) (*dir)->RememberAbsent(name, over_whiteout);
    if (r.error() == ENOENT && options_.negative_timeout > 0) {
      Entry negative;
      negative.entry_timeout = options_.negative_timeout;
      return negative;
    }
    return Errno{r.error()};
  }
  return Adopt(*dir, name, std::move(*r));
}

void OverlayFs::Forget(NodeId node, uint64_t nlookup) {
  if (table_.Forget(node, nlookup) != nullptr) {
    shedder_.Forgotten();
    cached_nodes_.Forgotten();
  }
}

Result<Attributes> OverlayFs::AttributesOf(const Node& node) const {
  struct stat st;
  const int upper = node.UpperFd();
  if (fstatat(upper >= 0 ? upper : node.TopFd(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) !=
      0) {
    return LastErrno();
  }
  st.st_ino = node.ino;
  st.st_nlink = ViewNlink(node, upper, st.st_nlink);
  ToView(st);
  return Attributes{st, options_.attr_timeout};
}

Result<Attributes> OverlayFs::GetAttr(const Ctx&, NodeId id, std::optional<uint64_t>) {
  NodePtr node = Get(id);
  if (node == nullptr) return Errno{ENOENT};
  return AttributesOf(*node);
}

Result<StatxAttributes> OverlayFs::Statx(const Ctx&, NodeId id, std::optional<uint64_t>,
                                         uint32_t flags, uint32_t mask) {
  NodePtr node = Get(id);
  if (node == nullptr) return Errno{ENOENT};
  StatxAttributes out;
  int sync = static_cast<int>(flags & AT_STATX_SYNC_TYPE);
  const int upper = node->UpperFd();
  if (statx(upper >= 0 ? upper : node->TopFd(), "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | sync,
            mask, &out.attr) != 0) {
    return LastErrno();
  }
  out.attr.stx_ino = node->ino;
  out.attr.stx_nlink = static_cast<uint32_t>(ViewNlink(*node, upper, out.attr.stx_nlink));
  ToView(out.attr);
  out.timeout = options_.attr_timeout;
  return out;
}

Result<std::string> OverlayFs::ReadLink(const Ctx&, NodeId id) {
  NodePtr node = Get(id);
  if (node == nullptr) return Errno{ENOENT};
  char target[PATH_MAX];
  ssize_t n = readlinkat(node->TopFd(), "", target, sizeof(target));
  if (n < 0) return LastErrno();
  return std::string(target, static_cast<size_t>(n));
}

Result<struct statvfs> OverlayFs::StatFs(const Ctx&, NodeId) {
  // Like the kernel: the upper filesystem's numbers (or the top lower's).
  struct statvfs st;
  if (fstatvfs(layers_.layers().front().fd, &st) != 0) return LastErrno();
  return st;
}

}  // namespace lamina

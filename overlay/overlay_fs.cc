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
#include "overlay/layer_lookup.h"
#include "overlay/layer_warnings.h"
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
  const rlim_t file_limit = options.descriptor_limit ? SetDescriptorLimit(*options.descriptor_limit)
                                                     : RaiseDescriptorLimit();
  const DescriptorPlan plan =
      DescriptorPlan::For(file_limit, options.max_descriptors, kMaxNodeDescriptorsCap);
  std::unique_ptr<OverlayFs> fs(new OverlayFs(std::move(options), std::move(*layers), plan));

  // The root merges the roots of every layer. No lookup reaches a layer's
  // root, so the kernel reads no opaque mark or redirect there (an opaque
  // root hides nothing); its "x" still says how to list it.
  const overlay::LayerStack& stack = fs->layers_;
  Resolved root;
  DirMarks root_upper_marks;
  for (const overlay::Layer& layer : stack.layers()) {
    int fd = fcntl(layer.fd, F_DUPFD_CLOEXEC, 0);
    DirMarks marks = overlay::ReadDirMarks(stack, fd, layer.upper);
    marks.opaque = marks.redirected = false;
    if (layer.upper) {
      root.upper_fd = fd;
      root_upper_marks = marks;
    } else {
      root.lowers.push_back(LowerRef{layer.index, fd, marks});
    }
  }
  int top = root.upper_fd >= 0 ? root.upper_fd : root.lowers.front().fd;
  fstat(top, &root.top);
  const struct stat& identity_stat = root.top;
  auto node = std::make_shared<Node>(S_IFDIR, stack.Fold(identity_stat.st_ino));
  {
    std::unique_lock lock(node->mu);
    node->upper_fd = root.upper_fd;
    node->upper_marks = root_upper_marks;
  }
  node->lowers = std::move(root.lowers);
  node->CountDescriptorsIn(&fs->held_descriptors_);
  fs->table_.SetRoot(NodeKey{identity_stat.st_dev, identity_stat.st_ino}, node);
  return fs;
}

OverlayFs::OverlayFs(OverlayOptions options, overlay::LayerStack layers, const DescriptorPlan& plan)
    : options_(std::move(options)),
      layers_(std::move(layers)),
      layer_lookup_(layers_, options_.redirect_follow),
      budget_(plan, geteuid()),
      listings_(options_.listing_memory, geteuid()),
      shedder_(plan.nodes, [this](size_t descriptors) { return PickNodesToShed(descriptors); }),
      cached_nodes_(options_.max_cached_nodes,
                    [this](size_t count) { return table_.LeastRecentlyUsed(count); }) {}

Gauges OverlayFs::GetGauges() const {
  return {{"nodes", node_count()},
          {"node_descriptors", held_descriptors()},
          {"descriptor_limit", max_descriptors()},
          {"nodes_offered", nodes_offered()},
          {"nodes_parked", nodes_parked()},
          {"open_descriptors", budget_.handles_used()},
          {"open_nodes", budget_.pins_used()},
          {"opens_refused", budget_.refusals()},
          {"listing_bytes", listings_.used()},
          {"listing_bytes_cached", listings_.cached()},
          {"listings_refused", listings_.refusals()}};
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

Result<OverlayFs::Resolved> OverlayFs::Resolve(const Node& dir, std::string_view name,
                                               bool* upper_whiteout, int first_layer) const {
  if (overlay::IsHiddenName(name)) return Errno{ENOENT};
  overlay::ParentDir parent;
  {
    std::shared_lock lock(dir.mu);
    parent.upper_fd = dir.upper_fd;
  }
  parent.lowers = &dir.lowers;
  Result<overlay::LayerObjects> found =
      layer_lookup_.Find(parent, name, upper_whiteout, first_layer);
  if (!found.ok()) return Errno{found.error()};
  Resolved r;
  r.upper_fd = found->upper_fd;
  r.upper_marks = found->upper_marks;
  r.upper_redirect = std::move(found->upper_redirect);
  r.lowers = std::move(found->lowers);
  r.type = found->type;
  r.top = found->top;
  if (r.upper_fd >= 0 && !S_ISDIR(r.type)) {
    // An upper non-directory continues a lower one only if its origin
    // record names it (a file created over a whiteout is a new object):
    // first the same name below, which needs no handle decoding, then
    // wherever the handle leads (hard links, renames).
    for (const LowerRef& lower : dir.lowers) {
      std::optional<struct stat> st = overlay::StatAt(lower.fd, name);
      if (!st) {
        if (overlay::HasOciWhiteout(lower.fd, name)) break;
        continue;
      }
      if ((st->st_mode & S_IFMT) != r.type || overlay::IsWhiteout(layers_, lower.fd, name, *st)) {
        break;
      }
      Result<int> fd = overlay::OpenPathAt(lower.fd, name);
      if (fd.ok() && overlay::HasOrigin(layers_, r.upper_fd, *fd)) {
        r.lowers.push_back(LowerRef{lower.layer, *fd, {}});
      } else if (fd.ok()) {
        close(*fd);
      }
      break;
    }
    if (r.lowers.empty()) {
      if (auto origin = overlay::DecodeOrigin(layers_, r.upper_fd, r.type)) {
        r.lowers.push_back(LowerRef{origin->second, origin->first, {}});
      }
    }
  }
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
  return r;
}

nlink_t OverlayFs::ViewNlink(const Node& node, int upper_fd, nlink_t top_nlink) const {
  // A merged directory (an upper one over lower ones, or several lower
  // ones) reports one link, as the kernel's does (ovl_getattr): the top
  // layer's count leaves out the subdirectories of the others, and find(1)
  // would skip them trusting it, where 1 tells it not to count.
  if (S_ISDIR(node.type)) {
    const size_t layers = node.lowers.size() + (upper_fd >= 0 ? 1 : 0);
    return layers > 1 ? 1 : top_nlink;
  }
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
      if (node->dir != nullptr) node->dir->redirect = r.upper_redirect;
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
  } else if (handle.node->is_dir() && !SameDirectory(*handle.node, *parent, name, r)) {
    // One lower directory under two names whose upper directories differ
    // (a redirect to a directory that also shows under its own name, after
    // one name was copied up): the kernel calls the lookup stale rather
    // than show one name's upper directory under the other.
    overlay::WarnAboutLayer("a lower directory shows under two names; \"%s\" is stale",
                            overlay::Printable(name));
    r.Release();
    table_.Forget(handle.id, 1);
    return Errno{ESTALE};
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

bool OverlayFs::SameDirectory(const Node& node, const Node& parent, std::string_view name,
                              const Resolved& r) const {
  const int node_upper = node.UpperFd();
  auto same = [](int a, int b) {
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
  };
  if (node_upper < 0) return r.upper_fd < 0;  // (a copy-up sets it before its lock is let go)
  if (r.upper_fd >= 0) return same(node_upper, r.upper_fd);
  // Copied up since the resolution looked: the name leads to the node's
  // upper directory now.
  const int parent_upper = parent.UpperFd();
  if (parent_upper < 0) return false;
  Result<int> now = overlay::OpenPathAt(parent_upper, name);
  if (!now.ok()) return false;
  const bool moved_up = same(node_upper, *now);
  close(*now);
  return moved_up;
}

Result<Entry> OverlayFs::Lookup(const Ctx&, NodeId parent, std::string_view name) {
  // FUSE passes names up to 1024 bytes; no layer can hold one past NAME_MAX.
  if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
  // The kernel never asks for them (no NFS export); refused, so that ".."
  // of a layer root can never lead out of the layers.
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos) {
    return Errno{EINVAL};
  }
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
  sync_points_.Reach(overlay::SyncPoint::kLookupBeforeAdopt);
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

// OverlayFs: merged directory listings.
//
// READDIR serves a snapshot of the merged listing (upper first, then each
// lower down to an opaque one, names deduplicated, whiteouts applied) by
// position, so a directory read in pieces while entries come and go returns
// each surviving entry exactly once.
//
// With kernel caching on (the default), OPENDIR answers ENOSYS: the kernel
// then opens directories without a round trip and caches what READDIR
// returns, so walking a tree again costs nothing here. The snapshot then
// belongs to the directory's node and is shared by all readers; offsets
// carry the snapshot's number, so a reader that began on a snapshot a
// change has since replaced keeps reading the one it began on. With
// caching off (timeout=0, layers changed from outside), each open takes its
// own snapshot and rewinding takes a fresh one.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "overlay/dir_merge.h"
#include "overlay/overlay_fs.h"

namespace lamina {

using overlay::DirMarks;
using overlay::Node;

struct OverlayFs::DirHandle {
  std::mutex mu;
  std::vector<overlay::DirItem> items;  // guarded by mu
  bool served = false;                  // guarded by mu
};

namespace {

std::vector<overlay::DirItem> Listing(const overlay::LayerStack& layers, const Node& dir) {
  overlay::DirSources sources;
  {
    std::shared_lock lock(dir.mu);
    sources.upper_fd = dir.upper_fd;
    sources.upper_marks = dir.upper_marks;
    if (dir.parent != nullptr) sources.parent_ino = dir.parent->ino;
  }
  sources.lowers = &dir.lowers;
  sources.ino = dir.ino;
  return overlay::MergeListing(layers, sources);
}

}  // namespace

namespace {

// READDIR offsets of node-owned snapshots: the snapshot's number above,
// the position of the next item below.
uint64_t ListingOffset(uint32_t id, size_t next) {
  return (static_cast<uint64_t>(id) << 32) | static_cast<uint32_t>(next);
}

}  // namespace

Result<OpenReply> OverlayFs::OpenDir(const Ctx&, NodeId id, int) {
  Result<NodePtr> dir = Dir(id);
  if (!dir.ok()) return Errno{dir.error()};
  // Listings change only through this mount, which tells the kernel.
  if (options_.entry_timeout > 0) return Errno{ENOSYS};
  auto handle = std::make_unique<DirHandle>();
  {
    std::unique_lock lock(handle->mu);
    handle->items = Listing(layers_, **dir);
  }
  OpenReply reply;
  reply.fh = dirs_.Add(std::move(handle));
  return reply;
}

std::shared_ptr<const overlay::DirListing> OverlayFs::NodeListing(Node& dir, uint64_t offset) {
  const uint32_t wanted = static_cast<uint32_t>(offset >> 32);
  {
    std::shared_lock lock(dir.mu);
    if (offset == 0 && dir.listing != nullptr) return dir.listing;
    for (const auto& listing : {dir.listing, dir.previous_listing}) {
      if (offset != 0 && listing != nullptr && listing->id == wanted) return listing;
    }
  }
  // From the start with none current, or a snapshot two changes old: list
  // again (an unchanged directory lists in the same order).
  auto fresh = std::make_shared<overlay::DirListing>();
  do {
    fresh->id = next_listing_id_.fetch_add(1, std::memory_order_relaxed);
  } while (fresh->id == 0);  // offsets of snapshot 0 could read as "from the start"
  fresh->items = Listing(layers_, dir);
  std::unique_lock lock(dir.mu);
  if (dir.listing != nullptr) dir.previous_listing = std::move(dir.listing);
  dir.listing = fresh;
  return fresh;
}

Result<void> OverlayFs::ReadDir(const Ctx&, NodeId id, uint64_t fh, uint64_t offset,
                                DirentWriter& out) {
  Result<NodePtr> dir = Dir(id);
  if (!dir.ok()) return Errno{dir.error()};
  if (fh == 0) {
    std::shared_ptr<const overlay::DirListing> listing = NodeListing(**dir, offset);
    ServeListing(*dir, listing->items, static_cast<uint32_t>(offset), out,
                 [&](size_t next) { return ListingOffset(listing->id, next); });
    return Ok();
  }
  DirHandle* handle = dirs_.Get(fh);
  if (handle == nullptr) return Errno{EBADF};
  std::unique_lock lock(handle->mu);
  if (offset == 0 && handle->served) handle->items = Listing(layers_, **dir);
  handle->served = true;
  ServeListing(*dir, handle->items, offset, out, [](size_t next) { return next; });
  return Ok();
}

void OverlayFs::ServeListing(const NodePtr& dir, const std::vector<overlay::DirItem>& items,
                             uint64_t from, DirentWriter& out,
                             absl::FunctionRef<uint64_t(size_t next)> offset_of) {
  for (size_t i = from; i < items.size(); ++i) {
    const overlay::DirItem& item = items[i];
    const uint64_t next = offset_of(i + 1);
    bool dots = i < 2;
    if (!out.plus() || dots) {
      if (!out.Add(item.name, item.ino, item.type, next)) break;
      continue;
    }
    if (!out.Fits(item.name)) break;
    if (item.identity && table_.Contains(*item.identity)) {
      // The kernel holds this object already (its attributes are cached
      // for as long as it is not told otherwise): an entry without a node
      // id spares it a resolve here and itself a redundant update.
      out.Add(item.name, item.ino, item.type, next);
      continue;
    }
    // The entry carries attributes: resolve it as a lookup would, which
    // also takes the lookup reference the kernel will hold.
    Result<Resolved> resolved = Resolve(*dir, item.name);
    if (!resolved.ok()) continue;  // removed since the snapshot
    Result<Entry> entry = Adopt(dir, item.name, std::move(*resolved));
    if (!entry.ok()) continue;
    out.AddPlus(item.name, *entry, next);
  }
}

Result<void> OverlayFs::ReleaseDir(const Ctx&, NodeId, uint64_t fh) {
  dirs_.Remove(fh);
  return Ok();
}

Result<void> OverlayFs::FsyncDir(const Ctx&, NodeId id, uint64_t, bool datasync) {
  if (options_.volatile_mode) return Ok();
  NodePtr node = Get(id);
  if (node == nullptr) return Errno{ENOENT};
  int upper = node->UpperFd();
  if (upper < 0) return Ok();  // nothing of ours to sync below
  int fd = openat(upper, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return LastErrno();
  int rc = datasync ? fdatasync(fd) : fsync(fd);
  int error = errno;
  close(fd);
  return rc == 0 ? Ok() : Result<void>(Errno{error});
}

}  // namespace lamina

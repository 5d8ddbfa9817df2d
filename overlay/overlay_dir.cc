// OverlayFs: merged directory listings.
//
// OPENDIR takes a snapshot of the merged listing (upper first, then each
// lower down to an opaque one, names deduplicated, whiteouts applied) and
// READDIR serves it by position, so a directory read in pieces while entries
// come and go returns each surviving entry exactly once. Reading from
// offset 0 again (rewinddir) takes a fresh snapshot.

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

Result<OpenReply> OverlayFs::OpenDir(const Ctx&, NodeId id, int) {
  Result<NodePtr> dir = Dir(id);
  if (!dir.ok()) return Errno{dir.error()};
  auto handle = std::make_unique<DirHandle>();
  {
    std::unique_lock lock(handle->mu);
    handle->items = Listing(layers_, **dir);
  }
  OpenReply reply;
  reply.fh = dirs_.Add(std::move(handle));
  // Listings change only through this mount, and the kernel drops its
  // cached copy whenever it changes the directory itself.
  if (options_.entry_timeout > 0) reply.open_flags = abi::kFopenCacheDir | abi::kFopenKeepCache;
  return reply;
}

Result<void> OverlayFs::ReadDir(const Ctx&, NodeId id, uint64_t fh, uint64_t offset,
                                DirentWriter& out) {
  Result<NodePtr> dir = Dir(id);
  if (!dir.ok()) return Errno{dir.error()};
  DirHandle* handle = dirs_.Get(fh);
  if (handle == nullptr) return Errno{EBADF};
  std::unique_lock lock(handle->mu);
  if (offset == 0 && handle->served) handle->items = Listing(layers_, **dir);
  handle->served = true;
  for (size_t i = offset; i < handle->items.size(); ++i) {
    const overlay::DirItem& item = handle->items[i];
    uint64_t next = i + 1;
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
    Result<Resolved> resolved = Resolve(**dir, item.name);
    if (!resolved.ok()) continue;  // removed since the snapshot
    Result<Entry> entry = Adopt(*dir, item.name, std::move(*resolved));
    if (!entry.ok()) continue;
    out.AddPlus(item.name, *entry, next);
  }
  return Ok();
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

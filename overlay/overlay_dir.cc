// OverlayFs: merged directory listings.
//
// READDIR serves a snapshot of the merged listing (upper first, then each
// lower down to an opaque one, names deduplicated, whiteouts applied) in the
// order of its cookies, hashes of the names (dir_merge.h): an offset says
// "after this name's hash", so a directory read in pieces while entries come
// and go returns each surviving entry exactly once, whichever snapshot
// serves the next piece.
//
// Snapshots are packed (dir_snapshot.h) and counted against the listing
// memory (listing_store.h): a listing that does not fit answers ENOMEM.
//
// With kernel caching on (the default), OPENDIR answers ENOSYS: the kernel
// then opens directories without a round trip and caches what READDIR
// returns, so walking a tree again costs nothing here. The snapshot then
// belongs to the directory's node, shared by all readers and dropped when
// this mount changes the directory. With caching off (timeout=0, layers
// changed from outside), each open holds the snapshot it started with until
// it rewinds; opens of a directory that has not changed share one: a new
// open takes the snapshot the others read if the layer directories' change
// times are still those it was read at (DirStamp), and lists anew
// otherwise, as does a rewind.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "overlay/dir_merge.h"
#include "overlay/dir_snapshot.h"
#include "overlay/layer_object.h"
#include "overlay/listing_store.h"
#include "overlay/overlay_fs.h"

namespace lamina {

using overlay::DirMarks;
using overlay::Node;

struct OverlayFs::DirHandle {
  explicit DirHandle(uid_t owner) : uid(owner) {}
  std::mutex mu;
  const uid_t uid;                     // charged for the lease
  overlay::ListingStore::Lease lease;  // guarded by mu
  bool served = false;                 // guarded by mu
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

struct timespec ChangeTime(int fd) {
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) return {-1, -1};
  return st.st_ctim;
}

// The layer directories of `dir` as they are now.
overlay::DirStamp StampOf(const Node& dir) {
  overlay::DirStamp stamp;
  clock_gettime(CLOCK_REALTIME, &stamp.taken);
  stamp.ctimes.push_back(ChangeTime(dir.UpperFd()));
  for (const overlay::LowerRef& lower : dir.lowers) stamp.ctimes.push_back(ChangeTime(lower.fd));
  return stamp;
}

}  // namespace

Result<std::shared_ptr<const overlay::DirSnapshot>> OverlayFs::BuildListing(
    const Node& dir, overlay::DirStamp stamp) {
  if (Result<void> room = listings_.Room(); !room.ok()) return Errno{room.error()};
  return listings_.Admit(Listing(layers_, dir), std::move(stamp));
}

Result<std::shared_ptr<const overlay::DirSnapshot>> OverlayFs::NodeListing(const NodePtr& dir) {
  auto cached = [&] {
    std::shared_lock lock(dir->mu);
    return std::make_pair(dir->dir->listing, dir->dir->generation);
  };
  if (auto [listing, generation] = cached(); listing != nullptr) return listing;
  std::lock_guard building(dir->dir->build_mu);
  auto [listing, generation] = cached();  // another reader's, built meanwhile
  if (listing != nullptr) return listing;
  Result<std::shared_ptr<const overlay::DirSnapshot>> fresh = BuildListing(*dir, {});
  if (!fresh.ok()) return fresh;
  {
    std::unique_lock lock(dir->mu);
    // A change through the mount meanwhile: serve this one, keep none.
    if (dir->dir->generation != generation) return fresh;
    dir->dir->listing = *fresh;
  }
  listings_.Cache(dir, fresh->get());
  return fresh;
}

Result<std::shared_ptr<const overlay::DirSnapshot>> OverlayFs::SharedListing(const Node& dir) {
  auto current = [&](const overlay::DirStamp& now) -> std::shared_ptr<const overlay::DirSnapshot> {
    std::shared_ptr<const overlay::DirSnapshot> shared;
    {
      std::shared_lock lock(dir.mu);
      shared = dir.dir->shared.lock();
    }
    if (shared != nullptr && !shared->stamp().StillDescribes(now)) shared.reset();
    return shared;  // released outside the lock, should it be the last
  };
  if (auto shared = current(StampOf(dir))) return shared;
  std::lock_guard building(dir.dir->build_mu);
  overlay::DirStamp now = StampOf(dir);  // after another reader's build
  if (auto shared = current(now)) return shared;
  Result<std::shared_ptr<const overlay::DirSnapshot>> fresh = BuildListing(dir, std::move(now));
  if (!fresh.ok()) return fresh;
  std::unique_lock lock(dir.mu);
  dir.dir->shared = *fresh;
  return fresh;
}

Result<OpenReply> OverlayFs::OpenDir(const Ctx& ctx, NodeId id, int) {
  Result<NodePtr> dir = Dir(id);
  if (!dir.ok()) return Errno{dir.error()};
  // Listings change only through this mount, which tells the kernel.
  if (options_.entry_timeout > 0) return Errno{ENOSYS};
  if (Result<void> may = listings_.MayHold(ctx.uid); !may.ok()) return Errno{may.error()};
  // The kernel holds the directory while it is open, and directories are
  // never parked: its descriptors stay, charged to the caller as an open
  // file's node is.
  Result<OpenCharge> charge = OpenCharge::Take(budget_, ctx.uid, id, /*handle=*/false);
  if (!charge.ok()) return Errno{charge.error()};
  Result<std::shared_ptr<const overlay::DirSnapshot>> snapshot = SharedListing(**dir);
  if (!snapshot.ok()) return Errno{snapshot.error()};
  Result<overlay::ListingStore::Lease> lease = listings_.Hold(ctx.uid, std::move(*snapshot));
  if (!lease.ok()) return Errno{lease.error()};
  auto handle = std::make_unique<DirHandle>(ctx.uid);
  {
    std::lock_guard lock(handle->mu);
    handle->lease = std::move(*lease);
  }
  OpenReply reply;
  reply.fh = dirs_.Add(std::move(handle));
  charge->Commit();
  return reply;
}

Result<void> OverlayFs::ReadDir(const Ctx&, NodeId id, uint64_t fh, uint64_t offset,
                                DirentWriter& out) {
  Result<NodePtr> dir = Dir(id);
  if (!dir.ok()) return Errno{dir.error()};
  if (fh == 0) {
    Result<std::shared_ptr<const overlay::DirSnapshot>> listing = NodeListing(*dir);
    if (!listing.ok()) return Errno{listing.error()};
    // The kernel reads on until a READDIR returns nothing.
    if ((*listing)->FirstAfter(offset) == (*listing)->size()) {
      (*dir)->ReleaseListing(listing->get());
      return Ok();
    }
    ServeListing(*dir, **listing, offset, /*current=*/true, out);
    return Ok();
  }
  DirHandle* handle = dirs_.Get(fh);
  if (handle == nullptr) return Errno{EBADF};
  std::unique_lock lock(handle->mu);
  if (offset == 0 && handle->served) {
    // A rewind lists anew (or takes the snapshot others read, if that is
    // still current).
    Result<std::shared_ptr<const overlay::DirSnapshot>> snapshot = SharedListing(**dir);
    if (!snapshot.ok()) return Errno{snapshot.error()};
    if (snapshot->get() != handle->lease.get()) {
      Result<overlay::ListingStore::Lease> lease =
          listings_.Hold(handle->uid, std::move(*snapshot));
      if (!lease.ok()) return Errno{lease.error()};
      handle->lease = std::move(*lease);
    }
  }
  handle->served = true;
  ServeListing(*dir, *handle->lease.get(), offset, /*current=*/false, out);
  return Ok();
}

void OverlayFs::ServeListing(const NodePtr& dir, const overlay::DirSnapshot& items, uint64_t offset,
                             bool current, DirentWriter& out) {
  for (size_t i = items.FirstAfter(offset); i < items.size(); ++i) {
    const overlay::DirSnapshot::Item item = items[i];
    const uint64_t next = item.cookie;
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
    if (current && item.layer > 0) {
      if (std::optional<Result<Entry>> entry = AdoptUnopened(dir, item)) {
        if (entry->ok()) out.AddPlus(item.name, **entry, next);
        continue;
      }
    }
    // The entry carries attributes: resolve it as a lookup would, which
    // also takes the lookup reference the kernel will hold.
    Result<Resolved> resolved = Resolve(*dir, item.name, nullptr, current ? item.layer : 0);
    if (!resolved.ok()) {
      // Removed since a snapshot of this open: left out. Refused (or, in a
      // current listing, an xattr whiteout the listing keeps, as the
      // kernel's does): listed without attributes where the kernel lists
      // it too.
      if ((resolved.error() != ENOENT || current) && ListsUnresolvable(*dir, item.name)) {
        out.Add(item.name, item.ino, item.type, next);
      }
      continue;
    }
    Result<Entry> entry = Adopt(dir, item.name, std::move(*resolved));
    if (!entry.ok()) {
      // A directory under a second name, stale to lookups: the kernel
      // lists the name all the same.
      if (entry.error() == ESTALE) out.Add(item.name, item.ino, item.type, next);
      continue;
    }
    out.AddPlus(item.name, *entry, next);
  }
}

std::optional<Result<Entry>> OverlayFs::AdoptUnopened(const NodePtr& dir,
                                                      const overlay::DirSnapshot::Item& item) {
  if (item.type == DT_DIR || item.type == DT_UNKNOWN) return std::nullopt;
  int dir_fd = -1;
  for (const overlay::LowerRef& lower : dir->lowers) {
    if (lower.layer == item.layer) dir_fd = lower.fd;
  }
  struct stat st;
  if (dir_fd < 0 || fstatat(dir_fd, item.name.data(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
      S_ISDIR(st.st_mode) || st.st_nlink > 1) {
    return std::nullopt;
  }
  // What a lookup refuses or takes for a whiteout goes the lookup's way.
  if (S_ISREG(st.st_mode) && (overlay::IsXattrWhiteout(layers_, dir_fd, item.name, st) ||
                              !overlay::CheckNotMetacopy(layers_, dir_fd, item.name).ok())) {
    return std::nullopt;
  }
  Resolved r;
  r.lowers.push_back(overlay::LowerRef{item.layer, -1, {}});
  r.type = st.st_mode & S_IFMT;
  r.top = st;
  r.lower_nlink = st.st_nlink;
  r.unopened = true;
  return Adopt(dir, item.name, std::move(r));
}

bool OverlayFs::ListsUnresolvable(const overlay::Node& dir, std::string_view name) const {
  // The kernel's readdir looks entries up only to report an origin's inode
  // number: always with layers on several filesystems, and for the upper's
  // entries when the directory is impure. An entry whose lookup fails there
  // is left out; elsewhere it is listed and fails when looked up.
  if (!layers_.single_device()) return false;
  const int upper = dir.UpperFd();
  if (upper < 0 || !overlay::StatAt(upper, name)) return true;
  return !overlay::IsImpure(layers_, upper);
}

Result<void> OverlayFs::ReleaseDir(const Ctx&, NodeId id, uint64_t fh) {
  if (std::shared_ptr<DirHandle> handle = dirs_.Remove(fh)) budget_.Unpin(handle->uid, id);
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

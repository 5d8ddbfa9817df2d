// ListingStore: the memory merged directory listings take, and who may
// keep how much of it.
//
// Every listing READDIR serves is a DirSnapshot admitted here. Together
// they may take `capacity` bytes (OverlayOptions::listing_memory); a
// listing that does not fit, after the store has dropped listings that are
// only cached, is refused with ENOMEM, which the reader (opendir, getdents)
// gets, never the daemon.
//
// Listings live in two ways:
//  - Cached (timeout > 0): the directory's node keeps the listing it
//    served last, for the kernel's next READDIR, until this mount changes
//    the directory or a reader reaches the end (the kernel caches what it
//    read). The store may drop such a listing to make room for another;
//    the next READDIR of that directory lists it anew, in the same order
//    (cookies are hashes of the names).
//  - Held (timeout=0): each open directory holds a Lease on the snapshot
//    it reads. Leases of one directory share one snapshot as long as the
//    directory has not changed (see OverlayFs::OpenDir); a lease is charged
//    to the uid that opened the directory, the snapshot's bytes once per
//    uid and snapshot (however many of its opens share it), plus a little
//    for the open itself. A uid may hold a quarter of the capacity (root
//    and the daemon's user a half): past it, opendir fails with ENOMEM.
//    Nothing stays once the last lease of a snapshot is gone.
//
// Building a listing allocates many small strings that the allocator keeps
// once freed; after enough of that the store gives free heap pages back to
// the kernel (malloc_trim), so that the daemon's size comes back down when
// readers let go.
//
// Thread-safe. Snapshots tell the store when they are freed, so the store
// must outlive every snapshot it admitted.

#ifndef LAMINA_OVERLAY_LISTING_STORE_H_
#define LAMINA_OVERLAY_LISTING_STORE_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/result.h"
#include "core/uid_shares.h"
#include "overlay/dir_merge.h"
#include "overlay/dir_snapshot.h"
#include "overlay/node.h"

namespace lamina::overlay {

class ListingStore {
 public:
  // What an open directory costs besides its snapshot (its handle, the
  // handle table's entry).
  static constexpr size_t kOpenBytes = 256;
  // Building a listing leaves about this much freed heap per entry (the
  // layers' names read, the merge's sets, the items before packing).
  static constexpr size_t kMergeBytesPerEntry = 256;
  // Freed heap, in bytes, after which the store trims the heap.
  static constexpr size_t kTrimAfter = size_t{1} << 20;

  // `capacity`: bytes all snapshots may take (0: no limit). `owner`: the
  // daemon's user, who (like root) may hold a larger share.
  ListingStore(size_t capacity, uid_t owner);
  ListingStore(const ListingStore&) = delete;
  ListingStore& operator=(const ListingStore&) = delete;

  // Before building a listing: ENOMEM when listings fill the capacity even
  // after dropping the cached ones.
  Result<void> Room();
  // Packs what MergeListing built (`items`, consumed), read from layer
  // directories that were as `stamp` says, into a snapshot counted against
  // the capacity; ENOMEM when it does not fit.
  Result<std::shared_ptr<const DirSnapshot>> Admit(std::vector<DirItem> items, DirStamp stamp);
  // `node` keeps `snapshot` for the next READDIR (timeout > 0): the store
  // may take it away to make room.
  void Cache(const NodePtr& node, const DirSnapshot* snapshot);

  // An open directory's hold on a snapshot, charged to its uid.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept { *this = std::move(other); }
    Lease& operator=(Lease&& other) noexcept;
    ~Lease() { Reset(); }
    const DirSnapshot* get() const { return snapshot_.get(); }
    const std::shared_ptr<const DirSnapshot>& snapshot() const { return snapshot_; }
    void Reset();

   private:
    friend class ListingStore;
    ListingStore* store_ = nullptr;
    uid_t uid_ = 0;
    std::shared_ptr<const DirSnapshot> snapshot_;
  };
  // Before building a listing for an open of `uid`'s: ENOMEM when the uid
  // cannot hold even an open more.
  Result<void> MayHold(uid_t uid) const;
  // A lease on `snapshot` for `uid`; ENOMEM past its share.
  Result<Lease> Hold(uid_t uid, std::shared_ptr<const DirSnapshot> snapshot);

  size_t capacity() const { return capacity_; }
  // Bytes all live snapshots take, and those kept only as a cache.
  size_t used() const;
  size_t cached() const;
  // Bytes charged to `uid`'s leases.
  size_t held_by(uid_t uid) const { return shares_.used_by(uid); }
  // Listings refused so far.
  uint64_t refusals() const;

 private:
  friend class DirSnapshot;
  // A snapshot is being freed.
  void Freed(const DirSnapshot* snapshot);
  void Release(uid_t uid, const DirSnapshot* snapshot);
  // Takes cached snapshots away from their nodes, oldest first, until
  // about `bytes` are free or none is left.
  void Evict(size_t bytes);
  // Counts freed heap, and trims once there is enough.
  void Garbage(size_t bytes);

  struct Cached {
    const DirSnapshot* snapshot;
    std::weak_ptr<Node> node;
  };

  const size_t capacity_;
  UidShares shares_;  // what leases are charged
  mutable std::mutex mu_;
  size_t used_ = 0;           // guarded by mu_
  size_t cached_bytes_ = 0;   // guarded by mu_
  size_t garbage_ = 0;        // guarded by mu_
  uint64_t refusals_ = 0;     // guarded by mu_
  std::list<Cached> cached_;  // guarded by mu_; oldest first
  absl::flat_hash_map<const DirSnapshot*, std::list<Cached>::iterator> cached_index_;  // mu_
  // Open directories per snapshot and uid: a snapshot is charged once per uid.
  absl::flat_hash_map<std::pair<const DirSnapshot*, uid_t>, uint32_t> holders_;  // mu_
};

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_LISTING_STORE_H_

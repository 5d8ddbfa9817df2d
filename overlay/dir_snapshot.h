// DirSnapshot: a merged directory listing as READDIR serves it, packed into
// one block of memory.
//
// MergeListing (dir_merge.h) builds a listing as a vector of items, each
// name a string of its own: tens of thousands of small allocations for a
// large directory, which the allocator keeps (fragmented) after they are
// freed. A snapshot packs the items into one block, fixed-size records
// followed by the names, NUL-terminated: about 48 bytes and the name per
// entry. A large block is mapped from the kernel on its own, so that
// freeing it gives the memory back at once, whatever else the heap holds.
//
// Immutable once packed; shared between readers through shared_ptr.

#ifndef LAMINA_OVERLAY_DIR_SNAPSHOT_H_
#define LAMINA_OVERLAY_DIR_SNAPSHOT_H_

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "overlay/dir_merge.h"
#include "overlay/node.h"

namespace lamina::overlay {

class ListingStore;

// The layer directories a listing is read from, as they were just before
// it was read: whether a listing still holds when the layers may change
// behind the mount (timeout=0).
struct DirStamp {
  // The upper directory's change time ({-1, -1} without one), then each
  // lower directory's, top first.
  std::vector<struct timespec> ctimes;
  struct timespec taken {};  // CLOCK_REALTIME when the times were read

  // A change within this long before `taken` may share its change time
  // with a later one (timestamps are as coarse as the kernel's tick).
  static constexpr long kRacyNanoseconds = 20'000'000;

  // Whether a listing read as `*this` says still lists the directories
  // now stamped `now`: none changed since, and none had changed so shortly
  // before the listing was read that a further change could have kept
  // its time (as git's racily clean index entries).
  bool StillDescribes(const DirStamp& now) const;
};

class DirSnapshot {
 public:
  // One entry, as READDIR sends it (see DirItem).
  struct Item {
    std::string_view name;  // NUL-terminated in the snapshot: name.data() is a C string
    uint32_t type = 0;      // DT_*
    uint64_t ino = 0;
    std::optional<NodeKey> identity;
    uint64_t cookie = 0;
    int layer = 0;
  };

  // Blocks of this size and more are mapped on their own.
  static constexpr size_t kMapFrom = 128 * 1024;

  // Packs `items` (in MergeListing's order), read as `stamp` says; null
  // when memory is short. `store`, if any, is told when the snapshot is
  // freed (ListingStore).
  static std::unique_ptr<DirSnapshot> Pack(const std::vector<DirItem>& items, DirStamp stamp = {},
                                           ListingStore* store = nullptr);
  ~DirSnapshot();
  DirSnapshot(const DirSnapshot&) = delete;
  DirSnapshot& operator=(const DirSnapshot&) = delete;

  size_t size() const { return count_; }
  Item operator[](size_t i) const;
  // The index of the first item whose cookie is above `cookie`.
  size_t FirstAfter(uint64_t cookie) const;
  // The memory the snapshot takes, its block and itself.
  size_t bytes() const { return block_size_ + sizeof(*this); }
  const DirStamp& stamp() const { return stamp_; }

 private:
  struct Record;

  DirSnapshot(char* block, size_t block_size, bool mapped, size_t count, DirStamp stamp,
              ListingStore* store)
      : block_(block),
        block_size_(block_size),
        mapped_(mapped),
        count_(count),
        stamp_(std::move(stamp)),
        store_(store) {}
  const Record& record(size_t i) const;

  char* const block_;
  const size_t block_size_;
  const bool mapped_;
  const size_t count_;
  const DirStamp stamp_;
  ListingStore* const store_;
};

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_DIR_SNAPSHOT_H_

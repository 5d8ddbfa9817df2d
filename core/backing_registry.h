// BackingRegistry: refcounted FUSE passthrough backing ids.
//
// The kernel requires every passthrough open of one inode to use the same
// backing file, so ids are kept per key (the filesystem's choice, usually
// the node id): the first open registers the descriptor, later opens share
// the id, and the last release closes it. When the kernel refuses
// registration (no CAP_SYS_ADMIN, kernel without passthrough) the registry
// marks itself unavailable and the filesystem serves I/O itself.
//
// An id stands for one object. The kernel opens a backing file anew for
// each open that names its id, with that open's flags and the daemon's
// credentials, so an id handed to an open of some other object would let
// that open read or write the registered object instead: a write open of a
// copied-up file given its lower file's id writes the lower layer. The
// registry therefore records the object (st_dev, st_ino) each id was
// registered for and refuses to share it with a descriptor of any other.

#ifndef LAMINA_CORE_BACKING_REGISTRY_H_
#define LAMINA_CORE_BACKING_REGISTRY_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "core/result.h"

namespace lamina {

class Transport;

class BackingRegistry {
 public:
  explicit BackingRegistry(Transport& transport) : transport_(transport) {}

  BackingRegistry(const BackingRegistry&) = delete;
  BackingRegistry& operator=(const BackingRegistry&) = delete;

  // False once the kernel has refused a registration for good.
  bool available() const { return available_.load(std::memory_order_relaxed); }

  // Takes one reference on `key`'s backing id, registering `fd` (any
  // descriptor of the backing file, O_PATH included) if `key` has none.
  // The registry does not keep `fd`. EBUSY when `key` is registered for
  // another object than `fd`'s: the caller must not pass that inode's
  // opens through until the other registration is released.
  Result<int> Acquire(uint64_t key, int fd);

  // Drops one reference taken by Acquire; closes the id with the last one.
  void Release(uint64_t key);

  // The id currently registered for `key`, or 0.
  int Find(uint64_t key) const;
  size_t size() const;

 private:
  struct Backing {
    int id = 0;
    uint64_t references = 0;
    dev_t dev = 0;  // the object registered
    ino_t ino = 0;
  };

  Transport& transport_;
  std::atomic<bool> available_{true};
  mutable std::mutex mu_;
  absl::flat_hash_map<uint64_t, Backing> backings_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lamina

#endif  // LAMINA_CORE_BACKING_REGISTRY_H_

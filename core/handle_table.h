// HandleTable: the state behind FUSE file handles (open directories,
// per-open caches), owned by the table.
//
// The kernel normally sends RELEASE/RELEASEDIR for every handle, but a
// connection torn down with releases still queued never delivers them; the
// table frees whatever is left when it is destroyed, so nothing leaks.

#ifndef LAMINA_CORE_HANDLE_TABLE_H_
#define LAMINA_CORE_HANDLE_TABLE_H_

#include <cstdint>
#include <memory>
#include <mutex>

#include "absl/container/flat_hash_map.h"

namespace lamina {

template <typename T>
class HandleTable {
 public:
  HandleTable() = default;
  HandleTable(const HandleTable&) = delete;
  HandleTable& operator=(const HandleTable&) = delete;

  // Stores `object` and returns its handle (never 0).
  uint64_t Add(std::unique_ptr<T> object) {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t fh = next_++;
    objects_.emplace(fh, std::move(object));
    return fh;
  }

  // The object behind `fh`, or null. Stays valid until Remove(fh): the
  // kernel sends no request on a handle after its release.
  T* Get(uint64_t fh) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find(fh);
    return it == objects_.end() ? nullptr : it->second.get();
  }

  std::shared_ptr<T> Remove(uint64_t fh) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find(fh);
    if (it == objects_.end()) return nullptr;
    std::shared_ptr<T> object = std::move(it->second);
    objects_.erase(it);
    return object;
  }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return objects_.size();
  }

 private:
  mutable std::mutex mu_;
  // shared_ptr rather than unique_ptr: its deleter is bound in Add(), so a
  // class may hold a HandleTable of a type it only declares.
  absl::flat_hash_map<uint64_t, std::shared_ptr<T>> objects_;  // guarded by mu_
  uint64_t next_ = 1;                                          // guarded by mu_
};

}  // namespace lamina

#endif  // LAMINA_CORE_HANDLE_TABLE_H_

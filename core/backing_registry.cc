#include "core/backing_registry.h"

#include <sys/stat.h>

#include "core/transport.h"
#include "spdlog/spdlog.h"

namespace lamina {

Result<int> BackingRegistry::Acquire(uint64_t key, int fd) {
  if (!available()) return Errno{EOPNOTSUPP};
  struct stat st;
  if (fstat(fd, &st) != 0) return LastErrno();
  std::unique_lock lock(mu_);
  auto it = backings_.find(key);
  if (it != backings_.end()) {
    if (it->second.dev != st.st_dev || it->second.ino != st.st_ino) return Errno{EBUSY};
    ++it->second.references;
    return it->second.id;
  }
  Result<int> id = transport_.OpenBacking(fd);
  if (!id.ok()) {
    int error = id.error();
    if (error == EPERM || error == ENOTTY || error == EOPNOTSUPP || error == EINVAL) {
      if (available_.exchange(false)) {
        spdlog::info("FUSE passthrough unavailable (errno {}); serving file I/O in the daemon",
                     error);
      }
    }
    return Errno{error};
  }
  backings_.emplace(key, Backing{*id, 1, st.st_dev, st.st_ino});
  return *id;
}

void BackingRegistry::Release(uint64_t key) {
  int id = 0;
  {
    std::unique_lock lock(mu_);
    auto it = backings_.find(key);
    if (it == backings_.end()) return;
    if (--it->second.references > 0) return;
    id = it->second.id;
    backings_.erase(it);
    // Closed under the lock so a concurrent Acquire of the same key cannot
    // register a second id while the old one is still open in the kernel.
    Result<void> closed = transport_.CloseBacking(id);
    if (!closed.ok()) spdlog::warn("closing backing id {} failed: errno {}", id, closed.error());
  }
}

int BackingRegistry::Find(uint64_t key) const {
  std::unique_lock lock(mu_);
  auto it = backings_.find(key);
  return it == backings_.end() ? 0 : it->second.id;
}

size_t BackingRegistry::size() const {
  std::unique_lock lock(mu_);
  return backings_.size();
}

}  // namespace lamina

// Internal helpers shared by the PassthroughFs source files: how file
// handles are encoded and how names are checked.

#ifndef LAMINA_PASSTHROUGH_HANDLES_H_
#define LAMINA_PASSTHROUGH_HANDLES_H_

#include <cstdint>
#include <string_view>

#include "core/result.h"

namespace lamina::passthrough {

// A regular file's fh is its open descriptor, plus one bit recording that
// the open took a reference on the node's kernel backing id (so Release
// knows to drop it). Encoding it in the handle avoids a per-open
// allocation and any handle table.
inline constexpr uint64_t kBackedBit = 1ULL << 63;
inline uint64_t FileHandle(int fd, bool backed) {
  return static_cast<uint64_t>(fd) | (backed ? kBackedBit : 0);
}
inline int HandleFd(uint64_t fh) {
  return static_cast<int>(fh & 0xffffffffULL);
}
inline bool HandleBacked(uint64_t fh) {
  return (fh & kBackedBit) != 0;
}

// A name the daemon will create, remove or rename: one component, not "."
// or "..". The core already refuses '/' and NUL; this is the second fence.
inline Result<void> CheckName(std::string_view name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos) {
    return Errno{EINVAL};
  }
  return Ok();
}

}  // namespace lamina::passthrough

#endif  // LAMINA_PASSTHROUGH_HANDLES_H_

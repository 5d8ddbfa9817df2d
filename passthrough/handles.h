// Internal helpers shared by the PassthroughFs source files: how file
// handles are encoded and how names are checked.

#ifndef LAMINA_PASSTHROUGH_HANDLES_H_
#define LAMINA_PASSTHROUGH_HANDLES_H_

#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace lamina::passthrough {

// The fh of an open regular file, packed into the 64 bits the kernel
// hands back, which spares a per-open allocation and a table lookup on
// every READ and WRITE:
//   bits 0-31   the uid the open is charged to (core/descriptor_budget.h);
//               RELEASE does not say who is asking
//   bits 32-60  the descriptor the daemon keeps for the open or, for an
//               open served by FUSE passthrough (which keeps none: the
//               kernel holds its own backing file), the open's flags, with
//               which a request that needs a descriptor opens one (Reopen)
//   bit 61      whether bits 32-60 hold a descriptor
//   bit 62      the open is of the overlay's lower object (OverlayFs only)
//   bit 63      the open holds a reference on the node's backing id
struct FileHandle {
  uid_t uid = 0;
  int fd = -1;    // -1: none kept
  int flags = 0;  // when fd is -1: the open's kReopenFlags
  bool lower = false;
  bool backed = false;

  // Flags an open made for one request keeps from the FUSE open: how it
  // reads and writes. (O_TRUNC, O_CREAT and the like acted once already;
  // O_DIRECT is left out, as from every descriptor whose I/O the daemon
  // does itself.)
  static constexpr int kReopenFlags =
      O_ACCMODE | O_APPEND | O_DSYNC | O_SYNC | O_NOATIME | O_LARGEFILE;
  // Descriptors from 2^29 up do not fit (a process far past any limit
  // Lamina plans with).
  static constexpr int kMaxFd = (1 << 29) - 1;

  uint64_t Encode() const {
    const uint64_t middle =
        fd >= 0 ? static_cast<uint64_t>(fd) | kFdBit : static_cast<uint64_t>(flags & kReopenFlags);
    return static_cast<uint64_t>(uid) | (middle << 32) | (lower ? kLowerBit : 0) |
           (backed ? kBackedBit : 0);
  }
  static FileHandle Decode(uint64_t fh) {
    FileHandle h;
    h.uid = static_cast<uid_t>(fh & 0xffffffffULL);
    const uint64_t middle = (fh >> 32) & ((1ULL << 30) - 1);
    if ((middle & kFdBit) != 0) {
      h.fd = static_cast<int>(middle & kMaxFd);
    } else {
      h.flags = static_cast<int>(middle);
    }
    h.lower = (fh & kLowerBit) != 0;
    h.backed = (fh & kBackedBit) != 0;
    return h;
  }

 private:
  static constexpr uint64_t kFdBit = 1ULL << 29;  // within bits 32-61
  static constexpr uint64_t kLowerBit = 1ULL << 62;
  static constexpr uint64_t kBackedBit = 1ULL << 63;
};

// A descriptor for one request on an open file: the handle's own, or, for
// an open that keeps none, one opened for the request and closed after it.
class RequestFd {
 public:
  static RequestFd Borrowed(int fd) { return RequestFd(fd, false); }
  static RequestFd Owned(int fd) { return RequestFd(fd, true); }
  RequestFd() = default;
  RequestFd(RequestFd&& other) noexcept : fd_(other.fd_), owned_(other.owned_) {
    other.owned_ = false;
  }
  RequestFd& operator=(RequestFd&&) = delete;
  ~RequestFd() {
    if (owned_ && fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  RequestFd(int fd, bool owned) : fd_(fd), owned_(owned) {}
  int fd_ = -1;
  bool owned_ = false;
};

// Opens the regular file `path` (a /proc/self/fd link) as `handle`'s open
// was made, for one request. O_NONBLOCK: a lease someone holds on the file
// must not keep a worker waiting.
inline Result<RequestFd> Reopen(const std::string& path, const FileHandle& handle) {
  int fd = open(path.c_str(),
                (handle.flags & FileHandle::kReopenFlags) | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return LastErrno();
  return RequestFd::Owned(fd);
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

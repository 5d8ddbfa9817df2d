// The objects behind PassthroughFs's node ids.
//
// An Inode is one file of the source tree, pinned by an O_PATH|O_NOFOLLOW
// descriptor: the descriptor keeps the backing inode alive (so its number
// cannot be reused while the kernel knows the node) and is the anchor every
// operation on the node resolves from, which is what confines the daemon to
// the source directory. A parked inode (passthrough_parking.cc) has handed
// its descriptor back until its next use.

#ifndef LAMINA_PASSTHROUGH_INODE_H_
#define LAMINA_PASSTHROUGH_INODE_H_

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/compact_shared_mutex.h"

namespace lamina::passthrough {

// Identity of a backing file: device and inode number, so files of
// different filesystems mounted inside the source never collide.
struct InodeKey {
  dev_t dev = 0;
  ino_t ino = 0;

  static InodeKey Of(const struct stat& st) { return InodeKey{st.st_dev, st.st_ino}; }
  bool operator==(const InodeKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const InodeKey& key) {
    return H::combine(std::move(h), key.dev, key.ino);
  }
};

class Inode {
 public:
  // Takes ownership of `fd`, an O_PATH descriptor of the file.
  Inode(int fd, mode_t mode) : fd_(fd), type_(mode & S_IFMT) {}
  // A parked inode: the file is reopened from `handle` (a struct
  // file_handle) on its next use.
  Inode(mode_t mode, std::vector<unsigned char> handle)
      : fd_(-1), type_(mode & S_IFMT), parked_(true), handle_(std::move(handle)) {}
  ~Inode() {
    if (fd_ >= 0) close(fd_);
  }
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;

  // -1 while parked; PassthroughFs hands out only unparked inodes.
  int fd() const { return fd_; }

  // Parking (passthrough_parking.cc): an inode no request holds is
  // replaced by a parked one, which keeps the file handle; the next request
  // that gets it reopens the file by handle.
  bool parked() const { return parked_.load(std::memory_order_acquire); }
  CompactSharedMutex& park_mu() { return park_mu_; }
  const std::vector<unsigned char>& handle() const { return handle_; }
  // Under park_mu(): the reopened descriptor, owned from now on.
  void Unpark(int fd) {
    fd_ = fd;
    handle_.clear();
    parked_.store(false, std::memory_order_release);
  }
  // FUSE opens not yet released: an open file is never parked (its name
  // may be gone, and a handle may not reopen an unlinked file).
  mutable std::atomic<int> opens{0};
  mode_t type() const { return type_; }
  bool is_dir() const { return S_ISDIR(type_); }
  // "/proc/self/fd/N": reaches the file itself for calls that have no
  // descriptor-based form accepting O_PATH (open, truncate, xattrs...).
  std::string ProcPath() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
  mode_t type_;  // the file type never changes for one inode
  CompactSharedMutex park_mu_;
  std::atomic<bool> parked_{false};
  std::vector<unsigned char> handle_;  // struct file_handle, while parked
};

}  // namespace lamina::passthrough

#endif  // LAMINA_PASSTHROUGH_INODE_H_

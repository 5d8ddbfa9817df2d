// Node: one object of the merged view, and where it lives in the layers.

#ifndef LAMINA_OVERLAY_NODE_H_
#define LAMINA_OVERLAY_NODE_H_

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <mutex>
#include <shared_mutex>

#include "absl/container/inlined_vector.h"
#include "core/compact_shared_mutex.h"
#include "overlay/layer_object.h"

namespace lamina::overlay {

// The identity of a merged object: the layer object its st_ino comes from
// (its topmost lower object, else its upper one), so it is stable across
// copy-up and remount, and all names of one lower hard link meet in one node.
class DirSnapshot;  // dir_snapshot.h

struct NodeKey {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const NodeKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const NodeKey& key) {
    return H::combine(std::move(h), key.dev, key.ino);
  }
};

// An object in one lower layer, held by an O_PATH descriptor.
struct LowerRef {
  int layer = 0;
  int fd = -1;
  DirMarks marks;  // directories only
};
// A file has at most one lower object: kept inline, without an allocation.
using LowerRefs = absl::InlinedVector<LowerRef, 1>;

class Node {
 public:
  Node(mode_t type, uint64_t ino)
      : type(type & S_IFMT),
        ino(ino),
        dir(S_ISDIR(type) ? std::make_unique<DirState>() : nullptr) {}
  ~Node() {
    if (held_ != nullptr) held_->fetch_sub(Descriptors(), std::memory_order_relaxed);
    if (upper_fd >= 0) close(upper_fd);
    if (upper_read_fd >= 0) close(upper_read_fd);
    for (const LowerRef& lower : lowers) {
      if (lower.fd >= 0) close(lower.fd);
    }
  }
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  bool is_dir() const { return S_ISDIR(type); }

  // Fields are ordered to pack: a cached file's node is most of the daemon's
  // memory per inode.
  const mode_t type;  // S_IFMT bits; never change for one node
  // O_PATH descriptor of the upper object, -1 while it lives only below.
  // Set once (creation or copy-up) and kept while the node is referenced,
  // so a descriptor read under `mu` stays valid while one holds the node
  // (parking takes descriptors only from nodes nobody holds).
  int upper_fd ABSL_GUARDED_BY(mu) = -1;
  const uint64_t ino;  // the st_ino the merged view reports

  // Guards the fields below and serialises copy-up of this object.
  mutable CompactSharedMutex mu;
  DirMarks upper_marks ABSL_GUARDED_BY(mu);
  // A parked node (overlay/node_parking.cc) stands in for one that gave its
  // descriptors back while the kernel still knew it and no request held it;
  // OverlayFs reopens them by parent and name before any request uses the
  // node. Cleared with the descriptors set, under `mu`; read without it.
  std::atomic<bool> parked{false};
  // FUSE opens of this node that are not released yet.
  std::atomic<int> opens{0};
  // Directories: every lower directory merged under this one, top first,
  // stopping at an opaque one. Others: the topmost lower object, if any.
  // Fixed at creation (parking closes and reopens the descriptor only).
  LowerRefs lowers;
  // Non-directories: the lower object's link count (a lower hard link is
  // indexed on copy-up, see index.h). Fixed at creation; 0 without a lower.
  nlink_t lower_nlink = 0;
  // Where the node was last seen (parent and name), for copying up its
  // parents; updated by rename.
  std::shared_ptr<Node> parent ABSL_GUARDED_BY(mu);
  std::string name ABSL_GUARDED_BY(mu);
  // What only directories have, allocated for them alone (most nodes are
  // files). Fields guarded by `mu`.
  struct DirState {
    // The upper directory's overlay.redirect as last read or written ("" if
    // none): where the layers below find it, if not by its name. The kernel
    // keeps it with the inode and builds the next record from it and the
    // parents' (see OverlayFs::Rename).
    std::string redirect;
    // The merged listing READDIR serves to every reader (the kernel opens
    // directories without asking: no OPENDIR). A change to the directory
    // through this mount drops it, and so does a reader reaching its end
    // (the kernel caches what it read); the next READDIR lists anew. The
    // ListingStore may take it away to make room for others.
    std::shared_ptr<const DirSnapshot> listing;
    // With timeout=0, the snapshot the directory's open handles read
    // while it lasts (they hold it; see OverlayFs::OpenDir), for the next
    // open to share if the directory has not changed since.
    std::weak_ptr<const DirSnapshot> shared;
    // Counts DropListing(): a listing built while a change came is stale.
    uint64_t generation = 0;
    // Held while a listing of the directory is built, so that readers
    // arriving meanwhile share it rather than build their own.
    CompactSharedMutex build_mu;
    // See RememberAbsent().
    std::string absent_name;
    bool absent_over_whiteout = false;
  };
  // Null for non-directories; set at construction, never replaced.
  const std::unique_ptr<DirState> dir;
  // Kernel passthrough pins one backing file to a kernel inode while any
  // open uses it. Opens of the lower file made before a copy-up: how many
  // are live, and the node id (kernel inode) they pinned the lower file to.
  int lower_backed_opens ABSL_GUARDED_BY(mu) = 0;
  // Regular files copied up while opens of the lower file were live: a
  // readable descriptor of the upper file for those opens' reads, opened
  // on the first such read and kept for the node's life.
  int upper_read_fd ABSL_GUARDED_BY(mu) = -1;
  uint64_t lower_backed_id ABSL_GUARDED_BY(mu) = 0;

  int UpperFd() const {
    std::shared_lock lock(mu);
    return upper_fd;
  }
  // The descriptor that currently answers for the node (upper if copied
  // up) and whether it is the upper object's, read together: a copy-up may
  // finish between two separate reads.
  struct TopObject {
    int fd;
    bool upper;
  };
  TopObject Top() const {
    std::shared_lock lock(mu);
    if (upper_fd >= 0) return {upper_fd, true};
    return {lowers.front().fd, false};
  }
  int TopFd() const { return Top().fd; }
  // The upper file opened for reading (see upper_read_fd), or -1 while
  // the node is not copied up.
  Result<int> UpperReadFd() {
    std::unique_lock lock(mu);
    if (upper_fd < 0 || upper_read_fd >= 0) return upper_read_fd;
    int fd = open(FdPath(upper_fd).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return LastErrno();
    upper_read_fd = fd;
    if (held_ != nullptr) held_->fetch_add(1, std::memory_order_relaxed);
    return fd;
  }
  bool HasLower() const { return !lowers.empty(); }
  // A name in this directory changed: the next READDIR lists it anew, and
  // the absent name a lookup saw may exist now.
  void DropListing() {
    if (dir == nullptr) return;
    std::shared_ptr<const DirSnapshot> dropped;  // freed after the lock
    std::unique_lock lock(mu);
    dropped = std::move(dir->listing);
    dir->shared.reset();
    ++dir->generation;
    dir->absent_name.clear();
  }
  // A reader read `served` to its end: the kernel has the listing cached,
  // so the node need not keep it (unless a newer one replaced it).
  void ReleaseListing(const DirSnapshot* served) {
    std::shared_ptr<const DirSnapshot> dropped;  // freed after the lock
    std::unique_lock lock(mu);
    if (dir->listing.get() == served) dropped = std::move(dir->listing);
  }
  // Directories: a lookup found `name` absent (a whiteout in the upper
  // layer hiding it, or not). The kernel creates right after such a lookup,
  // under its lock on the directory; remembering the answer spares the
  // create a second walk of the layers. Lower layers never change, and any
  // change in the directory through this mount calls DropListing().
  void RememberAbsent(std::string_view name, bool over_whiteout) {
    if (dir == nullptr) return;
    std::unique_lock lock(mu);
    dir->absent_name.assign(name);
    dir->absent_over_whiteout = over_whiteout;
  }
  bool TakeAbsent(std::string_view name, bool* over_whiteout) {
    if (dir == nullptr) return false;
    std::unique_lock lock(mu);
    if (dir->absent_name.empty() || dir->absent_name != name) return false;
    *over_whiteout = dir->absent_over_whiteout;
    dir->absent_name.clear();
    return true;
  }

  // Adds the node's descriptors to `*held` now and as the upper one comes
  // (SetUpperFd), and takes them off when the node dies: the total OverlayFs
  // bounds by asking the kernel to forget nodes. Called once, after
  // construction.
  void CountDescriptorsIn(std::atomic<size_t>* held) {
    held_ = held;
    held_->fetch_add(Descriptors(), std::memory_order_relaxed);
  }
  // Gives the node its upper object (created, copied up, or found under
  // another name); the node owns `fd` from now on.
  void SetUpperFd(int fd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    upper_fd = fd;
    if (held_ != nullptr) held_->fetch_add(1, std::memory_order_relaxed);
  }
  // Gives a parked node its reopened descriptors (-1 for an object it did
  // not have); the node owns them from now on.
  void Unpark(int upper, int lower) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    upper_fd = upper;
    if (!lowers.empty()) lowers.front().fd = lower;
    if (held_ != nullptr) held_->fetch_add(Descriptors(), std::memory_order_relaxed);
    parked.store(false, std::memory_order_release);
  }

 private:
  size_t Descriptors() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
    size_t held = (upper_fd >= 0 ? 1 : 0) + (upper_read_fd >= 0 ? 1 : 0);
    for (const LowerRef& lower : lowers) held += lower.fd >= 0 ? 1 : 0;
    return held;
  }

  std::atomic<size_t>* held_ = nullptr;
};

using NodePtr = std::shared_ptr<Node>;

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_NODE_H_

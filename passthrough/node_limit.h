// NodeLimit: when PassthroughFs asks the kernel to forget nodes.
//
// Every node the kernel knows pins one O_PATH descriptor here, and the
// kernel forgets inodes only under memory pressure, so walking a large tree
// would otherwise hold one descriptor per file until the process runs out.
// Past a high-water mark (7/8 of the limit) PassthroughFs offers the least
// recently used nodes to the kernel (FUSE_NOTIFY_PRUNE) down to a low-water
// mark (3/4); the kernel drops those it does not use, and their FORGETs
// close the descriptors. Nodes in use (open, a cwd, a directory with cached
// children) stay; while that keeps the table above the mark, offers repeat
// once per further 1/16 of the limit in new nodes, not on every lookup.
//
// FORGETs trail the offers (the notifier's thread sends them, the kernel
// evicts, a worker reads the FORGETs), and a fast walk outruns them. At the
// limit itself a lookup therefore waits briefly for FORGETs before adding a
// node, unless the last such wait achieved nothing (everything in use, or
// no other worker free to read FORGETs): then lookups go ahead, over the
// limit, until the table is back under the high mark.

#ifndef LAMINA_PASSTHROUGH_NODE_LIMIT_H_
#define LAMINA_PASSTHROUGH_NODE_LIMIT_H_

#include <algorithm>
#include <atomic>
#include <cstddef>

namespace lamina::passthrough {

class NodeLimit {
 public:
  // `max_nodes` 0 means no limit.
  explicit NodeLimit(size_t max_nodes)
      : max_(max_nodes),
        high_(std::max<size_t>(max_nodes - max_nodes / 8, 1)),
        low_(std::max<size_t>(max_nodes - max_nodes / 4, 1)),
        step_(std::max<size_t>(max_nodes / 16, 1)),
        next_(high_) {}

  size_t max_nodes() const { return max_; }

  // Called with the table's size after a node was added: how many nodes to
  // offer the kernel now (0: none). Of concurrent callers, one wins a round.
  size_t Due(size_t size) {
    if (max_ == 0) return 0;
    size_t next = next_.load(std::memory_order_relaxed);
    if (size <= high_) {
      // Back under the mark: the next crossing offers at once again.
      if (next != high_) next_.compare_exchange_strong(next, high_, std::memory_order_relaxed);
      if (futile_.load(std::memory_order_relaxed)) futile_.store(false, std::memory_order_relaxed);
      return 0;
    }
    while (size > next) {
      if (next_.compare_exchange_weak(next, size + step_, std::memory_order_relaxed)) {
        return size - low_;
      }
    }
    return 0;
  }

  // Whether a lookup should wait for FORGETs before adding a node.
  bool ShouldWait(size_t size) const {
    return max_ > 0 && size >= max_ && !futile_.load(std::memory_order_relaxed);
  }
  // Reports a wait that timed out; `progressed`: the table shrank meanwhile.
  void WaitTimedOut(bool progressed) {
    if (!progressed) futile_.store(true, std::memory_order_relaxed);
  }

  // After running out of descriptors: how many to offer regardless of the
  // schedule (at least one step's worth, even below the marks; a quarter
  // of the table without a limit).
  size_t Urgent(size_t size) const {
    if (max_ == 0) return size / 4;
    return std::max(size > low_ ? size - low_ : 0, step_);
  }

 private:
  const size_t max_;
  const size_t high_;                // offering starts above this many nodes
  const size_t low_;                 // and asks for enough to get back to this many
  const size_t step_;                // new nodes between offers while above `high_`
  std::atomic<size_t> next_;         // the size at which Due() offers next
  std::atomic<bool> futile_{false};  // waiting did not help; until under `high_`
};

}  // namespace lamina::passthrough

#endif  // LAMINA_PASSTHROUGH_NODE_LIMIT_H_

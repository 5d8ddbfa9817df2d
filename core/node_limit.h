// NodeLimit: when a filesystem asks the kernel to forget nodes.
//
// A filesystem that pins descriptors per node the kernel knows (an O_PATH
// descriptor per inode, several for a merged overlay directory) would hold
// them for every file a tree walk ever touched: the kernel forgets inodes
// only under memory pressure. NodeLimit is the policy, in units of the
// filesystem's choosing (nodes, or descriptors held by nodes: the "load");
// NodeShedder (node_shedder.h) acts on it.
//
// Past a high-water mark (7/8 of the limit) the least recently used nodes
// are offered to the kernel (FUSE_NOTIFY_PRUNE) down to a low-water mark
// (3/4); the kernel drops those it does not use, and their FORGETs release
// what they pin. Nodes in use (open, a cwd, a directory with cached
// children) stay; while that keeps the load above the mark, offers repeat
// once per further 1/16 of the limit, not on every lookup.
//
// FORGETs trail the offers (the notifier's thread sends them, the kernel
// evicts, a worker reads the FORGETs), and a fast walk outruns them. At the
// limit itself a lookup therefore waits briefly for FORGETs before adding a
// node, unless the last such wait achieved nothing (everything in use, or
// no other worker free to read FORGETs): then lookups go ahead, over the
// limit, until the load is back under the high mark.

#ifndef LAMINA_CORE_NODE_LIMIT_H_
#define LAMINA_CORE_NODE_LIMIT_H_

#include <algorithm>
#include <atomic>
#include <cstddef>

namespace lamina {

class NodeLimit {
 public:
  static constexpr int kFutileWaits = 3;

  // `limit` 0 means no limit.
  explicit NodeLimit(size_t limit)
      : max_(limit),
        high_(std::max<size_t>(limit - limit / 8, 1)),
        low_(std::max<size_t>(limit - limit / 4, 1)),
        step_(std::max<size_t>(limit / 16, 1)),
        next_(high_) {}

  size_t limit() const { return max_; }

  // Called with the load after a node was added: how much load to offer
  // the kernel to forget now (0: none). Of concurrent callers, one wins a round.
  size_t Due(size_t load) {
    if (max_ == 0) return 0;
    size_t next = next_.load(std::memory_order_relaxed);
    if (load <= high_) {
      // Back under the mark: the next crossing offers at once again.
      if (next != high_) next_.compare_exchange_strong(next, high_, std::memory_order_relaxed);
      if (futile_.load(std::memory_order_relaxed)) {
        futile_.store(false, std::memory_order_relaxed);
        unproductive_.store(0, std::memory_order_relaxed);
      }
      return 0;
    }
    while (load > next) {
      if (next_.compare_exchange_weak(next, load + step_, std::memory_order_relaxed)) {
        return load - low_;
      }
    }
    return 0;
  }

  // Whether a lookup should wait for FORGETs before adding a node.
  bool ShouldWait(size_t load) const {
    return max_ > 0 && load >= max_ && !futile_.load(std::memory_order_relaxed);
  }
  // Reports a wait that timed out; `progressed`: nodes were forgotten
  // meanwhile. Waiting is given up (until the load is back under the high
  // mark) after kFutileWaits waits in a row saw none: one alone proves
  // little on a loaded machine, where FORGETs may simply be late.
  void WaitTimedOut(bool progressed) {
    if (progressed) {
      unproductive_.store(0, std::memory_order_relaxed);
    } else if (unproductive_.fetch_add(1, std::memory_order_relaxed) + 1 >= kFutileWaits) {
      futile_.store(true, std::memory_order_relaxed);
    }
  }

  // After running out of descriptors: how many to offer regardless of the
  // schedule (at least one step's worth, even below the marks; a quarter
  // of the load without a limit).
  size_t Urgent(size_t load) const {
    if (max_ == 0) return load / 4;
    return std::max(load > low_ ? load - low_ : 0, step_);
  }

 private:
  const size_t max_;
  const size_t high_;                 // offering starts above this load
  const size_t low_;                  // and asks for enough to get back to this
  const size_t step_;                 // growth between offers while above `high_`
  std::atomic<size_t> next_;          // the load at which Due() offers next
  std::atomic<bool> futile_{false};   // waiting did not help; until under `high_`
  std::atomic<int> unproductive_{0};  // waits in a row that saw no FORGET
};

}  // namespace lamina

#endif  // LAMINA_CORE_NODE_LIMIT_H_

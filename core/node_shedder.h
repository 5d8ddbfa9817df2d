// NodeShedder: keeps what a filesystem's cached nodes pin within a limit by
// asking the kernel to forget the least recently used nodes.
//
// The policy (when, and how much) is NodeLimit's (node_limit.h); this class
// carries it out: it picks nodes through the filesystem's callback, sends
// the offers through the connection's notifier (never inline: the kernel
// may need locks the current request holds), and makes lookups at the
// limit wait briefly for the FORGETs that follow. The load is whatever unit
// the filesystem bounds: nodes, or descriptors held by nodes.
//
// Thread-safe; every call is cheap unless it sheds or waits.

#ifndef LAMINA_CORE_NODE_SHEDDER_H_
#define LAMINA_CORE_NODE_SHEDDER_H_

#include <sys/resource.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/functional/function_ref.h"
#include "core/fs_types.h"
#include "core/node_limit.h"

namespace lamina {

class Connection;

class NodeShedder {
 public:
  // Returns node ids worth `load` units, least recently used first.
  using Pick = std::function<std::vector<NodeId>(size_t load)>;

  // `limit` 0 disables shedding.
  NodeShedder(size_t limit, Pick pick);

  // Sheds only once connected, and only if the kernel knows FUSE_NOTIFY_PRUNE
  // (protocol 7.45); warns once otherwise.
  void Connected(const Connection& connection);

  // A new node brought the load to `load`: offers nodes if the policy says so.
  void Added(size_t load);
  // Before a lookup adds a node: at the limit, gives pending FORGETs a moment.
  void MakeRoom(absl::FunctionRef<size_t()> load);
  // The process ran out of descriptors with `load` pinned: sheds at once.
  void OutOfDescriptors(size_t load);
  // A FORGET removed a node. A wait at the limit that saw some counts as
  // progress even when other lookups kept the load up meanwhile.
  void Forgotten() { forgotten_.fetch_add(1, std::memory_order_relaxed); }

  size_t limit() const { return policy_.limit(); }
  // Nodes offered to the kernel so far, and lookups that waited at the limit.
  uint64_t offered() const { return offered_.load(std::memory_order_relaxed); }
  uint64_t waits() const { return waits_.load(std::memory_order_relaxed); }

 private:
  void Shed(size_t load);

  NodeLimit policy_;
  const Pick pick_;
  const Connection* connection_ = nullptr;  // set once, before requests run
  std::atomic<uint64_t> offered_{0};
  std::atomic<uint64_t> waits_{0};
  std::atomic<uint64_t> forgotten_{0};
};

// The default limit for descriptors pinned by nodes: three quarters of the
// soft descriptor limit `file_limit`, leaving the rest for open files (each
// FUSE open holds one) and everything else the process does; at most `cap`.
size_t DefaultNodeDescriptorLimit(rlim_t file_limit, size_t cap);

// How many nodes (parked ones included: they hold no descriptor, only a
// few hundred bytes of memory) a filesystem keeps before offering the least
// recently used to the kernel to forget, by default.
inline constexpr size_t kDefaultMaxCachedNodes = size_t{1} << 18;

}  // namespace lamina

#endif  // LAMINA_CORE_NODE_SHEDDER_H_

// InodeTable: node ids, the objects behind them, and the kernel's lookup
// counts, kept right in one place for every filesystem.
//
// Contract (see filesystem.h): each Entry handed to the kernel is one
// reference; FORGET returns references. Acquire() takes the reference at the
// moment an Entry is produced, Forget() drops them and removes the node at
// zero. Node ids come from a counter and are never reused, so a node id plus
// generation 0 never aliases an older object. The root (id 1) is pinned.

#ifndef LAMINA_CORE_INODE_TABLE_H_
#define LAMINA_CORE_INODE_TABLE_H_

#include <cstdint>
#include <memory>

#include <mutex>
#include <shared_mutex>
#include "absl/container/flat_hash_map.h"
#include "core/fs_types.h"

namespace lamina {

template <typename Key, typename Node>
class InodeTable {
 public:
  struct Handle {
    NodeId id = 0;
    std::shared_ptr<Node> node;
  };

  InodeTable() = default;
  InodeTable(const InodeTable&) = delete;
  InodeTable& operator=(const InodeTable&) = delete;

  // Installs the root as id 1 (pinned: never removed by Forget).
  void SetRoot(const Key& key, std::shared_ptr<Node> node) {
    std::unique_lock lock(mu_);
    nodes_[kRootNodeId] = Slot{key, std::move(node), 1};
    ids_[key] = kRootNodeId;
  }

  // The node for `key`, created by `make()` (which returns shared_ptr<Node>,
  // or null to fail) when absent; takes one lookup reference either way.
  template <typename Make>
  Handle Acquire(const Key& key, Make&& make) {
    std::unique_lock lock(mu_);
    auto id_it = ids_.find(key);
    if (id_it != ids_.end()) {
      Slot& slot = nodes_[id_it->second];
      ++slot.lookups;
      return Handle{id_it->second, slot.node};
    }
    std::shared_ptr<Node> node = make();
    if (node == nullptr) return Handle{};
    NodeId id = next_id_++;
    nodes_.emplace(id, Slot{key, node, 1});
    ids_.emplace(key, id);
    return Handle{id, std::move(node)};
  }

  // Takes one more reference on a node the kernel already knows.
  bool AddRef(NodeId id) {
    std::unique_lock lock(mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end()) return false;
    ++it->second.lookups;
    return true;
  }

  std::shared_ptr<Node> Get(NodeId id) const {
    std::shared_lock lock(mu_);
    auto it = nodes_.find(id);
    return it == nodes_.end() ? nullptr : it->second.node;
  }

  // Drops `count` references. Returns the node when this removed it, so the
  // caller can release its resources outside the table's lock.
  std::shared_ptr<Node> Forget(NodeId id, uint64_t count) {
    std::unique_lock lock(mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end() || id == kRootNodeId) return nullptr;
    Slot& slot = it->second;
    slot.lookups = count >= slot.lookups ? 0 : slot.lookups - count;
    if (slot.lookups > 0) return nullptr;
    std::shared_ptr<Node> node = std::move(slot.node);
    auto id_it = ids_.find(slot.key);
    if (id_it != ids_.end() && id_it->second == id) ids_.erase(id_it);
    nodes_.erase(it);
    return node;
  }

  // Points `id` at a new key (the object's identity changed, e.g. after a
  // copy-up); lookups of the new key find this node from now on.
  void Rekey(NodeId id, const Key& key) {
    std::unique_lock lock(mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end()) return;
    auto old = ids_.find(it->second.key);
    if (old != ids_.end() && old->second == id) ids_.erase(old);
    it->second.key = key;
    ids_[key] = id;
  }

  uint64_t lookups(NodeId id) const {
    std::shared_lock lock(mu_);
    auto it = nodes_.find(id);
    return it == nodes_.end() ? 0 : it->second.lookups;
  }

  size_t size() const {
    std::shared_lock lock(mu_);
    return nodes_.size();
  }

 private:
  struct Slot {
    Key key;
    std::shared_ptr<Node> node;
    uint64_t lookups = 0;
  };

  mutable std::shared_mutex mu_;
  absl::flat_hash_map<NodeId, Slot> nodes_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Key, NodeId> ids_ ABSL_GUARDED_BY(mu_);
  NodeId next_id_ ABSL_GUARDED_BY(mu_) = kRootNodeId + 1;
};

}  // namespace lamina

#endif  // LAMINA_CORE_INODE_TABLE_H_

// InodeTable: node ids, the objects behind them, and the kernel's lookup
// counts, kept right in one place for every filesystem.
//
// Contract (see filesystem.h): each Entry handed to the kernel is one
// reference; FORGET returns references. Acquire() takes the reference at the
// moment an Entry is produced, Forget() drops them and removes the node at
// zero. Node ids come from a counter and are never reused, so a node id plus
// generation 0 never aliases an older object. The root (id 1) is pinned.
//
// Recency: every Acquire/AddRef/Get stamps the node with a logical clock
// that advances once per node created (and per LeastRecentlyUsed() call),
// so LeastRecentlyUsed() can name the nodes a filesystem short of resources
// should ask the kernel to forget. Uses between two ticks tie (the older id
// counts as less recent): recency is measured in table growth, which is
// what matters for shedding, and a per-use tick would put one more
// contended write on every request.
// The stamp is a relaxed atomic written under the shared lock (and only
// when it changes), so touching costs readers no extra lock; the ordering
// work happens in LeastRecentlyUsed(), which scans the table and is meant
// to be called once per batch of new nodes, not per request.

#ifndef LAMINA_CORE_INODE_TABLE_H_
#define LAMINA_CORE_INODE_TABLE_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <utility>
#include <vector>

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
    nodes_[kRootNodeId] = Slot{key, std::move(node), 1, {}};
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
      Touch(slot);
      return Handle{id_it->second, slot.node};
    }
    std::shared_ptr<Node> node;
    // A renumbered object: the same node under a new id.
    auto old_it = renumbered_.find(key);
    if (old_it != renumbered_.end()) {
      node = nodes_.at(old_it->second).node;
      renumbered_.erase(old_it);
    } else {
      node = make();
    }
    if (node == nullptr) return Handle{};
    NodeId id = next_id_++;
    // Created at the current tick; uses from now on come after it.
    const uint64_t now = clock_.fetch_add(1, std::memory_order_relaxed);
    nodes_.emplace(id, Slot{key, node, 1, Stamp(now)});
    ids_.emplace(key, id);
    return Handle{id, std::move(node)};
  }

  // Takes one more reference on a node the kernel already knows.
  bool AddRef(NodeId id) {
    std::unique_lock lock(mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end()) return false;
    ++it->second.lookups;
    Touch(it->second);
    return true;
  }

  // The node behind `id` (null if unknown); counts as a use of it.
  std::shared_ptr<Node> Get(NodeId id) const {
    std::shared_lock lock(mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end()) return nullptr;
    Touch(it->second);
    return it->second.node;
  }

  // Up to `count` node ids (never the root), least recently used first.
  // Each returned node counts as used from now on: a caller that asks the
  // kernel to forget them and is refused for some (they are in use) gets
  // other nodes from the next call instead of the same ones forever.
  std::vector<NodeId> LeastRecentlyUsed(size_t count) {
    return LeastRecentlyUsed(count, [](const Node&) { return true; });
  }
  // The same among the nodes for which `eligible(node)` holds (called under
  // the table's lock: it must be cheap and take no lock of its own).
  template <typename F>
  std::vector<NodeId> LeastRecentlyUsed(size_t count, F&& eligible) {
    std::shared_lock lock(mu_);
    std::vector<std::pair<uint64_t, NodeId>> order;
    order.reserve(nodes_.size());
    for (const auto& [id, slot] : nodes_) {
      if (id != kRootNodeId && eligible(*slot.node)) order.emplace_back(slot.used.Load(), id);
    }
    count = std::min(count, order.size());
    std::partial_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(count), order.end());
    std::vector<NodeId> ids;
    ids.reserve(count);
    // A tick of their own puts the returned nodes after every other.
    const uint64_t now = clock_.fetch_add(1, std::memory_order_relaxed) + 1;
    for (size_t i = 0; i < count; ++i) {
      ids.push_back(order[i].second);
      nodes_.find(order[i].second)->second.used.Store(now);
    }
    return ids;
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
    auto old_it = renumbered_.find(slot.key);
    if (old_it != renumbered_.end() && old_it->second == id) renumbered_.erase(old_it);
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

  // Makes the next Acquire() of `id`'s key hand out the same node under a
  // new id, while `id` stays valid until the kernel forgets it. For when the
  // kernel's inode for `id` is stuck in a state the object has left (FUSE
  // passthrough pins a backing file to an inode): a fresh lookup gets a
  // fresh kernel inode. A no-op for the root or an id already renumbered.
  void Renumber(NodeId id) {
    std::unique_lock lock(mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end() || id == kRootNodeId) return;
    auto id_it = ids_.find(it->second.key);
    if (id_it == ids_.end() || id_it->second != id) return;
    ids_.erase(id_it);
    renumbered_[it->second.key] = id;
  }

  // Forgets which node `key` names (only if it is `id`, when `id` is not 0),
  // while the node stays valid under its id until the kernel forgets it;
  // the next Acquire() of `key` makes a new node. For when the object is
  // gone (its last name removed) or `key` now names another object: a
  // filesystem may give a freed inode number to a new object before the
  // kernel has sent FORGET for the old node, and a node that holds no
  // descriptor (a parked one) does not keep the number from being reused.
  void Unmap(const Key& key, NodeId id = 0) {
    std::unique_lock lock(mu_);
    for (auto* map : {&ids_, &renumbered_}) {
      auto it = map->find(key);
      if (it != map->end() && it->second != kRootNodeId && (id == 0 || it->second == id)) {
        map->erase(it);
      }
    }
  }

  // Replaces the node behind `id` with `replace(old)` (a new
  // shared_ptr<Node>, or null to keep the old one) if the table holds the
  // only reference to it: no request is using it, and none can start to
  // while `replace` runs (requests get nodes through the table, under its
  // lock). For giving back resources a node can recreate on its next use:
  // the old node is returned, and the caller releases it outside the lock;
  // being its last owner, it sees every earlier holder's use of it as done.
  // Null if nothing was replaced.
  template <typename F>
  std::shared_ptr<Node> ReplaceUnshared(NodeId id, F&& replace) {
    std::unique_lock lock(mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end() || it->second.node.use_count() != 1) return nullptr;
    std::shared_ptr<Node> fresh = replace(*it->second.node);
    if (fresh == nullptr) return nullptr;
    return std::exchange(it->second.node, std::move(fresh));
  }

  // The node `key` names, or null (not counted as a use).
  std::shared_ptr<Node> Find(const Key& key) const {
    std::shared_lock lock(mu_);
    auto it = ids_.find(key);
    return it == ids_.end() ? nullptr : nodes_.at(it->second).node;
  }

  // The id the kernel knows `key`'s node by, or 0 (not counted as a use).
  NodeId IdOf(const Key& key) const {
    std::shared_lock lock(mu_);
    auto it = ids_.find(key);
    return it == ids_.end() ? 0 : it->second;
  }

  // Whether a node for `key` exists (not counted as a use).
  bool Contains(const Key& key) const {
    std::shared_lock lock(mu_);
    return ids_.contains(key);
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
  // A clock reading that readers may update under the shared lock. Copies
  // (only made under the exclusive lock, when the map rehashes) need no
  // ordering.
  class Stamp {
   public:
    Stamp() = default;
    explicit Stamp(uint64_t value) : value_(value) {}
    Stamp(const Stamp& other) : value_(other.Load()) {}
    Stamp& operator=(const Stamp& other) {
      Store(other.Load());
      return *this;
    }
    uint64_t Load() const { return value_.load(std::memory_order_relaxed); }
    void Store(uint64_t value) const { value_.store(value, std::memory_order_relaxed); }

   private:
    mutable std::atomic<uint64_t> value_{0};
  };

  struct Slot {
    Key key;
    std::shared_ptr<Node> node;
    uint64_t lookups = 0;
    Stamp used;  // clock_ when last used
  };

  void Touch(const Slot& slot) const {
    // Skipping the store when nothing changed keeps a hot node's cache line
    // shared between the threads reading it.
    const uint64_t now = clock_.load(std::memory_order_relaxed);
    if (slot.used.Load() != now) slot.used.Store(now);
  }

  mutable std::shared_mutex mu_;
  absl::flat_hash_map<NodeId, Slot> nodes_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Key, NodeId> ids_ ABSL_GUARDED_BY(mu_);
  // Renumbered keys, each with the id whose node the next Acquire() reuses.
  absl::flat_hash_map<Key, NodeId> renumbered_ ABSL_GUARDED_BY(mu_);
  NodeId next_id_ ABSL_GUARDED_BY(mu_) = kRootNodeId + 1;
  // Advances once per node created (under the exclusive lock) and per
  // LeastRecentlyUsed() call; Touch() reads it.
  std::atomic<uint64_t> clock_{0};
};

}  // namespace lamina

#endif  // LAMINA_CORE_INODE_TABLE_H_

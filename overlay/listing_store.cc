#include "overlay/listing_store.h"

#include <malloc.h>

#include <algorithm>

namespace lamina::overlay {

ListingStore::ListingStore(size_t capacity, uid_t owner)
    : capacity_(capacity), shares_(capacity, owner) {}

Result<void> ListingStore::Room() {
  if (capacity_ == 0) return Ok();
  size_t used;
  {
    std::lock_guard lock(mu_);
    if (used_ < capacity_) return Ok();
    used = used_;
  }
  Evict(used - capacity_ + 1);
  std::lock_guard lock(mu_);
  if (used_ < capacity_) return Ok();
  ++refusals_;
  return Errno{ENOMEM};
}

Result<std::shared_ptr<const DirSnapshot>> ListingStore::Admit(std::vector<DirItem> items,
                                                               DirStamp stamp) {
  std::unique_ptr<DirSnapshot> packed = DirSnapshot::Pack(items, std::move(stamp), this);
  const size_t merged = items.size() * kMergeBytesPerEntry;
  std::vector<DirItem>().swap(items);
  Garbage(merged);
  if (packed == nullptr) {
    std::lock_guard lock(mu_);
    ++refusals_;
    return Errno{ENOMEM};
  }
  const size_t bytes = packed->bytes();
  size_t over = 0;
  {
    // Counted from here on: Freed() takes it off whatever happens next.
    std::lock_guard lock(mu_);
    used_ += bytes;
    if (capacity_ != 0 && used_ > capacity_) over = used_ - capacity_;
  }
  if (over > 0) {
    Evict(over);
    std::lock_guard lock(mu_);
    if (used_ > capacity_) {
      ++refusals_;
      over = used_;
    } else {
      over = 0;
    }
  }
  if (over > 0) return Errno{ENOMEM};  // `packed` goes, and with it its bytes
  return std::shared_ptr<const DirSnapshot>(std::move(packed));
}

void ListingStore::Cache(const NodePtr& node, const DirSnapshot* snapshot) {
  std::lock_guard lock(mu_);
  if (cached_index_.contains(snapshot)) return;
  cached_.push_back(Cached{snapshot, node});
  cached_index_[snapshot] = std::prev(cached_.end());
  cached_bytes_ += snapshot->bytes();
}

void ListingStore::Freed(const DirSnapshot* snapshot) {
  const size_t bytes = snapshot->bytes();
  {
    std::lock_guard lock(mu_);
    used_ -= std::min(used_, bytes);
    auto it = cached_index_.find(snapshot);
    if (it != cached_index_.end()) {
      cached_.erase(it->second);
      cached_index_.erase(it);
      cached_bytes_ -= std::min(cached_bytes_, bytes);
    }
  }
  // A mapped block goes back to the kernel as it is unmapped.
  if (bytes < DirSnapshot::kMapFrom) Garbage(bytes);
}

void ListingStore::Evict(size_t bytes) {
  std::vector<Cached> victims;
  {
    std::lock_guard lock(mu_);
    size_t picked = 0;
    for (auto it = cached_.begin(); it != cached_.end() && picked < bytes;) {
      picked += it->snapshot->bytes();
      victims.push_back(*it);
      cached_bytes_ -= std::min(cached_bytes_, it->snapshot->bytes());
      cached_index_.erase(it->snapshot);
      it = cached_.erase(it);
    }
  }
  // Without the store's lock: the node's is taken, and the snapshot freed
  // (which calls Freed()) once nobody reads it any more.
  for (const Cached& victim : victims) {
    NodePtr node = victim.node.lock();
    if (node == nullptr || node->dir == nullptr) continue;
    std::shared_ptr<const DirSnapshot> taken;
    {
      std::unique_lock lock(node->mu);
      if (node->dir->listing.get() == victim.snapshot) taken = std::move(node->dir->listing);
    }
  }
}

void ListingStore::Garbage(size_t bytes) {
  {
    std::lock_guard lock(mu_);
    garbage_ += bytes;
    if (garbage_ < kTrimAfter) return;
    garbage_ = 0;
  }
  malloc_trim(0);
}

ListingStore::Lease& ListingStore::Lease::operator=(Lease&& other) noexcept {
  if (this == &other) return *this;
  Reset();
  store_ = std::exchange(other.store_, nullptr);
  uid_ = other.uid_;
  snapshot_ = std::move(other.snapshot_);
  return *this;
}

void ListingStore::Lease::Reset() {
  if (store_ != nullptr && snapshot_ != nullptr) store_->Release(uid_, snapshot_.get());
  store_ = nullptr;
  snapshot_.reset();  // the snapshot may go here, outside the store's lock
}

Result<void> ListingStore::MayHold(uid_t uid) const {
  if (capacity_ == 0) return Ok();
  if (shares_.used_by(uid) + kOpenBytes > shares_.ShareOf(uid)) return Errno{ENOMEM};
  return Ok();
}

Result<ListingStore::Lease> ListingStore::Hold(uid_t uid,
                                               std::shared_ptr<const DirSnapshot> snapshot) {
  {
    std::lock_guard lock(mu_);
    uint32_t& holders = holders_[{snapshot.get(), uid}];
    const size_t charge = kOpenBytes + (holders == 0 ? snapshot->bytes() : 0);
    if (shares_.Charge(uid, charge) != UidShares::Outcome::kCharged) {
      if (holders == 0) holders_.erase({snapshot.get(), uid});
      ++refusals_;
      return Errno{ENOMEM};
    }
    ++holders;
  }
  Lease lease;
  lease.store_ = this;
  lease.uid_ = uid;
  lease.snapshot_ = std::move(snapshot);
  return lease;
}

void ListingStore::Release(uid_t uid, const DirSnapshot* snapshot) {
  std::lock_guard lock(mu_);
  auto it = holders_.find({snapshot, uid});
  if (it == holders_.end()) return;
  size_t refund = kOpenBytes;
  if (--it->second == 0) {
    refund += snapshot->bytes();
    holders_.erase(it);
  }
  shares_.Refund(uid, refund);
}

size_t ListingStore::used() const {
  std::lock_guard lock(mu_);
  return used_;
}

size_t ListingStore::cached() const {
  std::lock_guard lock(mu_);
  return cached_bytes_;
}

uint64_t ListingStore::refusals() const {
  std::lock_guard lock(mu_);
  return refusals_;
}

}  // namespace lamina::overlay

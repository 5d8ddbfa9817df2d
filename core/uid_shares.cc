#include "core/uid_shares.h"

#include <algorithm>
#include <limits>

namespace lamina {

UidShares::UidShares(size_t total, uid_t owner) : total_(total), owner_(owner) {}

size_t UidShares::ShareOf(uid_t uid) const {
  if (total_ == 0) return std::numeric_limits<size_t>::max();
  return total_ / (Privileged(uid) ? kPrivilegedShareDivisor : kShareDivisor);
}

UidShares::Outcome UidShares::Charge(uid_t uid, size_t amount) {
  std::lock_guard lock(mu_);
  if (total_ != 0) {
    auto it = by_uid_.find(uid);
    const size_t held = it == by_uid_.end() ? 0 : it->second;
    if (held + amount > ShareOf(uid)) {
      ++refusals_;
      return Outcome::kOverShare;
    }
    if (used_ + amount > total_) {
      ++refusals_;
      return Outcome::kOverTotal;
    }
  }
  if (amount == 0) return Outcome::kCharged;
  by_uid_[uid] += amount;
  used_ += amount;
  return Outcome::kCharged;
}

void UidShares::Refund(uid_t uid, size_t amount) {
  if (amount == 0) return;
  std::lock_guard lock(mu_);
  auto it = by_uid_.find(uid);
  if (it == by_uid_.end()) return;  // never charged: nothing to give back
  const size_t back = std::min(amount, it->second);
  it->second -= back;
  used_ -= back;
  if (it->second == 0) by_uid_.erase(it);
}

size_t UidShares::used() const {
  std::lock_guard lock(mu_);
  return used_;
}

size_t UidShares::used_by(uid_t uid) const {
  std::lock_guard lock(mu_);
  auto it = by_uid_.find(uid);
  return it == by_uid_.end() ? 0 : it->second;
}

uint64_t UidShares::refusals() const {
  std::lock_guard lock(mu_);
  return refusals_;
}

}  // namespace lamina

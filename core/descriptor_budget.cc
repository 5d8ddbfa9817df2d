#include "core/descriptor_budget.h"

#include <algorithm>

#include "core/node_shedder.h"

namespace lamina {

DescriptorPlan DescriptorPlan::For(rlim_t limit, std::optional<size_t> nodes, size_t node_cap) {
  DescriptorPlan plan;
  plan.limit = limit == RLIM_INFINITY ? node_cap * 2 : static_cast<size_t>(limit);
  plan.nodes = nodes.value_or(DefaultNodeDescriptorLimit(limit, node_cap));
  // Without a node limit, pins are bounded as under the default one.
  const size_t node_share = plan.nodes != 0 ? plan.nodes : plan.limit - plan.limit / 4;
  plan.pins = std::max<size_t>(node_share / 2, 1);
  plan.handles = std::max<size_t>(plan.limit / 8, 1);
  const size_t spent = std::min(plan.nodes, plan.limit) + plan.handles;
  plan.reserve = plan.limit > spent ? plan.limit - spent : 0;
  return plan;
}

DescriptorBudget::DescriptorBudget(const DescriptorPlan& plan, uid_t owner)
    : plan_(plan), handles_(plan.handles, owner), pins_(plan.pins, owner) {}

Errno DescriptorBudget::RefusalErrno(UidShares::Outcome outcome) {
  // As for a process: EMFILE is the caller's own limit, ENFILE the system's.
  return Errno{outcome == UidShares::Outcome::kOverShare ? EMFILE : ENFILE};
}

Result<void> DescriptorBudget::ChargeHandle(uid_t uid) {
  UidShares::Outcome outcome = handles_.Charge(uid, 1);
  if (outcome != UidShares::Outcome::kCharged) return RefusalErrno(outcome);
  return Ok();
}

void DescriptorBudget::RefundHandle(uid_t uid) {
  handles_.Refund(uid, 1);
}

Result<void> DescriptorBudget::Pin(uid_t uid, NodeId node) {
  std::lock_guard lock(mu_);
  if (node != 0) {
    auto it = opens_.find({node, uid});
    if (it != opens_.end()) {
      ++it->second;
      return Ok();
    }
  }
  UidShares::Outcome outcome = pins_.Charge(uid, 1);
  if (outcome != UidShares::Outcome::kCharged) return RefusalErrno(outcome);
  if (node != 0) opens_[{node, uid}] = 1;
  return Ok();
}

void DescriptorBudget::Bind(uid_t uid, NodeId node) {
  std::lock_guard lock(mu_);
  uint32_t& opens = opens_[{node, uid}];
  // Pin(uid, 0) charged a pin; the uid may hold the node open already.
  if (opens > 0) pins_.Refund(uid, 1);
  ++opens;
}

void DescriptorBudget::Unpin(uid_t uid, NodeId node) {
  std::lock_guard lock(mu_);
  if (node != 0) {
    auto it = opens_.find({node, uid});
    if (it == opens_.end()) return;
    if (--it->second > 0) return;
    opens_.erase(it);
  }
  pins_.Refund(uid, 1);
}

Result<OpenCharge> OpenCharge::Take(DescriptorBudget& budget, uid_t uid, NodeId node, bool handle) {
  if (Result<void> pinned = budget.Pin(uid, node); !pinned.ok()) return Errno{pinned.error()};
  if (handle) {
    if (Result<void> charged = budget.ChargeHandle(uid); !charged.ok()) {
      budget.Unpin(uid, node);
      return Errno{charged.error()};
    }
  }
  return OpenCharge(&budget, uid, node, handle);
}

OpenCharge::OpenCharge(OpenCharge&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)),
      uid_(other.uid_),
      node_(other.node_),
      handle_(other.handle_) {}

OpenCharge::~OpenCharge() {
  if (budget_ == nullptr) return;
  if (handle_) budget_->RefundHandle(uid_);
  budget_->Unpin(uid_, node_);
}

Result<void> OpenCharge::SetHandle(bool handle) {
  if (budget_ == nullptr || handle == handle_) return Ok();
  if (handle) {
    if (Result<void> charged = budget_->ChargeHandle(uid_); !charged.ok()) return charged;
  } else {
    budget_->RefundHandle(uid_);
  }
  handle_ = handle;
  return Ok();
}

void OpenCharge::Bind(NodeId node) {
  if (budget_ == nullptr || node_ != 0) return;
  budget_->Bind(uid_, node);
  node_ = node;
}

}  // namespace lamina

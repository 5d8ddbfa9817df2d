// DescriptorBudget: how a daemon's descriptor limit is shared out, and
// what open files and directories may keep of it.
//
// A process may hold RLIMIT_NOFILE descriptors (20,000 on hosts where even
// root cannot raise it), and a Lamina daemon spends them on four things:
//
//   nodes    an O_PATH descriptor per cached node (several for a merged
//            overlay directory). Bounded by NodeShedder, which parks or
//            offers the least recently used (node_limit.h): 3/4 of the
//            limit by default.
//   pins     nodes that open files keep from being parked or forgotten
//            (an open file's name may be gone, so it cannot be reopened).
//            A part of `nodes`: at most half of them, so that shedding the
//            rest can always bring the nodes back under their limit.
//   handles  descriptors kept by the opens themselves: a regular file
//            whose data the daemon serves, a directory stream (timeout=0).
//            An open that FUSE passthrough serves keeps none: the kernel
//            holds its own backing file. 1/8 of the limit.
//   reserve  the daemon's own: /dev/fuse channels and io_uring rings (one
//            or two per worker), the log, and whatever a request opens
//            while it runs (a copy-up, a layer walk, a directory read).
//            What is left: 1/8 of the limit or more.
//
// Pins and handles are charged to the uid of the caller who opened
// (UidShares): a uid may keep a quarter of each (root and the daemon's own
// user a half). Past its share an open gets EMFILE, past everyone's total
// ENFILE, and the reserve is never handed out, so one user who holds as
// many opens as it can does not stop other users, nor the daemon itself.
// A uid's opens of a node it holds open already pin nothing more.
//
// Thread-safe.

#ifndef LAMINA_CORE_DESCRIPTOR_BUDGET_H_
#define LAMINA_CORE_DESCRIPTOR_BUDGET_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "core/fs_types.h"
#include "core/result.h"
#include "core/uid_shares.h"

namespace lamina {

struct DescriptorPlan {
  size_t limit = 0;    // the soft RLIMIT_NOFILE in force
  size_t nodes = 0;    // held by cached nodes (NodeShedder's limit; 0: no limit)
  size_t pins = 0;     // of the nodes', kept by open files
  size_t handles = 0;  // kept by open files and directories themselves
  size_t reserve = 0;  // the daemon's own

  // The plan for `limit` descriptors. `nodes`: the node limit asked for
  // (nullopt: 3/4 of the limit, at most `node_cap`; 0: none).
  static DescriptorPlan For(rlim_t limit, std::optional<size_t> nodes, size_t node_cap);
};

class DescriptorBudget {
 public:
  // `owner`: the daemon's user, privileged besides root (UidShares).
  DescriptorBudget(const DescriptorPlan& plan, uid_t owner);

  DescriptorBudget(const DescriptorBudget&) = delete;
  DescriptorBudget& operator=(const DescriptorBudget&) = delete;

  // One descriptor kept by an open of `uid`'s: EMFILE past its share,
  // ENFILE past the total.
  Result<void> ChargeHandle(uid_t uid);
  void RefundHandle(uid_t uid);

  // An open of `node` by `uid`: pins the node, charged once however many
  // opens of it `uid` holds. `node` 0: a node the open is about to create,
  // pinned by Bind() once it exists.
  Result<void> Pin(uid_t uid, NodeId node);
  // The created node a Pin(uid, 0) was for.
  void Bind(uid_t uid, NodeId node);
  // Ends one Pin(uid, node), or a Pin(uid, 0) never bound.
  void Unpin(uid_t uid, NodeId node);

  const DescriptorPlan& plan() const { return plan_; }
  size_t handles_used() const { return handles_.used(); }
  size_t pins_used() const { return pins_.used(); }
  size_t handles_used_by(uid_t uid) const { return handles_.used_by(uid); }
  size_t pins_used_by(uid_t uid) const { return pins_.used_by(uid); }
  // Opens refused so far.
  uint64_t refusals() const { return handles_.refusals() + pins_.refusals(); }

 private:
  static Errno RefusalErrno(UidShares::Outcome outcome);

  const DescriptorPlan plan_;
  UidShares handles_;
  UidShares pins_;
  std::mutex mu_;
  // Opens per (node, uid), for charging a pin once.
  absl::flat_hash_map<std::pair<NodeId, uid_t>, uint32_t> opens_;  // guarded by mu_
};

// The charge for one open while the open is being made: given back when
// destroyed unless Commit() kept it, so that every way an open can fail
// leaves the budget as it was. A committed charge is given back by
// DescriptorBudget::Unpin() (and RefundHandle() if it kept a descriptor)
// when the open is released.
class OpenCharge {
 public:
  // Pins `node` (0: a node about to be created, see Bind) for `uid` and,
  // with `handle`, charges a descriptor too.
  static Result<OpenCharge> Take(DescriptorBudget& budget, uid_t uid, NodeId node, bool handle);
  // A charge that takes nothing (no budget).
  OpenCharge() = default;
  ~OpenCharge();
  OpenCharge(OpenCharge&& other) noexcept;
  OpenCharge& operator=(OpenCharge&&) = delete;

  // Whether the open keeps a descriptor after all (the filesystem learns
  // it once the open is made: FUSE passthrough may be refused).
  Result<void> SetHandle(bool handle);
  // The node a Take(..., 0, ...) was for, once created.
  void Bind(NodeId node);
  void Commit() { budget_ = nullptr; }

  uid_t uid() const { return uid_; }
  bool handle() const { return handle_; }

 private:
  OpenCharge(DescriptorBudget* budget, uid_t uid, NodeId node, bool handle)
      : budget_(budget), uid_(uid), node_(node), handle_(handle) {}

  DescriptorBudget* budget_ = nullptr;  // null: nothing to give back
  uid_t uid_ = 0;
  NodeId node_ = 0;
  bool handle_ = false;
};

}  // namespace lamina

#endif  // LAMINA_CORE_DESCRIPTOR_BUDGET_H_

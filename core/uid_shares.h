// UidShares: a resource the daemon spends on behalf of the users of a
// mount, shared out among them by uid.
//
// Whatever a user keeps on the daemon's side past a request (a descriptor
// of a file it holds open, a directory listing it is reading) is charged to
// the uid the kernel names in the request. A uid may hold at most its
// share of the total; all uids together at most the total, which is set
// below what the daemon has, so that the rest stays for the daemon's own
// work. So one user who keeps taking hits its share and gets an error,
// while other users, and the daemon, go on. Privileged uids (root and the
// daemon's own user, who owns the mount) get a larger share than others,
// still short of the total.
//
// Units are the caller's: descriptors, bytes. Thread-safe.

#ifndef LAMINA_CORE_UID_SHARES_H_
#define LAMINA_CORE_UID_SHARES_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <mutex>

#include "absl/container/flat_hash_map.h"

namespace lamina {

class UidShares {
 public:
  // Shares as fractions of the total: the most any one uid may hold.
  static constexpr size_t kShareDivisor = 4;            // a quarter for any uid
  static constexpr size_t kPrivilegedShareDivisor = 2;  // a half for root and the owner

  // `total` 0 means no limit. `owner` is privileged besides root.
  UidShares(size_t total, uid_t owner);

  UidShares(const UidShares&) = delete;
  UidShares& operator=(const UidShares&) = delete;

  enum class Outcome {
    kCharged,
    kOverShare,  // the uid would hold more than its share: refused
    kOverTotal,  // all uids together would hold more than the total: refused
  };
  // Charges `amount` to `uid` unless that takes it past its share or
  // everyone past the total; nothing is charged when refused.
  Outcome Charge(uid_t uid, size_t amount);
  // Gives back `amount` that Charge() took for `uid`.
  void Refund(uid_t uid, size_t amount);

  size_t total() const { return total_; }
  // The most `uid` may hold (the total when there is no limit).
  size_t ShareOf(uid_t uid) const;
  size_t used() const;
  size_t used_by(uid_t uid) const;
  // Refusals so far (kOverShare and kOverTotal), for the statistics.
  uint64_t refusals() const;

 private:
  bool Privileged(uid_t uid) const { return uid == 0 || uid == owner_; }

  const size_t total_;
  const uid_t owner_;
  mutable std::mutex mu_;
  size_t used_ = 0;                            // guarded by mu_
  absl::flat_hash_map<uid_t, size_t> by_uid_;  // guarded by mu_; no zero entries
  uint64_t refusals_ = 0;                      // guarded by mu_
};

}  // namespace lamina

#endif  // LAMINA_CORE_UID_SHARES_H_

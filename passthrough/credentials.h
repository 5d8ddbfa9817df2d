// Acting as the caller for operations that create files.
//
// When the daemon runs as root for other users (allow_other), a new file
// must belong to the process that asked for it. ScopedCredentials switches
// the calling thread's filesystem uid, gid and supplementary groups with the
// raw system calls, which (unlike the glibc wrappers, which broadcast
// set*id changes to every thread) affect only this thread, and restores the
// daemon's identity when it goes out of scope.

#ifndef LAMINA_PASSTHROUGH_CREDENTIALS_H_
#define LAMINA_PASSTHROUGH_CREDENTIALS_H_

#include <sys/types.h>

#include <cstdint>
#include <span>

#include "core/request_context.h"
#include "core/result.h"

namespace lamina::passthrough {

class ScopedCredentials {
 public:
  // Switches to uid/gid plus `groups`. A no-op when the daemon is not root
  // (it could not switch) or the caller is root (nothing would change).
  ScopedCredentials(uid_t uid, gid_t gid, std::span<const uint32_t> groups);
  ~ScopedCredentials();
  ScopedCredentials(const ScopedCredentials&) = delete;
  ScopedCredentials& operator=(const ScopedCredentials&) = delete;

  // EPERM (or the failing call's errno) when the switch did not happen;
  // the operation must then not proceed as root.
  Result<void> status() const { return error_ == 0 ? Ok() : Result<void>(Errno{error_}); }

 private:
  bool switched_ = false;
  int error_ = 0;
};

// Takes capability `cap` out of the calling thread's effective set (if it
// is there) until destroyed; capabilities, like the fsuid, belong to the
// thread. Used while registering a kernel backing file: the kernel keeps
// the registering thread's credentials and runs every passthrough read and
// write with them, so without CAP_FSETID a write through the kernel drops
// set-user-ID and set-group-ID as the source's filesystem would for an
// unprivileged writer, even on an open made before the bits were set.
class ScopedCapabilityDrop {
 public:
  explicit ScopedCapabilityDrop(int cap);
  ~ScopedCapabilityDrop();
  ScopedCapabilityDrop(const ScopedCapabilityDrop&) = delete;
  ScopedCapabilityDrop& operator=(const ScopedCapabilityDrop&) = delete;

 private:
  bool dropped_ = false;
  uint32_t saved_[6] = {};  // two __user_cap_data_struct: effective, permitted, inheritable
};

// Whether the process that sent a request has capability `cap` in its
// effective set, as /proc/PID/status says (false when the pid is unknown:
// a caller in another pid namespace). For the rare decisions the kernel
// leaves to the filesystem and a uid cannot settle: root may have dropped
// its capabilities.
bool CallerHasCapability(const RequestContext& ctx, int cap);

// Gives the calling thread its own umask `mask` (unsharing CLONE_FS once, so
// the change stays away from the rest of the process; a no-op when the
// thread's umask already is `mask`). Without FUSE_DONT_MASK the kernel has
// applied the caller's umask to the modes it sends, and the daemon's must
// not mask them again (0). With it, the caller's umask is applied by the
// layer filesystem as it creates, so that a default ACL of the parent
// overrides it exactly as it would for the caller.
void UseUmaskOnThisThread(mode_t mask);

}  // namespace lamina::passthrough

#endif  // LAMINA_PASSTHROUGH_CREDENTIALS_H_

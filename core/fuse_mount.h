// FuseMount: mounting and unmounting, the only use of libfuse.
//
// libfuse3's mount helpers (fuse_session_new/mount/fd/unmount) know every
// way to get a FUSE mount: mount(2) as root, or the setuid fusermount3
// helper for unprivileged users. Nothing after the mount goes through
// libfuse: Lamina's session reads and answers the connection itself.
// Helpers run from argument vectors, never through a shell.

#ifndef LAMINA_CORE_FUSE_MOUNT_H_
#define LAMINA_CORE_FUSE_MOUNT_H_

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

struct fuse_session;

namespace lamina {

class FuseMount {
 public:
  // Mounts a FUSE filesystem at `mountpoint` (made absolute first) with
  // mount options such as "allow_other", "default_permissions",
  // "fsname=NAME", "subtype=NAME", "ro", "suid", "dev", one per element (any
  // character may appear in a value: JoinMountOptions). The kernel sends
  // INIT right after; serve it with a Session on fd().
  static absl::StatusOr<std::unique_ptr<FuseMount>> Create(const std::string& mountpoint,
                                                           const std::vector<std::string>& options);
  // Unmounts if still mounted and releases the connection descriptor.
  ~FuseMount();

  FuseMount(const FuseMount&) = delete;
  FuseMount& operator=(const FuseMount&) = delete;

  int fd() const { return fd_; }
  const std::string& mountpoint() const { return mountpoint_; }
  // The kernel's connection number (st_dev of the mount), or -1.
  int connection_id() const { return connection_id_; }

  // Detaches the mount (lazily, like umount -l). Idempotent. The kernel
  // ends the connection once no process uses the mount any more.
  void Unmount();
  // Ends the connection at once through fusectl, for a lazily detached
  // mount that is still in use. Returns false if that is not possible.
  bool Abort();

  // "3.14.0": the libfuse used for mounting.
  static std::string LibfuseVersion();

 private:
  FuseMount() = default;

  struct fuse_session* session_ = nullptr;
  std::string mountpoint_;
  int fd_ = -1;
  bool owns_fd_ = false;
  int connection_id_ = -1;
  std::mutex unmount_mu_;
  bool unmounted_ = false;  // guarded by unmount_mu_
};

// The -o list libfuse and fusermount3 take for `options`, one option each:
// both split the list at commas and read a backslash as "the next
// character as it is", so a comma or backslash inside an option (a source
// path in fsname=) is escaped and can never become an option of its own.
std::string JoinMountOptions(const std::vector<std::string>& options);

// Finds the device minor of the mount at `mountpoint` in /proc/self/mountinfo
// (FUSE connection numbers are the mount's anonymous device numbers).
int FindMountMinor(const std::string& mountpoint);

}  // namespace lamina

#endif  // LAMINA_CORE_FUSE_MOUNT_H_

// PassthroughFs: a Filesystem that mirrors a real directory.
//
// Every node holds an O_PATH descriptor of its backing file (inode.h), and
// every name is resolved one component at a time relative to the parent's
// descriptor, never following a symlink in the last component, so no
// request can reach outside the source directory. Filesystems mounted
// inside the source are served too (nodes are keyed by device and inode).
//
// File data goes through the kernel's FUSE passthrough when it is offered
// and the daemon may register backing files (root); otherwise reads and
// writes are served here with preadv/pwritev straight into the request
// buffers.
//
// Permissions are the kernel's to check (posix_acl below): it knows the
// caller's groups and capabilities, which a request does not carry. Creating
// operations also run with the caller's fsuid/fsgid/groups (credentials.h),
// so new files belong to the caller. POSIX record locks and flock(2)
// locks are left to the kernel, which keeps them per mount: they do not
// conflict with locks taken on the source directly (as on kernel
// overlayfs), and a waiter never blocks a daemon worker.

#ifndef LAMINA_PASSTHROUGH_PASSTHROUGH_FS_H_
#define LAMINA_PASSTHROUGH_PASSTHROUGH_FS_H_

#include <fcntl.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "core/descriptor_budget.h"
#include "core/filesystem.h"
#include "core/handle_table.h"
#include "core/inode_table.h"
#include "core/node_shedder.h"
#include "passthrough/access_times.h"
#include "passthrough/handles.h"
#include "passthrough/inode.h"

namespace lamina {

class BackingRegistry;

enum class PassthroughMode { kAuto, kOn, kOff };

struct PassthroughOptions {
  // The directory to mirror (absolute).
  std::string source;
  // How long the kernel may trust names and attributes. Long timeouts suit
  // a source that only this mount changes; 0 shows outside changes at once.
  double entry_timeout = 86400;
  double attr_timeout = 86400;
  // How long "no such name" is cached; 0 answers ENOENT uncached.
  double negative_timeout = 86400;
  // Kernel passthrough of file data: kAuto uses it when possible, kOff never.
  PassthroughMode passthrough = PassthroughMode::kAuto;
  // Descriptors nodes may hold (one each, none while parked) before the
  // least recently used are parked or offered to the kernel to forget
  // (core/node_limit.h; offers need FUSE 7.45, Linux 6.18). Unset: three
  // quarters of the descriptor limit, at most kMaxNodesCap. 0: no limit.
  std::optional<size_t> max_nodes;
  // Nodes, parked ones included, before the least recently used are
  // offered to the kernel to forget (bounds the daemon's memory). 0: none.
  size_t max_cached_nodes = kDefaultMaxCachedNodes;
  // The descriptor limit to plan with (core/descriptor_budget.h), set as
  // the process's soft RLIMIT_NOFILE (at most its hard limit). Unset: the
  // hard limit, raised where the process may.
  std::optional<size_t> descriptor_limit;
  // The largest WRITE the kernel may send; 0 keeps the core's default.
  uint32_t max_write = 0;
  // The kernel checks every permission (FUSE_POSIX_ACL, which turns
  // default_permissions on for the connection whatever the mount options
  // say) with the source's POSIX ACLs, and creation honours the parent's
  // default ACL (FUSE_DONT_MASK: the umask reaches the source's filesystem
  // unapplied). Off only for a mount no one but the daemon's own user can
  // reach: the daemon then acts on the source with its own credentials for
  // whoever asks (docs/security.md), and the kernel masks new modes with the
  // umask before the parent's default ACL is consulted.
  bool posix_acl = true;
  // The mount is noatime: reads through it never move the source's access
  // times (files and directories are opened O_NOATIME, and file I/O is the
  // daemon's: FUSE passthrough would read without O_NOATIME).
  bool noatime = false;
};

// Ceiling of the default max_nodes: a larger kernel cache than this rarely
// pays for the descriptors and daemon memory it pins.
inline constexpr size_t kMaxNodesCap = size_t{1} << 18;

class PassthroughFs : public Filesystem {
 public:
  ~PassthroughFs() override;
  // Opens the source and raises RLIMIT_NOFILE to its hard limit (every
  // node the kernel knows pins one descriptor), or sets it to
  // descriptor_limit; the default max_nodes and the budgets of open files
  // are derived from the limit (core/descriptor_budget.h).
  static absl::StatusOr<std::unique_ptr<PassthroughFs>> Create(PassthroughOptions options);

  void Init(InitConfig& config) override;
  void Connected(Connection& connection) override;
  // nodes, descriptors they hold, what open files keep.
  Gauges GetGauges() const override;

  Result<Entry> Lookup(const Ctx&, NodeId parent, std::string_view name) override;
  void Forget(NodeId node, uint64_t nlookup) override;
  Result<Attributes> GetAttr(const Ctx&, NodeId node, std::optional<uint64_t> fh) override;
  Result<StatxAttributes> Statx(const Ctx&, NodeId node, std::optional<uint64_t> fh, uint32_t flags,
                                uint32_t mask) override;
  Result<Attributes> SetAttr(const Ctx&, NodeId node, const SetAttrRequest& req) override;
  Result<std::string> ReadLink(const Ctx&, NodeId node) override;
  Result<void> Access(const Ctx&, NodeId node, int mask) override;
  Result<struct statvfs> StatFs(const Ctx&, NodeId node) override;

  Result<Entry> Mknod(const Ctx&, NodeId parent, std::string_view name, mode_t mode,
                      dev_t rdev) override;
  Result<Entry> Mkdir(const Ctx&, NodeId parent, std::string_view name, mode_t mode) override;
  Result<Entry> Symlink(const Ctx&, NodeId parent, std::string_view name,
                        std::string_view target) override;
  Result<Entry> Link(const Ctx&, NodeId node, NodeId new_parent,
                     std::string_view new_name) override;
  Result<void> Unlink(const Ctx&, NodeId parent, std::string_view name) override;
  Result<void> Rmdir(const Ctx&, NodeId parent, std::string_view name) override;
  Result<void> Rename(const Ctx&, NodeId parent, std::string_view name, NodeId new_parent,
                      std::string_view new_name, uint32_t flags) override;

  // passthrough_io.cc
  Result<CreateReply> Create(const Ctx&, NodeId parent, std::string_view name, mode_t mode,
                             const OpenRequest& req) override;
  Result<CreateReply> Tmpfile(const Ctx&, NodeId parent, mode_t mode,
                              const OpenRequest& req) override;
  Result<OpenReply> Open(const Ctx&, NodeId node, const OpenRequest& req) override;
  Result<size_t> Read(const Ctx&, NodeId node, uint64_t fh, uint64_t offset,
                      std::span<std::byte> out) override;
  Result<size_t> Write(const Ctx&, NodeId node, const WriteRequest& req) override;
  // No Flush: nothing is buffered here, and the default ENOSYS tells the
  // kernel to stop sending FLUSH at all, one round trip less per close.
  Result<void> Release(const Ctx&, NodeId node, uint64_t fh, int flags) override;
  Result<void> Fsync(const Ctx&, NodeId node, uint64_t fh, bool datasync) override;
  Result<void> Fallocate(const Ctx&, NodeId node, uint64_t fh, int mode, uint64_t offset,
                         uint64_t length) override;
  Result<uint64_t> Lseek(const Ctx&, NodeId node, uint64_t fh, uint64_t offset,
                         int whence) override;
  Result<size_t> CopyFileRange(const Ctx&, const CopyRangeRequest& req) override;
  Result<IoctlReply> Ioctl(const Ctx&, NodeId node, const IoctlRequest& req,
                           std::span<std::byte> out) override;

  // passthrough_dir.cc
  Result<OpenReply> OpenDir(const Ctx&, NodeId node, int flags) override;
  Result<void> ReadDir(const Ctx&, NodeId node, uint64_t fh, uint64_t offset,
                       DirentWriter& out) override;
  Result<void> ReleaseDir(const Ctx&, NodeId node, uint64_t fh) override;
  Result<void> FsyncDir(const Ctx&, NodeId node, uint64_t fh, bool datasync) override;

  // passthrough_xattr.cc
  Result<void> SetXattr(const Ctx&, NodeId node, std::string_view name,
                        std::span<const std::byte> value, int flags,
                        uint32_t setxattr_flags) override;
  Result<size_t> GetXattr(const Ctx&, NodeId node, std::string_view name,
                          std::span<char> out) override;
  Result<size_t> ListXattr(const Ctx&, NodeId node, std::span<char> out) override;
  Result<void> RemoveXattr(const Ctx&, NodeId node, std::string_view name) override;

  // Nodes the kernel holds references on, root included (for tests).
  size_t node_count() const { return table_.size(); }
  // The node limit in force (0: none), and how many nodes have been offered
  // to the kernel to forget so far.
  size_t max_nodes() const { return shedder_.limit(); }
  uint64_t nodes_offered() const { return shedder_.offered() + cached_nodes_.offered(); }
  uint64_t nodes_parked() const { return parked_total_.load(std::memory_order_relaxed); }
  // Descriptors nodes hold now (one per node that is not parked).
  size_t node_descriptors() const { return Load(); }
  // Lookups that waited at the limit for FORGETs (core/node_limit.h).
  uint64_t limit_waits() const { return shedder_.waits(); }
  // What open files and directories are charged (core/descriptor_budget.h).
  const DescriptorBudget& budget() const { return budget_; }
  // Whether file data currently bypasses the daemon.
  bool passthrough_active() const;

 private:
  using Table = InodeTable<passthrough::InodeKey, passthrough::Inode>;
  using InodePtr = std::shared_ptr<passthrough::Inode>;

  PassthroughFs(PassthroughOptions options, const DescriptorPlan& plan, int root_fd,
                const struct stat& root, bool source_on_overlay);

  // The inode behind `id`, unparked; null if unknown or its file is gone.
  InodePtr Node(NodeId id) const;

  // passthrough_parking.cc. Parking lets the kernel keep more inodes than
  // the daemon may hold descriptors: see there.
  // Whether files can be reopened by handle here (sets handle_mount_fd_).
  bool ParkingPossible(int source_fd);
  bool Park(NodeId id);
  // Gives a parked inode its descriptor back: `fd` if >= 0 (a lookup just
  // opened the file), else reopened by handle.
  Result<void> Unpark(passthrough::Inode& inode, int fd = -1) const;
  // Whether `fd` (of type `mode`), found under the key of `inode`, is
  // inode's file: a parked inode holds no descriptor, so its file may be
  // deleted and its inode number given to a new file.
  bool IsSameFile(passthrough::Inode& inode, int fd, mode_t mode) const;
  // Called before removing `name` in `dir_fd` (unlink, rmdir, rename over
  // it): the inode the kernel knows for it, unparked, for the caller to
  // hold until the removal is done. Holding a descriptor keeps the file
  // (and its inode number) until the kernel forgets the node, so requests
  // on the deleted file still work, which a handle could not reopen.
  InodePtr KeepIfKnown(int dir_fd, const std::string& name) const;
  // Frees about `count` descriptors, least recently used nodes first: parks
  // what it can, returns the nodes to offer the kernel to forget instead.
  std::vector<NodeId> PickNodesToShed(size_t count);
  // Descriptors held by nodes: the load the shedder bounds.
  size_t Load() const { return table_.size() - parked_now_.load(std::memory_order_relaxed); }
  // Drops the kernel's cached attributes of `node` before the reply, for a
  // request that changed attributes the kernel keeps cached across it: the
  // ctime an inode-flags ioctl moved (FUSE_IOCTL, fstests' generic/277), the
  // set-ID bits a WRITE dropped (generic/355).
  void AttributesChanged(NodeId node) const;
  Result<InodePtr> Dir(NodeId id) const;
  // Looks `name` up under `parent` and takes a lookup reference on it.
  Result<Entry> LookupChild(const passthrough::Inode& parent, std::string_view name);
  // Registers the O_PATH descriptor `fd` (owned on entry) as a node.
  Result<Entry> MakeEntry(int fd);
  Result<Attributes> AttributesOf(const passthrough::Inode& inode) const;
  // Shared tail of Mknod/Mkdir/Symlink/Link: checks the name, creates as
  // the caller (with `groups` as supplementary groups) with
  // `make(parent_fd, name)`, then looks the new name up.
  template <typename Make>
  Result<Entry> CreateNode(const Ctx& ctx, NodeId parent, std::string_view name, Make&& make,
                           std::span<const uint32_t> groups);
  // Gives this thread the umask a create on the caller's behalf needs.
  void UseCallerUmask(const Ctx& ctx) const;

  // Opens a source object for I/O or listing: O_NOATIME too when the
  // mount is noatime (access_times.h).
  int OpenForIo(int dir_fd, const char* path, int flags) const {
    return options_.noatime ? passthrough::OpenatWithoutAtime(dir_fd, path, flags)
                            : openat(dir_fd, path, flags);
  }
  int OpenForIo(const char* path, int flags) const { return OpenForIo(AT_FDCWD, path, flags); }

  // passthrough_io.cc helpers.
  // Whether an open of `inode` with `flags` is expected to pass through
  // (and so keep no descriptor here).
  bool WillPassThrough(const passthrough::Inode& inode, int flags) const;
  // Turns an opened descriptor (owned from here on) into the reply for
  // OPEN, taking the kernel backing id when passthrough is active; `flags`
  // are the open's. Commits `charge` on success, settled for whether the
  // open keeps `fd`.
  Result<OpenReply> FinishOpen(NodeId node, const passthrough::Inode& inode, int fd, int flags,
                               OpenCharge& charge);
  // CREATE/TMPFILE after the file exists: registers the node, then opens.
  Result<CreateReply> FinishCreate(int fd, int flags, OpenCharge& charge);
  // A descriptor of the open file `fh` of `node` for one request: the
  // open's own, or a new one when the open passes through.
  Result<passthrough::RequestFd> DescriptorFor(NodeId node, uint64_t fh) const;

  struct DirHandle;  // an open directory stream (passthrough_dir.cc)

  PassthroughOptions options_;
  bool source_on_overlay_;
  // Before what is charged to it (members die in reverse order).
  DescriptorBudget budget_;
  HandleTable<DirHandle> dirs_;
  mutable Table table_;
  // Bounds the descriptors nodes hold (one each, none while parked).
  mutable NodeShedder shedder_;
  NodeShedder cached_nodes_;  // bounds the node count (parked nodes too)
  int handle_mount_fd_ = -1;  // readable source root, for open_by_handle_at
  int source_mount_id_ = -1;
  mutable std::atomic<size_t> parked_now_{0};
  std::atomic<uint64_t> parked_total_{0};
  const Connection* connection_ = nullptr;
  BackingRegistry* backing_ = nullptr;  // set when kernel passthrough is negotiated
};

}  // namespace lamina

#endif  // LAMINA_PASSTHROUGH_PASSTHROUGH_FS_H_

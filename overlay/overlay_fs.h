// OverlayFs: kernel-overlayfs semantics over directory layers.
//
// Lookup walks the upper layer, then the lowers top first; a directory
// merges every layer below it down to an opaque one, any other object comes
// from the topmost layer that has it, and whiteouts hide names below them.
// The first change to a lower object copies it (and any missing parents) up,
// built in the work directory and renamed into place, so a crash leaves
// either the old view or the complete copy. Deleting a lower object only
// writes a whiteout.
//
// Concurrency: no global lock. Each node has its own mutex, which also
// serialises its copy-up; the node table has its own. Namespace changes in
// one directory rely on the kernel's per-directory locking plus the atomic
// rename/mknod primitives of the upper filesystem.
//
// On disk, Lamina writes only what the kernel writes (0/0 whiteouts,
// overlay.opaque), so an upper produced here mounts under kernel overlayfs.

#ifndef LAMINA_OVERLAY_OVERLAY_FS_H_
#define LAMINA_OVERLAY_OVERLAY_FS_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "core/descriptor_budget.h"
#include "core/filesystem.h"
#include "core/handle_table.h"
#include "core/inode_table.h"
#include "core/node_shedder.h"
#include "overlay/dir_merge.h"
#include "overlay/dir_snapshot.h"
#include "overlay/id_map.h"
#include "overlay/layer_lookup.h"
#include "overlay/layers.h"
#include "overlay/listing_store.h"
#include "overlay/node.h"
#include "overlay/sync_points.h"
#include "passthrough/handles.h"
#include "passthrough/passthrough_fs.h"
#include "passthrough/set_id_bits.h"

namespace lamina {

class BackingRegistry;

// The default OverlayOptions::listing_memory: a packed listing takes about
// 48 bytes and the name per entry, so a quarter of this (a uid's share)
// holds a directory of a million entries.
inline constexpr size_t kDefaultListingMemory = size_t{256} << 20;

struct OverlayOptions {
  overlay::LayerConfig layers;
  // Kernel cache lifetimes; only this mount should change the layers.
  double entry_timeout = 86400;
  double attr_timeout = 86400;
  double negative_timeout = 86400;
  // volatile: never sync the upper (fsync is a no-op).
  bool volatile_mode = false;
  // Renaming a directory that merges lower content records the move in
  // overlay.redirect, as the kernel's redirect_dir=on does; off answers
  // EXDEV (callers then copy).
  bool redirect_dir = true;
  // Whether recorded redirects are followed (redirect_dir=on|follow|off);
  // with redirect_dir=nofollow, the kernel's choice under userxattr, a
  // lookup that would follow one answers EPERM, as the kernel's does: a
  // redirect is a path into the lower layers that skips their permission
  // checks, and user.* records can be written by any owner of a layer.
  bool redirect_follow = true;
  PassthroughMode passthrough = PassthroughMode::kAuto;
  // POSIX ACLs in the merged view: the kernel enforces and caches them
  // (FUSE_POSIX_ACL), and creation honours default ACLs (FUSE_DONT_MASK).
  // Off (fuse-overlayfs' noacl): only mode bits are checked.
  bool posix_acl = true;
  // Descriptors the nodes the kernel knows may hold before the least
  // recently used are offered to the kernel to forget (core/node_limit.h;
  // needs FUSE 7.45). Unset: three quarters of the descriptor limit, at most
  // kMaxNodeDescriptorsCap. 0: no limit.
  std::optional<size_t> max_descriptors;
  // Nodes, parked ones included, before the least recently used are
  // offered to the kernel to forget (bounds the daemon's memory). 0: none.
  size_t max_cached_nodes = kDefaultMaxCachedNodes;
  // The descriptor limit to plan with (core/descriptor_budget.h), set as
  // the process's soft RLIMIT_NOFILE (at most its hard limit). Unset: the
  // hard limit, raised where the process may.
  std::optional<size_t> descriptor_limit;
  // Bytes the merged directory listings may take together
  // (overlay/listing_store.h); a uid's open directories may keep a quarter
  // of it (root and the daemon's user a half). 0: no limit.
  size_t listing_memory = kDefaultListingMemory;
  // fuse-overlayfs' static_nlink: directories report st_nlink 1.
  bool static_nlink = false;
  // Owners as the view shows them (uidmapping=, gidmapping=, squash_*).
  overlay::IdMap ids;
  // false (noxattrs=1): every xattr request answers ENOSYS, which the
  // kernel remembers and turns into EOPNOTSUPP for callers.
  bool xattrs = true;
  // The largest WRITE the kernel may send; 0 keeps the core's default.
  uint32_t max_write = 0;
};

// Ceiling of the default descriptor limit: a larger kernel cache than this
// rarely pays for the descriptors and daemon memory it pins.
inline constexpr size_t kMaxNodeDescriptorsCap = size_t{1} << 18;

class OverlayFs : public Filesystem {
 public:
  static absl::StatusOr<std::unique_ptr<OverlayFs>> Create(OverlayOptions options);

  void Init(InitConfig& config) override;
  void Connected(Connection& connection) override;

  // overlay_fs.cc: names and attributes
  Result<Entry> Lookup(const Ctx&, NodeId parent, std::string_view name) override;
  void Forget(NodeId node, uint64_t nlookup) override;
  Result<Attributes> GetAttr(const Ctx&, NodeId node, std::optional<uint64_t> fh) override;
  Result<StatxAttributes> Statx(const Ctx&, NodeId node, std::optional<uint64_t> fh, uint32_t flags,
                                uint32_t mask) override;
  Result<std::string> ReadLink(const Ctx&, NodeId node) override;
  Result<struct statvfs> StatFs(const Ctx&, NodeId node) override;

  // overlay_namespace.cc
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

  // overlay_io.cc
  Result<CreateReply> Create(const Ctx&, NodeId parent, std::string_view name, mode_t mode,
                             const OpenRequest& req) override;
  Result<CreateReply> Tmpfile(const Ctx&, NodeId parent, mode_t mode,
                              const OpenRequest& req) override;
  Result<OpenReply> Open(const Ctx&, NodeId node, const OpenRequest& req) override;
  Result<size_t> Read(const Ctx&, NodeId node, uint64_t fh, uint64_t offset,
                      std::span<std::byte> out) override;
  Result<size_t> Write(const Ctx&, NodeId node, const WriteRequest& req) override;
  // copy_file_range(2) between the layer files (the kernel copies through
  // reads and writes without it, past checks only the upper can make).
  Result<size_t> CopyFileRange(const Ctx&, const CopyRangeRequest& req) override;
  // No Flush: nothing is buffered here, and the default ENOSYS tells the
  // kernel to stop sending FLUSH at all, one round trip less per close.
  Result<void> Release(const Ctx&, NodeId node, uint64_t fh, int flags) override;
  Result<void> Fsync(const Ctx&, NodeId node, uint64_t fh, bool datasync) override;
  Result<void> Fallocate(const Ctx&, NodeId node, uint64_t fh, int mode, uint64_t offset,
                         uint64_t length) override;
  Result<uint64_t> Lseek(const Ctx&, NodeId node, uint64_t fh, uint64_t offset,
                         int whence) override;
  Result<Attributes> SetAttr(const Ctx&, NodeId node, const SetAttrRequest& req) override;

  // overlay_dir.cc
  Result<OpenReply> OpenDir(const Ctx&, NodeId node, int flags) override;
  Result<void> ReadDir(const Ctx&, NodeId node, uint64_t fh, uint64_t offset,
                       DirentWriter& out) override;
  Result<void> ReleaseDir(const Ctx&, NodeId node, uint64_t fh) override;
  Result<void> FsyncDir(const Ctx&, NodeId node, uint64_t fh, bool datasync) override;

  // overlay_xattr.cc
  Result<void> SetXattr(const Ctx&, NodeId node, std::string_view name,
                        std::span<const std::byte> value, int flags,
                        uint32_t setxattr_flags) override;
  Result<size_t> GetXattr(const Ctx&, NodeId node, std::string_view name,
                          std::span<char> out) override;
  Result<size_t> ListXattr(const Ctx&, NodeId node, std::span<char> out) override;
  Result<void> RemoveXattr(const Ctx&, NodeId node, std::string_view name) override;

  // overlay_fileattr.cc: chattr/lsattr flags
  Result<IoctlReply> Ioctl(const Ctx&, NodeId node, const IoctlRequest& req,
                           std::span<std::byte> out) override;

  size_t node_count() const { return table_.size(); }
  // nodes, descriptors they hold, nodes offered to the kernel to forget.
  Gauges GetGauges() const override;
  // Descriptors held by nodes, and the shedding they caused (for tests).
  size_t held_descriptors() const { return held_descriptors_.load(std::memory_order_relaxed); }
  size_t max_descriptors() const { return shedder_.limit(); }
  // What open files are charged (core/descriptor_budget.h).
  const DescriptorBudget& budget() const { return budget_; }
  // The memory directory listings take (overlay/listing_store.h).
  const overlay::ListingStore& listings() const { return listings_; }
  uint64_t nodes_offered() const { return shedder_.offered() + cached_nodes_.offered(); }
  uint64_t nodes_parked() const { return parked_.load(std::memory_order_relaxed); }
  const overlay::LayerStack& layers() const { return layers_; }
  // Where tests may pause requests to make races deterministic.
  overlay::SyncPoints& sync_points() { return sync_points_; }

 private:
  using NodePtr = overlay::NodePtr;
  using Table = InodeTable<overlay::NodeKey, overlay::Node>;

  // What a name resolves to in the layers below one merged directory.
  struct Resolved {
    int upper_fd = -1;  // owned until handed to a Node
    overlay::DirMarks upper_marks;
    overlay::LowerRefs lowers;  // owned until handed to a Node
    mode_t type = 0;
    std::string upper_redirect;  // directories: see Node::DirState::redirect
    struct stat top {};          // stat of the topmost object
    // The upper object is an index entry found by the lower object's file
    // handle, not a name in the upper directory (see index.h).
    bool upper_from_index = false;
    nlink_t lower_nlink = 0;  // of the topmost lower object
    // A lower-only file whose descriptor was not opened (lowers hold -1):
    // its node starts parked and opens it on first use (see ServeListing).
    bool unopened = false;
    void Release();  // closes the descriptors (when no node took them)
  };

  OverlayFs(OverlayOptions options, overlay::LayerStack layers, const DescriptorPlan& plan);

  // Frees about `descriptors` descriptors, least recently used nodes
  // first: parks what it can, and returns the nodes the shedder should offer
  // the kernel to forget instead (directories, open or unparkable files).
  std::vector<NodeId> PickNodesToShed(size_t descriptors);

  // node_parking.cc. A non-directory that no request holds can give back
  // its descriptors and stay known to the kernel: the kernel keeps its
  // inode, attributes and dentry, so a walk of a tree larger than the
  // descriptor limit stays cached there, and the node reopens its objects
  // by parent and name (checking they are the same) when a request needs
  // them. Only directories (which hold the names' parents) and nodes that
  // cannot be parked are offered to the kernel to forget.
  bool Park(NodeId id);
  // Reopens a parked node's descriptors; ESTALE if its name no longer leads
  // to its objects.
  Result<void> Unpark(overlay::Node& node) const;

  // overlay_fs.cc. The node behind `id`, unparked; null if unknown (or
  // parked with its name gone).
  NodePtr Get(NodeId id) const;
  Result<NodePtr> Dir(NodeId id) const;
  // With `upper_whiteout`, reports whether a whiteout in the upper layer is
  // what hid the name (ENOENT). A `first_layer` above 0 says the name is
  // known to be absent, and not whited out, in every layer above that one
  // (a current listing says so), which are then not asked.
  Result<Resolved> Resolve(const overlay::Node& dir, std::string_view name,
                           bool* upper_whiteout = nullptr, int first_layer = 0) const;
  // Turns a resolution into a referenced node (reusing the node for the
  // same identity) and its entry. `created`: an object this mount just made
  // (it carries no protection flags another overlay recorded).
  Result<Entry> Adopt(const NodePtr& parent, std::string_view name, Resolved resolved,
                      bool created = false);
  // Whether the known directory `node`, found again as `name` in `parent`
  // with the objects `r`, is still the same merged directory: the same
  // upper directory or none on both (the kernel's check of a directory
  // inode on lookup).
  bool SameDirectory(const overlay::Node& node, const overlay::Node& parent, std::string_view name,
                     const Resolved& r) const;
  Result<Attributes> AttributesOf(const overlay::Node& node) const;
  Entry MakeEntry(NodeId id, const overlay::Node& node, const struct stat& st) const;
  // What the view shows of a layer object's attributes; every attribute
  // reply (entries, GETATTR, SETATTR, STATX) passes through here once.
  void ToView(struct stat& st) const {
    options_.ids.ToView(st);
    if (options_.static_nlink && S_ISDIR(st.st_mode)) st.st_nlink = 1;
  }
  void ToView(struct statx& stx) const {
    options_.ids.ToView(stx);
    if (options_.static_nlink && S_ISDIR(stx.stx_mode)) stx.stx_nlink = 1;
  }
  Result<void> RequireUpper() const;
  // Whether `node` is a lower hard link that copy-up puts in the index.
  bool UsesIndex(const overlay::Node& node) const {
    return layers_.index_fd() >= 0 && S_ISREG(node.type) && node.lower_nlink > 1;
  }
  // The link count the view shows for `node`, whose top object has
  // `top_nlink` links (`upper_fd` is the node's upper descriptor or -1).
  nlink_t ViewNlink(const overlay::Node& node, int upper_fd, nlink_t top_nlink) const;
  // Sets this thread's umask for creating an object as `ctx`'s caller.
  void UseCallerUmask(const Ctx& ctx) const;

  // copy_up.cc: makes sure `node` (and its parents) exist in the upper
  // layer. Safe to call concurrently; the copy happens once.
  Result<void> CopyUp(const NodePtr& node);
  // The same, for the name `name` in `parent`: an indexed node (a lower
  // hard link) may have an upper object without this name linked to it
  // yet; copy-up links it ("link-up") unless the name is gone.
  Result<void> CopyUpAs(const NodePtr& node, const NodePtr& parent, const std::string& name);
  Result<void> LinkUpLocked(overlay::Node& node, const overlay::Node& parent, int parent_upper_fd,
                            const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(node.mu);
  Result<void> CopyUpLocked(overlay::Node& node, int parent_upper_fd, const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(node.mu);
  Result<void> CopyData(int from_fd, int to_fd, off_t size);

  // overlay_fileattr.cc
  // Immutable and append-only as recorded in the upper object's
  // overlay.protattr (FS_*_FL bits).
  unsigned int ReadProtection(int upper_fd) const;
  Result<void> WriteProtection(int fd, unsigned int flags) const;
  // Copy-up: carries the lower object's sync and noatime flags to the
  // staged copy (an open descriptor) and records its protection flags in
  // overlay.protattr; returns those, for ApplyProtection once the copy is
  // in place (an immutable object can no longer be renamed or linked).
  unsigned int StageFileattr(int lower_fd, int staged_fd, bool dir);
  void ApplyProtection(int upper_fd, bool dir, unsigned int protection);
  // A new node's upper object: protection the kernel recorded only in
  // overlay.protattr goes onto the inode too, where it is enforced.
  void EnforceProtection(int upper_fd, mode_t type);
  // EPERM when a lower object is immutable or append-only (it may not be
  // deleted or renamed, as the kernel's inode flags say).
  Result<void> CheckLowerDeletable(int lower_fd) const;
  // EPERM when the directory at `parent_fd` or the object at `victim_fd`
  // (the topmost of each) is immutable or append-only, in its inode flags
  // or, for an upper victim, in overlay.protattr: the kernel's may_delete
  // says so before it looks at the type or whether a directory is empty,
  // and FUSE inodes carry no such flags for the kernel to see.
  Result<void> CheckRemovable(int parent_fd, int victim_fd, bool victim_in_upper) const;
  // Drops the kernel's cached attributes of `id` before the reply, for a
  // request that changed attributes the kernel keeps cached across it: the
  // ctime an inode-flags ioctl moved (FUSE_IOCTL, fstests' generic/277), the
  // set-ID bits a WRITE dropped (generic/355), the link count of a
  // directory copied up over lower ones (merged now). 0: nothing to drop.
  void AttributesChanged(NodeId id) const;

  // overlay_namespace.cc
  // Whether any lower layer still shows `name` under `dir` (so removing it
  // needs a whiteout).
  bool NameExistsBelow(const overlay::Node& dir, std::string_view name) const;
  // Records in `dir`'s upper directory, which is about to move, where the
  // layers below find it, as the kernel does (ovl_set_redirect): its name
  // for a move within its directory, else the path from the root; nothing
  // if its record stays true. EXDEV for a path past kMaxRedirect.
  Result<void> RecordRedirect(overlay::Node& dir, bool same_parent);
  // The kernel's default redirect_max: longer paths are not recorded.
  static constexpr size_t kMaxRedirect = 256;
  // Atomically replaces `name` in the upper directory of `dir` (copied up)
  // with a whiteout.
  Result<void> WhiteoutName(overlay::Node& dir, std::string_view name, bool replace);
  // Creates an object with `make(dir_fd, name)` in the upper directory of
  // `parent` as the caller, replacing a whiteout if one is there. `make`
  // returns a descriptor it opened on the new object, or -1; with `opened`,
  // that descriptor goes to the caller (else it is closed).
  using MakeFn = absl::FunctionRef<Result<int>(int dir_fd, const std::string& name)>;
  // `type` is the new object's S_IFMT type (S_IFREG for a new hard link).
  Result<Entry> CreateObject(const Ctx& ctx, NodeId parent, std::string_view name, mode_t type,
                             MakeFn make, bool new_inode = true, int* opened = nullptr);
  Result<void> RemoveName(NodeId parent, std::string_view name, bool directory);
  // Called before this mount removes a name of the upper object `st`: the
  // node the kernel knows for it (null if none), unparked, for the caller
  // to hold until the removal is done. A node that holds a descriptor
  // keeps its object, and so the object's inode number, until the kernel
  // forgets the node: requests on the deleted object still work (fstat of
  // a held descriptor), and the upper filesystem cannot give the number to
  // a new object the kernel would then see as the old node. A parked node
  // holds no descriptor, and once its name is gone could not reopen one.
  // (Rename holds both ends through Pin, which unparks.)
  NodePtr KeepIfKnown(const struct stat& st) const;
  // The directory's names changed: its next READDIR from the start lists
  // them anew.
  void DropListing(NodeId dir);
  // Takes a temporary node for `name` (a lookup reference, dropped by the
  // returned guard's owner through Forget).
  Result<std::pair<NodeId, NodePtr>> Pin(const NodePtr& dir, std::string_view name);

  // overlay_io.cc
  // HANDLE_KILLPRIV_V2: drops set-ID bits and file capabilities of the
  // upper object `fd` (any descriptor, O_PATH included) as a write, truncate
  // or chown by `ctx`'s caller does (passthrough/set_id_bits.h).
  Result<void> KillPrivileges(const Ctx& ctx, int fd, passthrough::Capabilities capabilities,
                              std::optional<gid_t> group_before = std::nullopt) const;
  // Whether an open of `node` with `flags` is expected to pass through
  // (and so keep no descriptor here).
  bool WillPassThrough(const overlay::Node& node, int flags) const;
  // Opens `node` for a FUSE open with `flags`, or adopts `fd` (owned from
  // here on) when the caller already holds a descriptor opened with those
  // flags. Commits `charge` on success, settled for whether the open keeps
  // a descriptor.
  Result<OpenReply> OpenNode(NodeId id, const NodePtr& node, int flags, OpenCharge& charge,
                             int fd = -1);
  // A descriptor of the open file `fh` of `id` for one request: the open's
  // own, or a new one of the same object when the open passes through.
  Result<passthrough::RequestFd> DescriptorFor(NodeId id, uint64_t fh) const;

  struct DirHandle;  // an open directory's snapshot (overlay_dir.cc)
  // Merges the listing of `dir`, whose layer directories were as `stamp`
  // says just before, into a snapshot; ENOMEM past the listing memory.
  Result<std::shared_ptr<const overlay::DirSnapshot>> BuildListing(const overlay::Node& dir,
                                                                   overlay::DirStamp stamp);
  // The node-owned snapshot READDIR serves without a handle (see
  // overlay_dir.cc).
  Result<std::shared_ptr<const overlay::DirSnapshot>> NodeListing(const NodePtr& dir);
  // With timeout=0: the snapshot a new open of `dir` (or a rewind) reads,
  // shared with the other opens while the directory has not changed.
  Result<std::shared_ptr<const overlay::DirSnapshot>> SharedListing(const overlay::Node& dir);
  // Fills `out` with the items after the cookie `offset`. `current`: the
  // items' layers are still where their names are (a node-owned listing;
  // see DirItem::layer).
  void ServeListing(const NodePtr& dir, const overlay::DirSnapshot& items, uint64_t offset,
                    bool current, DirentWriter& out);
  // READDIRPLUS of a plain file that only lower layer `layer` has: its
  // entry from a stat of the name, its node parked (nothing opened until a
  // request uses it), so a walk that only stats opens no file. nullopt
  // where that does not apply (a directory, a hard link, a stat failing):
  // the item is then resolved as a lookup would.
  std::optional<Result<Entry>> AdoptUnopened(const NodePtr& dir,
                                             const overlay::DirSnapshot::Item& item);
  // Whether the kernel lists `name` of `dir` although its lookup fails
  // (e.g. a redirect it may not follow).
  bool ListsUnresolvable(const overlay::Node& dir, std::string_view name) const;

  OverlayOptions options_;
  overlay::LayerStack layers_;
  overlay::LayerLookup layer_lookup_;  // the layer walk of every lookup
  // Before the nodes that count into it (members die in reverse order).
  std::atomic<size_t> held_descriptors_{0};
  std::atomic<uint64_t> parked_{0};  // nodes parked so far
  // Before what is charged to them (members die in reverse order): open
  // directories hold leases on snapshots, nodes keep snapshots.
  DescriptorBudget budget_;
  overlay::ListingStore listings_;
  HandleTable<DirHandle> dirs_;
  mutable Table table_;
  mutable NodeShedder shedder_;  // thread-safe; unparking (const) adds load
  NodeShedder cached_nodes_;     // bounds the node count (parked nodes too)
  const Connection* connection_ = nullptr;
  BackingRegistry* backing_ = nullptr;
  overlay::SyncPoints sync_points_;
};

}  // namespace lamina

#endif  // LAMINA_OVERLAY_OVERLAY_FS_H_

// PassthroughFs: parking inodes, so that the kernel may keep more of the
// tree cached than the daemon may hold descriptors.
//
// Every node pins an O_PATH descriptor, and the process may hold only
// RLIMIT_NOFILE of them (20,000 on some hosts), while the kernel keeps every
// inode a walk touched. Asking the kernel to forget nodes bounds the
// descriptors but costs a LOOKUP round trip for each name used again. Where
// the daemon may reopen files by handle (open_by_handle_at needs
// CAP_DAC_READ_SEARCH), an inode no request uses can instead close its
// descriptor and keep its file handle: the kernel's cache stays as it was,
// and the next request that gets the node reopens it. A handle names one
// inode generation, so a reopen never reaches a different file (ESTALE if
// the file is gone).
//
// Safety: an inode is parked only while the inode table holds the only
// reference (InodeTable::ReplaceUnshared, under the table's lock): the
// table swaps in a parked inode, and the old one, released by its last
// owner, closes its descriptor after every request that used it is done.
// Every request gets inodes through Node() or a lookup, which unpark first.
// Not parked: the root, open files and deleted ones (a handle does not
// reopen an unlinked file; removals through the mount unpark first, see
// KeepIfKnown), and files on another mount than the source's (the handle
// is opened against the source's mount). A parked file deleted behind the
// mount's back may see its inode number reused: a lookup compares handles
// (IsSameFile) and gives the new file its own node.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <shared_mutex>
#include <vector>

#include "passthrough/passthrough_fs.h"

namespace lamina {

using passthrough::Inode;

namespace {

// The file handle of `fd`'s file, if it lives on mount `mount_id`.
std::vector<unsigned char> HandleOf(int fd, int mount_id) {
  std::vector<unsigned char> buffer(sizeof(struct file_handle) + MAX_HANDLE_SZ);
  auto* handle = reinterpret_cast<struct file_handle*>(buffer.data());
  handle->handle_bytes = MAX_HANDLE_SZ;
  int mount = -1;
  if (name_to_handle_at(fd, "", handle, &mount, AT_EMPTY_PATH) != 0 || mount != mount_id) {
    return {};
  }
  buffer.resize(sizeof(struct file_handle) + handle->handle_bytes);
  return buffer;
}

}  // namespace

bool PassthroughFs::ParkingPossible(int source_fd) {
  int readable = open(options_.source.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (readable < 0) return false;
  int mount_id = -1;
  std::vector<unsigned char> buffer(sizeof(struct file_handle) + MAX_HANDLE_SZ);
  auto* handle = reinterpret_cast<struct file_handle*>(buffer.data());
  handle->handle_bytes = MAX_HANDLE_SZ;
  int reopened = -1;
  if (name_to_handle_at(source_fd, "", handle, &mount_id, AT_EMPTY_PATH) == 0) {
    reopened = open_by_handle_at(readable, handle, O_PATH | O_CLOEXEC);
  }
  if (reopened < 0) {
    close(readable);
    return false;
  }
  close(reopened);
  handle_mount_fd_ = readable;
  source_mount_id_ = mount_id;
  return true;
}

bool PassthroughFs::Park(NodeId id) {
  if (handle_mount_fd_ < 0 || id == kRootNodeId) return false;
  std::vector<unsigned char> handle;
  {
    InodePtr inode = table_.Get(id);
    if (inode == nullptr || inode->parked() || inode->opens.load(std::memory_order_relaxed) > 0) {
      return false;
    }
    // A deleted file stays held: a handle would not reopen it.
    struct stat st;
    if (fstat(inode->fd(), &st) != 0 || st.st_nlink == 0) return false;
    handle = HandleOf(inode->fd(), source_mount_id_);
    if (handle.empty()) return false;
  }
  // The old inode closes its descriptor when released below, as its last
  // owner.
  InodePtr old = table_.ReplaceUnshared(id, [&](Inode& inode) -> InodePtr {
    if (inode.parked() || inode.opens.load(std::memory_order_relaxed) > 0) return nullptr;
    return std::make_shared<Inode>(inode.type(), std::move(handle));
  });
  if (old == nullptr) return false;
  old.reset();
  parked_now_.fetch_add(1, std::memory_order_relaxed);
  parked_total_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

Result<void> PassthroughFs::Unpark(Inode& inode, int fd) const {
  {
    std::lock_guard lock(inode.park_mu());
    if (!inode.parked()) {
      if (fd >= 0) close(fd);
      return Ok();
    }
    if (fd < 0) {
      auto* handle =
          reinterpret_cast<struct file_handle*>(const_cast<unsigned char*>(inode.handle().data()));
      fd = open_by_handle_at(handle_mount_fd_, handle, O_PATH | O_CLOEXEC);
      if (fd < 0) return Errno{ESTALE};
    }
    inode.Unpark(fd);
  }
  parked_now_.fetch_sub(1, std::memory_order_relaxed);
  // A reopened descriptor counts like a new node's (and may park others).
  shedder_.Added(Load());
  return Ok();
}

bool PassthroughFs::IsSameFile(Inode& inode, int fd, mode_t mode) const {
  if (inode.type() != (mode & S_IFMT)) return false;
  // A node holding a descriptor keeps its inode number from being reused;
  // a parked one holds only the handle, which names one inode generation.
  std::shared_lock lock(inode.park_mu());
  if (!inode.parked()) return true;
  std::vector<unsigned char> handle = HandleOf(fd, source_mount_id_);
  return handle.empty() || handle == inode.handle();
}

PassthroughFs::InodePtr PassthroughFs::KeepIfKnown(int dir_fd, const std::string& name) const {
  if (parked_now_.load(std::memory_order_relaxed) == 0) return nullptr;
  struct stat st;
  if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return nullptr;
  InodePtr inode = table_.Find(passthrough::InodeKey::Of(st));
  // Reopened while the file exists; otherwise it stays parked, as before.
  if (inode != nullptr && inode->parked()) (void)Unpark(*inode);
  return inode;
}

PassthroughFs::InodePtr PassthroughFs::Node(NodeId id) const {
  InodePtr inode = table_.Get(id);
  if (inode != nullptr && inode->parked() && !Unpark(*inode).ok()) return nullptr;
  return inode;
}

std::vector<NodeId> PassthroughFs::PickNodesToShed(size_t count) {
  // Parked inodes hold nothing (the kernel could give back nothing either).
  std::vector<NodeId> offer;
  size_t freed = 0;
  auto holding = [](const Inode& inode) { return !inode.parked(); };
  for (NodeId id : table_.LeastRecentlyUsed(std::max<size_t>(count, 1), holding)) {
    if (freed >= count) break;
    if (Park(id)) {
      ++freed;
      continue;
    }
    InodePtr inode = table_.Get(id);
    if (inode != nullptr && !inode->parked()) {
      offer.push_back(id);
      ++freed;
    }
  }
  return offer;
}

}  // namespace lamina

// OverlayFs: parking nodes, so that the kernel may keep more of the tree
// cached than the daemon may hold descriptors.
//
// Every node pins O_PATH descriptors of its layer objects, and the process
// may hold only RLIMIT_NOFILE of them (20,000 on some hosts), while the
// kernel keeps every inode a walk touched. Asking the kernel to forget nodes
// bounds the descriptors but costs a LOOKUP round trip for each name used
// again. A non-directory whose objects its parent can find again by name
// needs no descriptor while no request uses it: parking closes them and
// leaves the node, its id and the kernel's cache as they were; the next
// request that gets the node (Get, or a lookup that finds it) reopens them
// by parent and name. Only a node with one layer object is parked; its
// st_ino is that object's (Adopt), which checks the reopened one.
//
// Safety: a node is parked only while the inode table holds the only
// reference (InodeTable::ReplaceUnshared, under the table's lock): the
// table swaps in a stand-in without descriptors, and the old node, released
// by its last owner, closes them after every request that used it is done.
// Every request gets nodes from the table, which unparks first. Not parked:
// directories (their descriptors are how children are found), copied-up
// files (an upper and a lower object), open files, nodes whose upper
// file came from the index or whose lower object came from a redirect or an
// origin record (their parent cannot find them by name), and unnamed ones.
// A plain lower file listed by READDIRPLUS is born parked (AdoptUnopened):
// it is reopened the same way on its first use. Before this mount removes
// an upper object, KeepIfKnown unparks its node, so that a deleted object
// keeps its descriptor (and inode number) until the kernel forgets it.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include "overlay/overlay_fs.h"

namespace lamina {

using overlay::LowerRef;
using overlay::Node;

namespace {

// Whether `name` in `dir_fd` is the object `fd` holds.
bool FoundByName(int fd, int dir_fd, const std::string& name) {
  struct stat held, named;
  return fd >= 0 && dir_fd >= 0 &&
         fstatat(fd, "", &held, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 &&
         fstatat(dir_fd, name.c_str(), &named, AT_SYMLINK_NOFOLLOW) == 0 &&
         held.st_dev == named.st_dev && held.st_ino == named.st_ino;
}

int LowerDirFd(const Node& dir, int layer) {
  for (const LowerRef& lower : dir.lowers) {
    if (lower.layer == layer) return lower.fd;
  }
  return -1;
}

}  // namespace

bool OverlayFs::Park(NodeId id) {
  // Look first, holding the node (so nothing closes its descriptors
  // meanwhile); park after letting go of it, if nobody took it meanwhile.
  // Only a node with one object is parked: its st_ino is that object's
  // (Adopt), which is how reopening checks it found the same one.
  int upper_fd = -1, lower_fd = -1;
  {
    NodePtr node = table_.Get(id);
    if (node == nullptr || node->is_dir() || node->parked.load(std::memory_order_acquire) ||
        node->opens.load(std::memory_order_relaxed) > 0 || node->lowers.size() > 1) {
      return false;
    }
    NodePtr parent;
    std::string name;
    // Shedding never waits for a node's lock: its holder may be waiting for
    // the table, or be this very thread (a node in use is no candidate).
    {
      std::shared_lock lock(node->mu, std::try_to_lock);
      if (!lock.owns_lock()) return false;
      if (node->lower_backed_opens > 0 || node->upper_read_fd >= 0) return false;
      parent = node->parent;
      name = node->name;
      upper_fd = node->upper_fd;
    }
    if (parent == nullptr || name.empty() || (upper_fd >= 0) == !node->lowers.empty()) {
      return false;
    }
    int parent_upper;
    {
      std::shared_lock lock(parent->mu, std::try_to_lock);
      if (!lock.owns_lock()) return false;
      parent_upper = parent->upper_fd;
    }
    if (upper_fd >= 0 && !FoundByName(upper_fd, parent_upper, name)) return false;
    if (!node->lowers.empty()) {
      lower_fd = node->lowers.front().fd;
      if (!FoundByName(lower_fd, LowerDirFd(*parent, node->lowers.front().layer), name)) {
        return false;
      }
    }
  }
  // The stand-in: everything but the descriptors. The old node closes them
  // when released below, as its last owner.
  NodePtr old = table_.ReplaceUnshared(id, [&](Node& node) -> NodePtr {
    std::shared_lock lock(node.mu, std::try_to_lock);
    if (!lock.owns_lock()) return nullptr;
    // Unchanged since the look above (no copy-up, no open in between)?
    const int lower_now = node.lowers.empty() ? -1 : node.lowers.front().fd;
    if (node.upper_fd != upper_fd || lower_now != lower_fd ||
        node.opens.load(std::memory_order_relaxed) > 0 || node.lower_backed_opens > 0 ||
        node.upper_read_fd >= 0) {
      return nullptr;
    }
    auto parked = std::make_shared<Node>(node.type, node.ino);
    {
      std::unique_lock parked_lock(parked->mu);
      parked->parent = node.parent;
      parked->name = node.name;
      parked->lower_backed_id = node.lower_backed_id;
    }
    for (const LowerRef& lower : node.lowers) {
      parked->lowers.push_back(LowerRef{lower.layer, -1, lower.marks});
    }
    parked->lower_nlink = node.lower_nlink;
    parked->parked.store(true, std::memory_order_relaxed);
    parked->CountDescriptorsIn(&held_descriptors_);
    return parked;
  });
  if (old == nullptr) return false;
  old.reset();
  parked_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

Result<void> OverlayFs::Unpark(Node& node) const {
  NodePtr parent;
  std::string name;
  {
    std::shared_lock lock(node.mu);
    if (!node.parked.load(std::memory_order_relaxed)) return Ok();
    parent = node.parent;
    name = node.name;
  }
  if (parent == nullptr) return Errno{ESTALE};
  // Its one object: the lower one if it has one, else the upper one.
  const bool lower = !node.lowers.empty();
  const int layer = lower ? node.lowers.front().layer : 0;
  const int dir_fd = lower ? LowerDirFd(*parent, layer) : parent->UpperFd();
  int fd = dir_fd < 0 ? -1 : openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd >= 0 && (fstat(fd, &st) != 0 || (st.st_mode & S_IFMT) != node.type ||
                  layers_.MergedInode(layer, st.st_ino) != node.ino)) {
    close(fd);
    fd = -1;
  }
  if (fd < 0) return Errno{ESTALE};
  {
    std::unique_lock lock(node.mu);
    if (!node.parked.load(std::memory_order_relaxed)) {  // another request was first
      close(fd);
      return Ok();
    }
    node.Unpark(lower ? -1 : fd, lower ? fd : -1);
  }
  // Reopened descriptors count like new ones (and may make others park).
  shedder_.Added(held_descriptors());
  return Ok();
}

}  // namespace lamina

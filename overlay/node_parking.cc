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
// by parent and name and checks each is the same object (device and inode).
//
// Safety: a node is parked only while the inode table holds the only
// reference (InodeTable::ReplaceUnshared, under the table's lock): the
// table swaps in a stand-in without descriptors, and the old node, released
// by its last owner, closes them after every request that used it is done.
// Every request gets nodes from the table, which unparks first. Not parked: directories (their
// descriptors are how children are found), open files, nodes whose upper
// file came from the index or whose lower object came from a redirect or an
// origin record (their parent cannot find them by name), and unnamed ones.

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
using overlay::NodeKey;

namespace {

std::optional<NodeKey> IdentityOf(int fd) {
  struct stat st;
  if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return std::nullopt;
  return NodeKey{st.st_dev, st.st_ino};
}

// `fd`'s object, if `name` in `dir_fd` is that very object.
std::optional<NodeKey> FoundByName(int fd, int dir_fd, const std::string& name) {
  if (fd < 0 || dir_fd < 0) return std::nullopt;
  std::optional<NodeKey> held = IdentityOf(fd);
  struct stat st;
  if (!held || fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
      NodeKey{st.st_dev, st.st_ino} != *held) {
    return std::nullopt;
  }
  return held;
}

// Opens `name` in `dir_fd` if it is still `want`; -1 otherwise.
int ReopenAs(int dir_fd, const std::string& name, const NodeKey& want) {
  if (dir_fd < 0) return -1;
  int fd = openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  if (IdentityOf(fd) != want) {
    close(fd);
    return -1;
  }
  return fd;
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
  Node::ParkedObjects as;
  int upper_fd = -1, lower_fd = -1;
  {
    NodePtr node = table_.Get(id);
    if (node == nullptr || node->is_dir() || node->parked.load(std::memory_order_acquire) ||
        node->opens.load(std::memory_order_relaxed) > 0 || node->lowers.size() > 1) {
      return false;
    }
    NodePtr parent;
    std::string name;
    {
      std::shared_lock lock(node->mu);
      if (node->lower_backed_opens > 0 || node->upper_read_fd >= 0) return false;
      parent = node->parent;
      name = node->name;
      upper_fd = node->upper_fd;
    }
    if (parent == nullptr || name.empty()) return false;
    if (upper_fd >= 0) {
      as.upper = FoundByName(upper_fd, parent->UpperFd(), name);
      if (!as.upper) return false;
    }
    if (!node->lowers.empty()) {
      lower_fd = node->lowers.front().fd;
      as.lower = FoundByName(lower_fd, LowerDirFd(*parent, node->lowers.front().layer), name);
      if (!as.lower) return false;
    }
  }
  // The stand-in: everything but the descriptors. The old node closes them
  // when released below, as its last owner.
  NodePtr old = table_.ReplaceUnshared(id, [&](Node& node) -> NodePtr {
    std::shared_lock lock(node.mu);
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
      parked->upper_marks = node.upper_marks;
      parked->parent = node.parent;
      parked->name = node.name;
      parked->lower_path = node.lower_path;
      parked->lower_backed_id = node.lower_backed_id;
      parked->parked_as = as;
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
  Node::ParkedObjects as;
  {
    std::shared_lock lock(node.mu);
    if (!node.parked.load(std::memory_order_relaxed)) return Ok();
    parent = node.parent;
    name = node.name;
    as = node.parked_as;
  }
  if (parent == nullptr) return Errno{ESTALE};
  int upper = -1, lower = -1;
  if (as.upper) {
    upper = ReopenAs(parent->UpperFd(), name, *as.upper);
    if (upper < 0) return Errno{ESTALE};
  }
  if (as.lower) {
    lower = ReopenAs(LowerDirFd(*parent, node.lowers.front().layer), name, *as.lower);
    if (lower < 0) {
      if (upper >= 0) close(upper);
      return Errno{ESTALE};
    }
  }
  {
    std::unique_lock lock(node.mu);
    if (!node.parked.load(std::memory_order_relaxed)) {  // another request was first
      if (upper >= 0) close(upper);
      if (lower >= 0) close(lower);
      return Ok();
    }
    node.Unpark(upper, lower);
  }
  // Reopened descriptors count like new ones (and may make others park).
  shedder_.Added(held_descriptors());
  return Ok();
}

}  // namespace lamina

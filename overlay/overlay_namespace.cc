// OverlayFs: creating, linking, removing and renaming names.
//
// Every change lands in the upper layer after the parent directory is
// copied up. Whiteouts are staged in work/work and moved into place with
// one rename (RENAME_EXCHANGE when they replace an object), so a name is
// never briefly exposed from a lower layer. New objects are created by the
// daemon and then given the caller's owner (setgid directories honoured),
// which is what kernel overlayfs does with its mounter credentials.

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "overlay/dir_merge.h"
#include "overlay/index.h"
#include "overlay/layer_lookup.h"
#include "overlay/overlay_fs.h"
#include "passthrough/credentials.h"

namespace lamina {

using overlay::DirMarks;
using overlay::FdPath;
using overlay::Node;

namespace {

Result<void> CheckNewName(std::string_view name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos) {
    return Errno{EINVAL};
  }
  if (name.size() > NAME_MAX) return Errno{ENAMETOOLONG};
  // The merged view never shows OCI whiteout names, so it cannot make them.
  if (overlay::IsHiddenName(name)) return Errno{EINVAL};
  return Ok();
}

// A maker's result for syscalls that leave no descriptor open.
Result<int> NoDescriptor(int rc) {
  if (rc != 0) return LastErrno();
  return -1;
}

bool IsEmptyListing(const std::vector<overlay::DirItem>& items) {
  return items.size() <= 2;
}

// Removes what is left in an upper directory whose merged view is empty:
// whiteouts and OCI markers only.
Result<void> ClearWhiteouts(int upper_dir_fd) {
  int fd = openat(upper_dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return LastErrno();
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    close(fd);
    return LastErrno();
  }
  std::vector<std::string> names;
  while (struct dirent* e = readdir(dir)) {
    std::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  closedir(dir);
  for (const std::string& name : names) {
    if (unlinkat(upper_dir_fd, name.c_str(), 0) != 0) return LastErrno();
  }
  return Ok();
}

}  // namespace

bool OverlayFs::NameExistsBelow(const Node& dir, std::string_view name) const {
  return layer_lookup_.ExistsBelow(overlay::ParentDir{-1, &dir.lowers}, name);
}

Result<void> OverlayFs::WhiteoutName(Node& dir, std::string_view name, bool replace) {
  const int upper_dir_fd = dir.UpperFd();
  const int staging = layers_.staging_fd();
  const std::string staged = layers_.StagingName();
  Result<bool> xattr_form = overlay::CreateStagedWhiteout(layers_, staged);
  if (!xattr_form.ok()) return Errno{xattr_form.error()};
  if (*xattr_form) {
    Result<void> marked = overlay::MarkXattrWhiteouts(layers_, upper_dir_fd);
    if (!marked.ok()) {
      unlinkat(staging, staged.c_str(), 0);
      return marked;
    }
    // Listings of the directory leave such whiteouts out from now on.
    std::unique_lock lock(dir.mu);
    dir.upper_marks.xattr_whiteouts = true;
  }
  std::string target(name);
  if (!replace) {
    Result<void> moved = CheckSyscall(
        renameat2(staging, staged.c_str(), upper_dir_fd, target.c_str(), RENAME_NOREPLACE));
    if (!moved.ok()) unlinkat(staging, staged.c_str(), 0);
    return moved;
  }
  // Swap the whiteout in; the replaced object lands in the staging area.
  Result<void> swapped = CheckSyscall(
      renameat2(staging, staged.c_str(), upper_dir_fd, target.c_str(), RENAME_EXCHANGE));
  if (!swapped.ok()) {
    unlinkat(staging, staged.c_str(), 0);
    return swapped;
  }
  struct stat st;
  bool was_dir =
      fstatat(staging, staged.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
  return CheckSyscall(unlinkat(staging, staged.c_str(), was_dir ? AT_REMOVEDIR : 0));
}

Result<std::pair<NodeId, OverlayFs::NodePtr>> OverlayFs::Pin(const NodePtr& dir,
                                                             std::string_view name) {
  Result<Resolved> resolved = Resolve(*dir, name);
  if (!resolved.ok()) return Errno{resolved.error()};
  Result<Entry> entry = Adopt(dir, name, std::move(*resolved));
  if (!entry.ok()) return Errno{entry.error()};
  return std::make_pair(entry->node, Get(entry->node));
}

Result<Entry> OverlayFs::CreateObject(const Ctx& ctx, NodeId parent, std::string_view name,
                                      mode_t type, MakeFn make, bool new_inode, int* opened) {
  Result<void> ok = RequireUpper();
  if (ok.ok()) ok = CheckNewName(name);
  if (!ok.ok()) return Errno{ok.error()};
  Result<NodePtr> dir = Dir(parent);
  if (!dir.ok()) return Errno{dir.error()};
  bool over_whiteout = false;
  if (!(*dir)->TakeAbsent(name, &over_whiteout)) {
    Result<Resolved> existing = Resolve(**dir, name, &over_whiteout);
    if (existing.ok()) {
      existing->Release();
      return Errno{EEXIST};
    }
    if (existing.error() != ENOENT) return Errno{existing.error()};
  }
  // (A directory copied up just now has no whiteouts; one that had an
  // upper directory was looked at by Resolve, under the kernel's lock on
  // the directory, so over_whiteout stays true.)
  ok = CopyUp(*dir);
  if (!ok.ok()) return Errno{ok.error()};
  const int upper_dir = (*dir)->UpperFd();
  std::string target(name);
  struct stat dir_st;
  if (fstat(upper_dir, &dir_st) != 0) return LastErrno();
  UseCallerUmask(ctx);

  // Over a whiteout, build the object aside and swap it in atomically.
  const int staging = layers_.staging_fd();
  const std::string staged = over_whiteout ? layers_.StagingName() : std::string();
  int where = over_whiteout ? staging : upper_dir;
  const std::string& what = over_whiteout ? staged : target;
  Result<int> made = make(where, what);
  if (!made.ok()) return Errno{made.error()};
  // Closes the maker's descriptor unless it goes to the caller.
  struct MadeFd {
    int fd;
    ~MadeFd() {
      if (fd >= 0) close(fd);
    }
  } made_fd{*made};

  // The caller owns it; a setgid directory passes on its group. (A new
  // hard link is an existing inode and keeps its owner.)
  const bool is_dir = S_ISDIR(type);
  const overlay::IdMap& ids = options_.ids;
  gid_t gid = (dir_st.st_mode & S_ISGID) ? dir_st.st_gid : ids.GidToLayer(ctx.gid);
  // (The daemon's own ids need no chown: it made the object with them.)
  if (ok.ok() && new_inode &&
      (ids.UidToLayer(ctx.uid) != geteuid() ||
       gid != ((dir_st.st_mode & S_ISGID) ? dir_st.st_gid : getegid()))) {
    const uid_t uid = ids.UidToLayer(ctx.uid);
    ok = CheckSyscall(made_fd.fd >= 0
                          ? fchown(made_fd.fd, uid, gid)
                          : fchownat(where, what.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW));
    if (ids.squashed()) ok = Ok();
  }
  if (ok.ok() && new_inode && is_dir && (dir_st.st_mode & S_ISGID)) {
    struct stat st;
    ok = CheckSyscall(fstatat(where, what.c_str(), &st, AT_SYMLINK_NOFOLLOW));
    if (ok.ok())
      ok = CheckSyscall(fchmodat(where, what.c_str(), (st.st_mode & 07777) | S_ISGID, 0));
  }
  const bool opaque = ok.ok() && over_whiteout && is_dir;
  if (opaque) {
    // The name was deleted below: the new directory must not show it.
    Result<int> fd = overlay::OpenPathAt(staging, staged);
    ok = fd.ok() ? overlay::MarkOpaque(layers_, *fd) : Result<void>(Errno{fd.error()});
    if (fd.ok()) close(*fd);
  }
  if (ok.ok() && over_whiteout) {
    ok = CheckSyscall(
        renameat2(staging, staged.c_str(), upper_dir, target.c_str(), RENAME_EXCHANGE));
    if (ok.ok()) ok = CheckSyscall(unlinkat(staging, staged.c_str(), 0));  // the old whiteout
    if (!ok.ok()) {
      unlinkat(staging, staged.c_str(), is_dir ? AT_REMOVEDIR : 0);
      return Errno{ok.error()};
    }
  }
  if (!ok.ok()) {
    unlinkat(where, what.c_str(), is_dir ? AT_REMOVEDIR : 0);
    return Errno{ok.error()};
  }
  if (!new_inode) {
    (*dir)->DropListing();
    // A new name of an existing object: its identity may lie below.
    Result<Resolved> linked = Resolve(**dir, name);
    if (!linked.ok()) return Errno{linked.error()};
    return Adopt(*dir, name, std::move(*linked));
  }
  // A new object has nothing below it (the name resolved to nothing, and a
  // directory made over a whiteout is opaque): what a lookup would find is
  // known without one.
  Resolved created;
  Result<int> path_fd = overlay::OpenPathAt(upper_dir, name);
  if (!path_fd.ok()) return Errno{path_fd.error()};
  created.upper_fd = *path_fd;
  if (fstat(made_fd.fd >= 0 ? made_fd.fd : created.upper_fd, &created.top) != 0) {
    created.Release();
    return LastErrno();
  }
  created.type = created.top.st_mode & S_IFMT;
  created.upper_marks.opaque = opaque;
  (*dir)->DropListing();
  Result<Entry> entry = Adopt(*dir, name, std::move(created), /*created=*/true);
  if (entry.ok() && opened != nullptr) std::swap(*opened, made_fd.fd);
  return entry;
}

Result<Entry> OverlayFs::Mknod(const Ctx& ctx, NodeId parent, std::string_view name, mode_t mode,
                               dev_t rdev) {
  // A 0/0 character device is how the upper layer stores a whiteout: made
  // through the mount, the new name would vanish. The kernel refuses it.
  if (S_ISCHR(mode) && rdev == 0) return Errno{EPERM};
  return CreateObject(ctx, parent, name, mode & S_IFMT, [&](int dir, const std::string& n) {
    return NoDescriptor(mknodat(dir, n.c_str(), mode, rdev));
  });
}

Result<Entry> OverlayFs::Mkdir(const Ctx& ctx, NodeId parent, std::string_view name, mode_t mode) {
  return CreateObject(ctx, parent, name, S_IFDIR, [&](int dir, const std::string& n) {
    return NoDescriptor(mkdirat(dir, n.c_str(), mode & 07777));
  });
}

Result<Entry> OverlayFs::Symlink(const Ctx& ctx, NodeId parent, std::string_view name,
                                 std::string_view target) {
  std::string link(target);
  return CreateObject(ctx, parent, name, S_IFLNK, [&](int dir, const std::string& n) {
    return NoDescriptor(symlinkat(link.c_str(), dir, n.c_str()));
  });
}

Result<Entry> OverlayFs::Link(const Ctx& ctx, NodeId id, NodeId new_parent,
                              std::string_view new_name) {
  NodePtr node = Get(id);
  if (node == nullptr) return Errno{ENOENT};
  if (node->is_dir()) return Errno{EPERM};
  Result<void> up = CopyUp(node);
  if (!up.ok()) return Errno{up.error()};
  std::string source = FdPath(node->UpperFd());
  Result<Entry> entry = CreateObject(
      ctx, new_parent, new_name, node->type,
      [&](int dir, const std::string& n) {
        return NoDescriptor(linkat(AT_FDCWD, source.c_str(), dir, n.c_str(), AT_SYMLINK_FOLLOW));
      },
      /*new_inode=*/false);
  if (!entry.ok()) return entry;
  // The new name is the same object: hand out the existing node (the
  // lookup reference CreateObject took for the name's own node goes back).
  if (entry->node != id) {
    table_.Forget(entry->node, 1);
    if (!table_.AddRef(id)) return Errno{ENOENT};
  }
  // The new name's attributes are the object's (already as the view shows
  // them); only the inode number is the node's.
  entry->node = id;
  entry->attr.st_ino = node->ino;
  return entry;
}

Result<void> OverlayFs::RemoveName(NodeId parent, std::string_view name, bool directory) {
  // Never a layer directory itself or its parent (the kernel sends neither).
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos) {
    return Errno{EINVAL};
  }
  Result<void> ok = RequireUpper();
  if (!ok.ok()) return ok;
  Result<NodePtr> dir = Dir(parent);
  if (!dir.ok()) return Errno{dir.error()};
  if (!directory) {
    // The common case needs no resolve: a non-directory in the upper layer
    // is removed (or whited out, if the name exists below) as it is.
    const int upper_dir = (*dir)->UpperFd();
    std::optional<struct stat> st;
    if (upper_dir >= 0) st = overlay::StatAt(upper_dir, name);
    if (st && !S_ISDIR(st->st_mode) && !overlay::IsWhiteout(layers_, upper_dir, name, *st)) {
      // A name of an indexed lower hard link: the index entry goes when
      // the last name does.
      int inode_fd = -1;
      if (layers_.index_fd() >= 0 && S_ISREG(st->st_mode) && st->st_nlink > 1) {
        Result<int> fd = overlay::OpenPathAt(upper_dir, name);
        if (fd.ok()) inode_fd = *fd;
      }
      const NodePtr kept = KeepIfKnown(*st);
      Result<void> removed = NameExistsBelow(**dir, name)
                                 ? WhiteoutName(**dir, name, /*replace=*/true)
                                 : CheckSyscall(unlinkat(upper_dir, std::string(name).c_str(), 0));
      if (inode_fd >= 0) {
        if (removed.ok()) overlay::DropIndexIfUnlinked(layers_, inode_fd);
        close(inode_fd);
      }
      return removed;
    }
  }
  Result<Resolved> victim = Resolve(**dir, name);
  if (!victim.ok()) return Errno{victim.error()};
  if (!directory && S_ISREG(victim->type) && layers_.index_fd() >= 0 &&
      (victim->upper_fd < 0 || victim->upper_from_index) && victim->lower_nlink > 1) {
    if (victim->upper_fd < 0) {  // refused before anything is copied
      Result<void> deletable = CheckLowerDeletable(victim->lowers.front().fd);
      if (!deletable.ok()) {
        victim->Release();
        return deletable;
      }
    }
    // A lower name of a hard link: like the kernel, link it up (copying
    // the file into the index first if no name was) so that the index
    // records the view's link count, then remove it as an upper name.
    Result<Entry> pinned = Adopt(*dir, name, std::move(*victim));
    if (!pinned.ok()) return Errno{pinned.error()};
    NodePtr node = Get(pinned->node);
    ok = node != nullptr ? CopyUpAs(node, *dir, std::string(name)) : Result<void>(Errno{ENOENT});
    table_.Forget(pinned->node, 1);
    if (!ok.ok()) return ok;
    if (!overlay::StatAt((*dir)->UpperFd(), name)) return Errno{EIO};  // never loop
    return RemoveName(parent, name, directory);
  }
  bool is_dir = S_ISDIR(victim->type);
  bool in_upper = victim->upper_fd >= 0 && !victim->upper_from_index;
  if (directory && !is_dir) ok = Errno{ENOTDIR};
  if (!directory && is_dir) ok = Errno{EISDIR};
  // The kernel refuses to delete an immutable or append-only object, or
  // anything in such a directory, and says so before it looks at the type
  // or whether a directory is empty: an upper object would refuse only
  // once it is unlinked, a lower one is only whited out, so look.
  const int victim_fd = victim->upper_fd >= 0    ? victim->upper_fd
                        : victim->lowers.empty() ? -1
                                                 : victim->lowers.front().fd;
  Result<void> deletable = CheckRemovable((*dir)->TopFd(), victim_fd, victim->upper_fd >= 0);
  if (!deletable.ok()) ok = deletable;
  if (ok.ok() && is_dir) {
    overlay::DirSources sources{victim->upper_fd, victim->upper_marks, &victim->lowers, 0};
    if (!IsEmptyListing(overlay::MergeListing(layers_, sources))) ok = Errno{ENOTEMPTY};
    if (ok.ok() && in_upper) ok = ClearWhiteouts(victim->upper_fd);
  }
  victim->Release();
  if (!ok.ok()) return ok;
  ok = CopyUp(*dir);
  if (!ok.ok()) return ok;
  const int upper_dir = (*dir)->UpperFd();
  // A deleted lower object leaves a whiteout; nothing is ever copied up.
  const NodePtr kept = in_upper ? KeepIfKnown(victim->top) : nullptr;
  if (NameExistsBelow(**dir, name)) return WhiteoutName(**dir, name, in_upper);
  return CheckSyscall(unlinkat(upper_dir, std::string(name).c_str(), is_dir ? AT_REMOVEDIR : 0));
}

OverlayFs::NodePtr OverlayFs::KeepIfKnown(const struct stat& st) const {
  // Other names keep the object alive; directories are never parked.
  if (S_ISDIR(st.st_mode) || st.st_nlink > 1) return nullptr;
  NodePtr node = table_.Find(overlay::NodeKey{st.st_dev, st.st_ino});
  if (node == nullptr || !node->parked.load(std::memory_order_acquire)) return node;
  // Reopened while its name still leads to it (an unknown outcome leaves
  // the node parked, as before: its requests then answer ESTALE).
  (void)Unpark(*node);
  return node;
}

Result<void> OverlayFs::Unlink(const Ctx&, NodeId parent, std::string_view name) {
  Result<void> removed = RemoveName(parent, name, /*directory=*/false);
  if (removed.ok()) DropListing(parent);
  return removed;
}

Result<void> OverlayFs::Rmdir(const Ctx&, NodeId parent, std::string_view name) {
  Result<void> removed = RemoveName(parent, name, /*directory=*/true);
  if (removed.ok()) DropListing(parent);
  return removed;
}

void OverlayFs::DropListing(NodeId dir) {
  if (NodePtr node = Get(dir)) node->DropListing();
}

Result<void> OverlayFs::RecordRedirect(Node& dir, bool same_parent) {
  std::string redirect;
  {
    std::shared_lock lock(dir.mu);
    redirect = dir.dir->redirect;
  }
  // A record that stays true: any for a move within the directory, a
  // path from the root for any move.
  if (!redirect.empty() && (same_parent || redirect[0] == '/')) return Ok();
  if (same_parent) {
    std::shared_lock lock(dir.mu);
    redirect = dir.name;
  } else {
    // The path from the root, right to left: each directory's own record
    // where it has one (a path from the root ends the walk), else its name.
    redirect.clear();
    NodePtr held;  // keeps `at` alive once it is an ancestor
    const Node* at = &dir;
    for (;;) {
      NodePtr parent;
      std::string part;
      {
        std::shared_lock lock(at->mu);
        parent = at->parent;
        part = at->dir->redirect.empty() ? at->name : at->dir->redirect;
      }
      if (parent == nullptr) break;  // the root
      if (!part.empty() && part[0] == '/') {
        redirect = part + redirect;
        break;
      }
      redirect = "/" + part + redirect;
      if (redirect.size() > kMaxRedirect) break;
      held = std::move(parent);
      at = held.get();
    }
    // Past the kernel's limit (redirect_max) it answers EXDEV, and mv(1)
    // copies instead.
    if (redirect.size() > kMaxRedirect) return Errno{EXDEV};
  }
  Result<void> written = overlay::WriteRedirect(layers_, dir.UpperFd(), redirect);
  if (!written.ok()) return written;
  std::unique_lock lock(dir.mu);
  dir.dir->redirect = redirect;
  return Ok();
}

Result<void> OverlayFs::Rename(const Ctx&, NodeId parent, std::string_view name, NodeId new_parent,
                               std::string_view new_name, uint32_t flags) {
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0) return Errno{EINVAL};
  Result<void> ok = RequireUpper();
  if (ok.ok()) ok = CheckNewName(new_name);
  if (!ok.ok()) return ok;
  Result<NodePtr> from_dir = Dir(parent);
  Result<NodePtr> to_dir = Dir(new_parent);
  if (!from_dir.ok()) return Errno{from_dir.error()};
  if (!to_dir.ok()) return Errno{to_dir.error()};
  const bool exchange = (flags & RENAME_EXCHANGE) != 0;

  // Pin both ends as nodes for the duration (dropped at the end).
  Result<std::pair<NodeId, NodePtr>> source = Pin(*from_dir, name);
  if (!source.ok()) return Errno{source.error()};
  std::vector<NodeId> pinned = {source->first};
  Result<std::pair<NodeId, NodePtr>> target = Pin(*to_dir, new_name);
  if (target.ok()) pinned.push_back(target->first);
  auto finish = [&](Result<void> result) {
    for (NodeId id : pinned) table_.Forget(id, 1);
    if (result.ok()) {
      (*from_dir)->DropListing();
      (*to_dir)->DropListing();
    }
    return result;
  };
  if (!target.ok() && target.error() != ENOENT) return finish(Errno{target.error()});
  if (exchange && !target.ok()) return finish(Errno{ENOENT});
  if (target.ok() && (flags & RENAME_NOREPLACE) != 0) return finish(Errno{EEXIST});
  const NodePtr& moving = source->second;
  if (target.ok() && target->second == moving) return finish(Ok());  // same object

  // A directory that merges lower content keeps it after a move through an
  // overlay.redirect record (the kernel's redirect_dir=on), also when two
  // are exchanged (both get one); with redirects off the answer is EXDEV
  // and callers fall back to copying.
  auto merged_dir = [](const NodePtr& n) { return n->is_dir() && n->HasLower(); };
  const bool redirect = merged_dir(moving);
  const bool target_redirect = exchange && merged_dir(target->second);
  if ((redirect || target_redirect) && !options_.redirect_dir) return finish(Errno{EXDEV});
  if (target.ok() && !exchange) {
    const NodePtr& victim = target->second;
    if (moving->is_dir() != victim->is_dir()) {
      return finish(Errno{moving->is_dir() ? ENOTDIR : EISDIR});
    }
    if (victim->is_dir()) {
      overlay::DirSources sources{victim->UpperFd(), {}, &victim->lowers, 0};
      {
        std::shared_lock lock(victim->mu);
        sources.upper_marks = victim->upper_marks;
      }
      if (!IsEmptyListing(overlay::MergeListing(layers_, sources))) {
        return finish(Errno{ENOTEMPTY});
      }
      if (sources.upper_fd >= 0) ok = ClearWhiteouts(sources.upper_fd);
    }
  }
  // Moving or replacing an immutable or append-only lower object is
  // refused before anything is copied (upper ones refuse by themselves).
  std::vector<const NodePtr*> ends = {&moving};
  if (target.ok()) ends.push_back(&target->second);
  for (const NodePtr* end : ends) {
    if (ok.ok() && (*end)->UpperFd() < 0 && (*end)->HasLower()) {
      ok = CheckLowerDeletable((*end)->lowers.front().fd);
    }
  }
  // Copy-up links up the very names involved, which matters for lower
  // hard links (index.h): a target replaced by the rename must be an upper
  // name so that the index counts its going.
  if (ok.ok()) ok = CopyUpAs(moving, *from_dir, std::string(name));
  if (ok.ok() && target.ok() && (exchange || UsesIndex(*target->second))) {
    ok = CopyUpAs(target->second, *to_dir, std::string(new_name));
  }
  if (ok.ok()) ok = CopyUp(*to_dir);
  if (!ok.ok()) return finish(ok);
  // Held so the index entry of a replaced hard link can go with its last name.
  const int replaced_fd =
      target.ok() && !exchange && UsesIndex(*target->second) ? target->second->UpperFd() : -1;

  const int from_upper = (*from_dir)->UpperFd();
  const int to_upper = (*to_dir)->UpperFd();
  std::string from_name(name);
  std::string to_name(new_name);
  // Where a directory that moves finds its lower directories from now on
  // (a redirect, so lookups at its new name follow it instead of the
  // name), or, when it merges nothing below, that it hides whatever the
  // layers below hold under its new name.
  const bool same_parent = *from_dir == *to_dir;
  auto keep_lower_view = [&](const NodePtr& dir, bool merged, bool new_name_below) {
    if (merged) return RecordRedirect(*dir, same_parent);
    if (dir->is_dir() && new_name_below) return overlay::MarkOpaque(layers_, dir->UpperFd());
    return Result<void>(Ok());
  };
  if (exchange) {
    ok = keep_lower_view(moving, redirect, NameExistsBelow(**to_dir, new_name));
    if (ok.ok()) {
      ok = keep_lower_view(target->second, target_redirect, NameExistsBelow(**from_dir, name));
    }
    if (ok.ok()) {
      ok = CheckSyscall(
          renameat2(from_upper, from_name.c_str(), to_upper, to_name.c_str(), RENAME_EXCHANGE));
    }
  } else {
    bool source_below = NameExistsBelow(**from_dir, name);
    bool target_below = NameExistsBelow(**to_dir, new_name);
    ok = keep_lower_view(moving, redirect, target_below);
    bool target_whiteout = !target.ok() && overlay::StatAt(to_upper, new_name).has_value();
    if (ok.ok() && target_whiteout) {
      // Swap with the whiteout: it lands on the old name, which needs one
      // exactly when the old name exists below.
      ok = CheckSyscall(
          renameat2(from_upper, from_name.c_str(), to_upper, to_name.c_str(), RENAME_EXCHANGE));
      if (ok.ok() && !source_below) ok = CheckSyscall(unlinkat(from_upper, from_name.c_str(), 0));
    } else if (ok.ok()) {
      // With the old name present below, the move and the whiteout that
      // hides it must happen in one step: after a crash between a plain
      // rename and the whiteout the lower object would show again under
      // the old name, beside the moved one. RENAME_WHITEOUT does both (as
      // the kernel's overlayfs does); where the upper filesystem refuses it,
      // the two steps remain.
      bool moved = false;
      if (source_below) {
        if (renameat2(from_upper, from_name.c_str(), to_upper, to_name.c_str(), RENAME_WHITEOUT) ==
            0) {
          moved = true;
        } else if (errno != EINVAL && errno != EPERM && errno != EOPNOTSUPP) {
          ok = Errno{errno};
        }
      }
      if (ok.ok() && !moved) {
        ok = CheckSyscall(renameat(from_upper, from_name.c_str(), to_upper, to_name.c_str()));
        if (ok.ok() && source_below) ok = WhiteoutName(**from_dir, name, /*replace=*/false);
      }
    }
  }
  if (ok.ok() && replaced_fd >= 0) overlay::DropIndexIfUnlinked(layers_, replaced_fd);
  // As on the kernel, a directory that receives an object continuing a
  // lower one from another directory is marked impure.
  if (ok.ok() && *from_dir != *to_dir) {
    if (moving->HasLower()) ok = overlay::MarkImpure(layers_, to_upper);
    if (ok.ok() && exchange && target->second->HasLower()) {
      ok = overlay::MarkImpure(layers_, from_upper);
    }
  }
  if (ok.ok()) {
    {
      std::unique_lock lock(moving->mu);
      moving->parent = *to_dir;
      moving->name = to_name;
    }
    if (exchange) {
      std::unique_lock lock(target->second->mu);
      target->second->parent = *from_dir;
      target->second->name = from_name;
    }
  }
  return finish(ok);
}

}  // namespace lamina

// A record of everything a read-only user of a directory tree could
// change, for tests that mount the tree as an overlay's lower layer: for
// every object below it, its name, type, mode, owner, size, device number,
// link count, inode number, inode flags, access, modification and change
// times (to the nanosecond), extended attributes of every namespace,
// symlink target and a hash of its contents. Two digests of the same tree
// compare field by field.
//
// Taking a digest changes nothing, atimes included. The tree is walked
// through a private clone of its mount (open_tree(2), never attached
// anywhere) made read-only and noatime, so that listing directories and
// reading symlinks (readlink touches atime, and no open flag avoids it) leave
// their atimes alone; files and directories are opened O_NOATIME as well.
// Symlinks are never followed, FIFOs, sockets and device nodes never opened,
// and mount points inside the tree not crossed. Needs CAP_SYS_ADMIN, which
// the mounted tests have.

#ifndef LAMINA_INTEGRATION_HARNESS_LAYER_DIGEST_H_
#define LAMINA_INTEGRATION_HARNESS_LAYER_DIGEST_H_

#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace lamina::testing {

class LayerDigest {
 public:
  // Walks the directory tree at `root` (not followed if it is a symlink).
  static LayerDigest Take(const std::string& root);

  // What changed from `before` to `after` (two digests of one tree).
  struct Comparison {
    size_t count = 0;  // every difference
    // The first `max_listed` of them, one line each: "PATH: FIELD BEFORE
    // -> AFTER", "PATH: added (TYPE)", "PATH: removed (TYPE)".
    std::vector<std::string> listed;
  };
  static Comparison Compare(const LayerDigest& before, const LayerDigest& after,
                            size_t max_listed = 20);

  // Every field of every object, one line each ("PATH: FIELD VALUE"), in
  // walk order: where two digests of one tree differ, so do their prints
  // (for diff(1) in the shell tests; see lamina-layer-digest).
  void Print(std::ostream& out) const;

  const std::string& root() const { return root_; }
  // Why the tree could not be walked, or empty.
  const std::string& error() const { return error_; }
  size_t object_count() const { return objects_.size(); }

 private:
  // One object of the tree. Objects are stored flat, in walk order (a
  // directory before its entries, entries by name): a 10,000-deep directory
  // chain costs no more than 10,000 files.
  struct Object {
    int parent = -1;  // index in objects_; -1 for the root
    std::string name;
    struct stat st {};
    uint32_t flags = 0;  // FS_IOC_GETFLAGS
    bool has_flags = false;
    std::string target;    // a symlink's
    std::string contents;  // a regular file's: a hash of its bytes
    std::vector<std::pair<std::string, std::string>> xattrs;  // sorted by name
    std::string problem;  // what could not be read of this object
  };
  class Walker;

  // The object's fields as names and printable values, in a fixed order.
  static std::vector<std::pair<std::string, std::string>> Fields(const Object& object);
  // The object's path below the root ("/" for the root), shortened in the
  // middle when very long.
  std::string PathOf(int index) const;

  std::string root_;
  std::string error_;
  std::vector<Object> objects_;
};

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_HARNESS_LAYER_DIGEST_H_

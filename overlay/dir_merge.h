// The merged listing of one overlay directory.

#ifndef LAMINA_OVERLAY_DIR_MERGE_H_
#define LAMINA_OVERLAY_DIR_MERGE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "overlay/layers.h"
#include "overlay/node.h"

namespace lamina::overlay {

struct DirItem {
  std::string name;
  uint32_t type = 0;  // DT_*
  uint64_t ino = 0;   // as st_ino of the merged object would report it
  // The layer object the merged object takes its identity from, as far as
  // the listing can tell (a node's key, see node.h); none for "." and "..".
  std::optional<NodeKey> identity;
  // Where a READDIR resumes after this item (see MergeListing).
  uint64_t cookie = 0;
  // The topmost layer that has the name (0: the upper). True while the
  // listing is current: lower layers never change, and a change in the
  // upper directory through the mount drops the listing.
  int layer = 0;
};

// Where a merged directory's entries come from.
struct DirSources {
  int upper_fd = -1;
  DirMarks upper_marks;
  const LowerRefs* lowers = nullptr;
  uint64_t ino = 0;         // the directory's own st_ino, for "."
  uint64_t parent_ino = 0;  // its parent's, for ".." (readdir skips inode 0)
};

// Upper first, then each lower down to an opaque one; names deduplicated,
// whiteouts (of every form) applied, OCI marker files hidden. The first two
// items are "." and ".." (cookies 1 and 2); the rest are ordered by their
// cookie, a 62-bit hash of the name, so that a READDIR resuming after a
// cookie lists every name that survived since exactly once, whichever
// snapshot serves it (a new one after a change lists in the same order).
// FirstAfter() finds where to resume.
std::vector<DirItem> MergeListing(const LayerStack& layers, const DirSources& sources);
// The index of the first item of `items` (as MergeListing orders them)
// whose cookie is above `cookie`.
size_t FirstAfter(const std::vector<DirItem>& items, uint64_t cookie);

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_DIR_MERGE_H_

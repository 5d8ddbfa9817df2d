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
};

// A snapshot of a merged listing, numbered so that READDIR offsets can say
// which snapshot they index.
struct DirListing {
  uint32_t id = 0;
  std::vector<DirItem> items;
};

// Where a merged directory's entries come from.
struct DirSources {
  int upper_fd = -1;
  DirMarks upper_marks;
  const std::vector<LowerRef>* lowers = nullptr;
  uint64_t ino = 0;         // the directory's own st_ino, for "."
  uint64_t parent_ino = 0;  // its parent's, for ".." (readdir skips inode 0)
};

// Upper first, then each lower down to an opaque one; names deduplicated,
// whiteouts (of every form) applied, OCI marker files hidden. The first two
// items are "." and "..".
std::vector<DirItem> MergeListing(const LayerStack& layers, const DirSources& sources);

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_DIR_MERGE_H_

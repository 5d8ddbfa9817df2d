// The kernel's inode index (index=on) for lower hard links.
//
// A lower file with several names is copied up once, into
// work/index/<hex of its origin record> (the same bytes the kernel writes
// in overlay.origin, as lowercase hex: the kernel's ovl_get_index_name),
// and each name that needs an upper object is a hard link of that entry
// ("link-up"). A lookup of a lower name that has no upper object finds the
// entry by the lower object's file handle and uses it as the upper, so the
// names share data across unmount and remount, and an upper written by the
// kernel with index=on reads the same here (and the other way round).
//
// The view's link count lives in overlay.nlink on the upper inode, relative
// to the upper ("U+1") or the lower ("L-2") link count, so that link, unlink
// and rename through the mount (which change the upper count together with
// the view's) leave it right without rewriting it. When the last name goes,
// the index entry goes too.

#ifndef LAMINA_OVERLAY_INDEX_H_
#define LAMINA_OVERLAY_INDEX_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "core/result.h"
#include "overlay/layers.h"

namespace lamina::overlay {

// The index entry's name for the lower object `lower_fd` of `layer`; empty
// when its filesystem cannot encode file handles.
std::string IndexName(const Layer& layer, int lower_fd);

// Opens (O_PATH) the index entry for a lower object, if there is a regular
// file there.
std::optional<int> OpenIndexEntry(const LayerStack& layers, const Layer& layer, int lower_fd);

// overlay.nlink: the view's link count as an offset from the upper ('U') or
// lower ('L') inode's own count.
struct NlinkRecord {
  char base = 'U';
  int diff = 0;
};
std::optional<NlinkRecord> ReadNlinkRecord(const LayerStack& layers, int upper_fd);
Result<void> WriteNlinkRecord(const LayerStack& layers, int upper_fd, NlinkRecord record);

// The view's link count of an object with an upper and a lower inode, as
// the kernel computes it (ovl_get_nlink): the record applied to its base,
// or the upper count when there is no valid record or the lower has one
// name only.
nlink_t ViewNlink(const LayerStack& layers, int upper_fd, nlink_t upper_nlink, nlink_t lower_nlink);

// Links the indexed upper object `upper_fd` into `dir_fd` as `name` and
// keeps the view's count (`view_nlink`, unchanged by this) right: the record
// is rewritten relative to the lower count first (`lower_nlink`, which the
// link does not change), then relative to the upper one.
Result<void> LinkUp(const LayerStack& layers, int upper_fd, int dir_fd, const std::string& name,
                    nlink_t view_nlink, nlink_t lower_nlink);

// After a name of an indexed object left the upper layer: once no name is
// left in the view (the index entry is the inode's only link and the record
// says 0), removes the index entry, as the kernel's ovl_cleanup_index does.
void DropIndexIfUnlinked(const LayerStack& layers, int upper_fd);

// At mount: removes index entries no name uses any more (the last name
// went but the entry stayed, e.g. after a crash in between), as the
// kernel's index=on mount does with orphan entries. Other entries (and the
// kernel's "#" work files there) are left alone.
void RemoveOrphanIndexEntries(const LayerStack& layers);

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_INDEX_H_

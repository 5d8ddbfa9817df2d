// Where one name of a merged directory lives in the layers: the layer walk
// of kernel overlayfs' lookup (fs/overlayfs/namei.c), which decides what
// layer contents are honoured and which are refused.
//
// The name is looked up in the upper directory, then in each lower
// directory merged under the parent, top first:
// - a whiteout stops the walk; a non-directory is found and stops it; a
//   directory merges with directories below until one is opaque;
// - a directory's overlay.redirect replaces the name looked up below it:
//   a relative one in the parent's lower directories, an absolute one
//   ("/a/b") from the roots of the layers below this one, one component at
//   a time, stopping where the kernel's walk stops (a whiteout, a
//   non-directory, or an opaque directory on the way; an absolute redirect
//   found further on resumes it);
// - markers and redirects are read only where the kernel reads them: never
//   in the bottom layer (nothing lies below it), and with
//   redirect_dir=nofollow only above another lower directory of the
//   parent; a redirect read there refuses the lookup (EPERM), and an
//   invalid one refuses it everywhere (EINVAL); a "." or ".." component met
//   on the way, EACCES;
// - a metacopy file refuses the lookup (EPERM, or EIO if malformed).
// Lamina's additions, which the kernel does not read: OCI whiteouts, in any
// layer (".wh.NAME" hides NAME below its layer and makes a NAME beside it
// opaque), and fuse-overlayfs' opaque mark in lower layers.

#ifndef LAMINA_OVERLAY_LAYER_LOOKUP_H_
#define LAMINA_OVERLAY_LAYER_LOOKUP_H_

#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"
#include "overlay/layer_object.h"
#include "overlay/layers.h"
#include "overlay/node.h"

namespace lamina::overlay {

// What a name resolves to. Owns its descriptors until Release() or until
// they are handed on (set to -1).
struct LayerObjects {
  int upper_fd = -1;
  DirMarks upper_marks;
  // The upper directory's own overlay.redirect as read (the kernel keeps
  // it with the inode, and builds the next record from it); empty if none.
  std::string upper_redirect;
  LowerRefs lowers;    // merged lower directories, or the topmost lower object
  mode_t type = 0;     // S_IFMT
  struct stat top {};  // stat of the topmost object
  void Release();
};

// The merged directory a name is looked up in.
struct ParentDir {
  int upper_fd = -1;
  const LowerRefs* lowers = nullptr;
};

class LayerLookup {
 public:
  // `follow_redirects`: false with redirect_dir=nofollow.
  LayerLookup(const LayerStack& layers, bool follow_redirects)
      : layers_(layers), follow_(follow_redirects) {}

  // Looks `name` up under `parent`. ENOENT if nothing is found, with
  // `*upper_whiteout` set when a whiteout in the upper directory hid it.
  // `first_layer` above 0 skips the upper and the lowers above that layer
  // (a current listing says the name is plainly absent there).
  Result<LayerObjects> Find(const ParentDir& parent, std::string_view name,
                            bool* upper_whiteout = nullptr, int first_layer = 0) const;

  // Whether the layers below the upper show `name` under `parent`, as the
  // kernel decides whether removing it needs a whiteout: the first lower
  // layer that has the name decides, and an unreadable one counts.
  bool ExistsBelow(const ParentDir& parent, std::string_view name) const;

 private:
  struct Walk;
  // One component in one layer directory; see layer_lookup.cc.
  Result<int> LookupOne(Walk& walk, const Layer& layer, int base_fd, std::string_view component,
                        size_t prefix, std::string_view rest, bool last_layer,
                        DirMarks* marks) const;
  // The walk's current name in one layer: -1 when not there.
  Result<int> LookupInLayer(Walk& walk, const Layer& layer, int dir_fd, bool last_layer,
                            DirMarks* marks) const;

  const LayerStack& layers_;
  const bool follow_;
};

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_LAYER_LOOKUP_H_

// Owner translation between the layers and the merged view: fuse-overlayfs'
// uidmapping=, gidmapping= and squash options.
//
// A mapping "FROM:TO:COUNT[:FROM:TO:COUNT...]" says that the ids FROM ..
// FROM+COUNT-1 stored in the layers show in the view as TO .. TO+COUNT-1.
// containers/storage writes it as CONTAINER:HOST:COUNT: image layers keep
// the container's own ids on disk, the mount shows the host ids a user
// namespace maps back to the container's, and nothing is chowned.
//
//   view -> layers (owner of a new object, chown): TO+k is stored as FROM+k
//   layers -> view (stat, entries, readdirplus):   FROM+k shows as TO+k
//
// An id that no range covers becomes the kernel's overflow id (65534) in
// either direction, as in fuse-overlayfs. Without a mapping ids pass
// unchanged. Squashing (squash_to_root, squash_to_uid=, squash_to_gid=)
// replaces the owner the view shows, never what is stored, and makes a
// failed chown succeed silently, since the view would not show it anyway.
// Copy-up copies the stored ids as they are.

#ifndef LAMINA_OVERLAY_ID_MAP_H_
#define LAMINA_OVERLAY_ID_MAP_H_

#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace lamina::overlay {

struct IdRange {
  uint32_t layer = 0;  // first id as stored in the layers
  uint32_t view = 0;   // first id as the view shows it
  uint32_t count = 0;
  bool operator==(const IdRange&) const = default;
};

// A decimal id such as "1000"; nullopt for anything else (signs, spaces,
// values past 2^32-1).
std::optional<uint32_t> ParseId(std::string_view text);

// Parses "FROM:TO:COUNT[:FROM:TO:COUNT...]". Ranges must not be empty,
// run past 2^32 or overlap on either side (the translation would not be
// one-to-one).
absl::StatusOr<std::vector<IdRange>> ParseIdRanges(std::string_view text);

// The kernel's overflow uid and gid (/proc/sys/kernel/overflow{uid,gid}),
// 65534 when unreadable.
uint32_t KernelOverflowUid();
uint32_t KernelOverflowGid();

struct IdMapConfig {
  std::vector<IdRange> uids;  // empty: uids pass unchanged
  std::vector<IdRange> gids;
  std::optional<uint32_t> squash_uid;  // the view shows every owner as this
  std::optional<uint32_t> squash_gid;
  uint32_t overflow_uid = 65534;
  uint32_t overflow_gid = 65534;
};

class IdMap {
 public:
  IdMap() = default;  // ids pass unchanged
  explicit IdMap(IdMapConfig config);

  // True when nothing is translated (the common case, kept cheap).
  bool identity() const { return identity_; }
  // True when the view's owners are squashed: chown errors are ignored.
  bool squashed() const { return config_.squash_uid || config_.squash_gid; }

  uint32_t UidToView(uint32_t stored) const;
  uint32_t GidToView(uint32_t stored) const;
  uint32_t UidToLayer(uint32_t shown) const;
  uint32_t GidToLayer(uint32_t shown) const;

  // Rewrites the owner of a layer object's attributes as the view shows it.
  void ToView(struct stat& st) const {
    if (identity_) return;
    st.st_uid = UidToView(st.st_uid);
    st.st_gid = GidToView(st.st_gid);
  }
  void ToView(struct statx& stx) const {
    if (identity_) return;
    stx.stx_uid = UidToView(stx.stx_uid);
    stx.stx_gid = GidToView(stx.stx_gid);
  }

 private:
  IdMapConfig config_;
  bool identity_ = true;
};

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_ID_MAP_H_

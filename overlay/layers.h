// The layers of one overlay mount: read-only lowers (top first), at most one
// writable upper, and the upper's work directory.
//
// Each layer is held by an O_PATH descriptor of its root; every access below
// resolves one name at a time relative to a descriptor of the layer, never
// following symlinks, so the overlay cannot reach outside its layers. A
// lower's root is on a private read-only clone of its mount where the
// daemon can make one (overlay/lower_mount.h), so nothing reached from it
// can be written; the work directory's entries are never reached through a
// symlink (overlay/work_dir.h).

#ifndef LAMINA_OVERLAY_LAYERS_H_
#define LAMINA_OVERLAY_LAYERS_H_

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace lamina::overlay {

struct Layer {
  int fd = -1;  // O_PATH descriptor of the layer root
  // The root opened for reading: open_by_handle_at refuses an O_PATH
  // mount descriptor (EBADF on Linux 6.18). -1 if it could not be opened.
  // On the same mount as `fd`, so decoded objects are on the clone too.
  int handle_fd = -1;
  std::string path;
  int index = 0;  // 0 is the upper when there is one, then lowers top first
  dev_t dev = 0;
  bool upper = false;
  // A lower on a read-only clone of its mount: the kernel refuses writes.
  bool read_only = false;
  // A lower on a noatime clone: reads never update its access times.
  bool noatime = false;
  // Whether OpenInLayer (layer_object.h) adds O_NOATIME: a lower not on
  // a noatime clone (reads never touch a lower), and the upper of a mount
  // made noatime (the kernel opens every real file O_NOATIME, and moves the
  // upper's access times only as the overlay mount's own flags allow).
  bool open_noatime = false;
  // The layer filesystem's UUID (zeros when it has none), recorded in
  // origin file handles the way the kernel does.
  std::array<uint8_t, 16> uuid{};
};

struct LayerConfig {
  std::vector<std::string> lowers;  // absolute paths, top first
  std::string upper;                // empty: read-only overlay
  std::string work;                 // required with upper
  // Private xattrs in "user.overlay." instead of "trusted.overlay." (set
  // automatically when the daemon may not use trusted.*: not root, or root
  // of a user namespace; see privilege.h).
  bool userxattr = false;
  // volatile: leaves work/work/incompat/volatile behind, as the kernel does,
  // so that a later mount knows the upper may be inconsistent after a crash.
  bool volatile_mode = false;
  // uuid=auto|on (true): a new upper gets a random overlay.uuid on its root
  // at the first mount, as the kernel records it (the overlay's identity;
  // Lamina itself does not use it). uuid=off|null: none.
  bool record_uuid = true;
  // fuse-overlayfs' ino32_t: inode numbers folded into 32 bits, for 32-bit
  // programs whose stat() fails with EOVERFLOW on larger ones.
  bool ino32 = false;
  // The kernel's index=on: a lower file with several hard links is copied
  // up into work/index (named by its lower file handle) and linked from
  // there, so every name keeps sharing it (overlay/index.h). Needs the
  // trusted namespace (the kernel refuses index=on with userxattr too).
  bool index = true;
  // The mount is noatime: reads through it never move the upper's access
  // times either.
  bool noatime = false;
};

// Whether `inner` is `outer` or below it (absolute, normalised paths).
bool PathIsWithin(const std::string& inner, const std::string& outer);

class LayerStack {
 public:
  // Opens and checks the layers: each must be a directory; upper and work on
  // one filesystem, neither inside the other; no lower inside (or equal to)
  // the upper, the work directory or another lower (the kernel's "overlapping
  // layers"; upper and work may lie inside a lower). Takes an exclusive
  // flock on the upper and work directories, held while the stack lives,
  // so a second mount cannot share them (the kernel's "upperdir is in-use"),
  // waiting up to kInUseWaitMs for a mount that is just ending. Then prepares
  // work/work, emptying what a crashed mount left there, and work/index
  // (overlay/work_dir.h). Lowers are opened as read-only clones of their
  // mounts (overlay/lower_mount.h).
  static absl::StatusOr<LayerStack> Open(const LayerConfig& config);

  LayerStack(LayerStack&& other) noexcept;
  LayerStack& operator=(LayerStack&&) = delete;
  LayerStack(const LayerStack&) = delete;
  ~LayerStack();

  bool has_upper() const { return has_upper_; }
  const Layer& upper() const { return layers_.front(); }
  const std::vector<Layer>& layers() const { return layers_; }
  const Layer& layer(int index) const { return layers_[static_cast<size_t>(index)]; }
  // O_PATH descriptor of work/work, where copy-ups and whiteouts are staged.
  int staging_fd() const { return staging_fd_; }
  // O_PATH descriptor of work/index, or -1 when the index is off (no
  // upper, index=off, or private xattrs in the user namespace).
  int index_fd() const { return index_fd_; }
  // True when all layers share one device, so real inode numbers are unique.
  bool single_device() const { return single_device_; }
  // The st_ino the merged view shows for inode `ino` of `layer`: the real
  // number when all layers share a device, else the layer goes into the
  // high bits so numbers from different filesystems cannot collide.
  uint64_t MergedInode(int layer, ino_t ino) const {
    if (single_device_) return Fold(ino);
    return Fold(ino ^ (static_cast<uint64_t>(layer + 1) << 56));
  }
  // With ino32: the high half folded into the low one (so the layer bits
  // still separate layers), never 0, which readdir would skip.
  uint64_t Fold(uint64_t ino) const {
    if (!ino32_) return ino;
    uint64_t folded = (ino ^ (ino >> 32)) & 0xffffffffULL;
    return folded != 0 ? folded : 1;
  }

  // "trusted.overlay.<suffix>" or "user.overlay.<suffix>".
  std::string PrivateXattr(std::string_view suffix) const { return prefix_ + std::string(suffix); }
  const std::string& private_prefix() const { return prefix_; }
  // Whether origin records can name lower objects: the daemon may decode
  // file handles (overlay/privilege.h). Otherwise copy-ups record an empty
  // origin, as the kernel does for the same credentials.
  bool decode_handles() const { return decode_handles_; }
  // A fresh name for a staged object in work/work.
  std::string StagingName();

  static constexpr int kInUseWaitMs = 2000;

 private:
  LayerStack() = default;

  std::vector<Layer> layers_;
  bool has_upper_ = false;
  bool single_device_ = true;
  bool ino32_ = false;
  int work_fd_ = -1;
  int staging_fd_ = -1;
  int index_fd_ = -1;
  std::vector<int> lock_fds_;  // flocked upper and work directories
  std::string prefix_ = "trusted.overlay.";
  bool decode_handles_ = false;
  std::atomic<uint64_t> staging_counter_{0};
};

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_LAYERS_H_

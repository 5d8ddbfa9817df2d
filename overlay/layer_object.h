// Inspecting objects inside one layer: whiteouts, opaque directories, and
// the private xattrs overlayfs keeps on them.
//
// Read side (all forms, so layers written by the kernel, fuse-overlayfs and
// OCI tooling all work): a whiteout is a 0/0 character device, an empty
// regular file carrying overlay.whiteout in a directory marked opaque "x",
// or an OCI ".wh.NAME" file beside the name; a directory is opaque with
// overlay.opaque = "y", fuse-overlayfs' user.fuseoverlayfs.opaque = "y", or
// an OCI ".wh..wh..opq" entry. Write side: only what the kernel writes.

#ifndef LAMINA_OVERLAY_LAYER_OBJECT_H_
#define LAMINA_OVERLAY_LAYER_OBJECT_H_

#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"
#include "overlay/layers.h"

namespace lamina::overlay {

inline constexpr std::string_view kOciWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOciOpaqueMarker = ".wh..wh..opq";

// How a directory in one layer shapes the merge below it.
struct DirMarks {
  bool opaque = false;           // hides every layer below
  bool xattr_whiteouts = false;  // may hold xattr whiteouts (opaque "x")
  bool redirected = false;       // has an overlay.redirect (see ReadRedirect)
};

// "/proc/self/fd/N", the path form of an O_PATH descriptor for calls that
// have no descriptor form accepting O_PATH (xattrs, reopening).
std::string FdPath(int fd);

// Stats `name` in the layer directory `dir_fd` without following symlinks.
// nullopt when absent (or unreadable, which the merge treats as absent).
std::optional<struct stat> StatAt(int dir_fd, std::string_view name);

// Opens `name` under `dir_fd` as O_PATH|O_NOFOLLOW.
Result<int> OpenPathAt(int dir_fd, std::string_view name);

// Opens an object of `layer` for reading: openat(dir_fd, path, flags),
// plus O_NOATIME on a lower layer whose mount does not already keep access
// times still (the kernel mounts its lowers noatime), retried without it
// where the kernel refuses it (EPERM: neither owner nor CAP_FOWNER).
// "/proc/self/fd/N" with AT_FDCWD reopens an O_PATH descriptor.
int OpenForReading(const Layer& layer, int dir_fd, const char* path, int flags);

// Whether `st` (the stat of `name` in a directory with `marks`) is a whiteout.
bool IsWhiteout(const LayerStack& layers, int dir_fd, std::string_view name, const struct stat& st,
                const DirMarks& marks);
// Whether the layer directory `dir_fd` has an OCI whiteout for `name`.
bool HasOciWhiteout(int dir_fd, std::string_view name);
// Reads a layer directory's markers (opaque in its xattr forms and the OCI
// marker; whether it records a redirect).
DirMarks ReadDirMarks(const LayerStack& layers, int dir_fd);

// A renamed directory's overlay.redirect: where its lower directories are.
// An absolute value ("/a/b") is a path from the layer roots; a relative one
// is a name in the same parent. Empty when there is none.
// A value that is neither a plain name nor a path of plain names from the
// roots is refused as the kernel refuses it (CheckRedirect's errno).
Result<std::string> ReadRedirect(const LayerStack& layers, int dir_fd);
// 0 for a valid redirect; EINVAL for an empty one, a relative one with a
// '/', or an empty component; EACCES for a "." or ".." component.
int CheckRedirect(std::string_view redirect);
Result<void> WriteRedirect(const LayerStack& layers, int dir_fd, const std::string& redirect);
// Opens `path` (absolute, from the root of the layer `root_fd`) one
// component at a time without following symlinks; nullopt if any component
// is missing or not a directory (except the last, which is returned as is).
// With `below`, also reports where the layers below this one hold `path`:
// a directory on the way that was renamed in this layer (overlay.redirect)
// moves the rest of the path there, as the kernel's lookup does.
std::optional<int> OpenLayerPath(int root_fd, const std::string& path,
                                 const LayerStack* layers = nullptr, std::string* below = nullptr);
// Names the merged view never shows: OCI whiteouts and markers.
inline bool IsHiddenName(std::string_view name) {
  return name.substr(0, kOciWhiteoutPrefix.size()) == kOciWhiteoutPrefix;
}

// Creates a 0/0 character-device whiteout named `name` in the staging
// directory; falls back to an xattr whiteout (empty file + overlay.whiteout)
// where mknod is refused. Returns whether the fallback was used.
Result<bool> CreateStagedWhiteout(const LayerStack& layers, const std::string& name);

// The kernel's origin record for a copied-up object: an overlay file handle
// (version 0, magic 0xfb) of the lower object in `layer`. Empty when the
// lower filesystem cannot encode handles.
std::string EncodeOrigin(const Layer& layer, int lower_fd);
// Whether the upper object `upper_fd` records `lower_fd` as its origin
// (same file handle; the uuid is not compared, so copied layers still work).
bool HasOrigin(const LayerStack& layers, int upper_fd, int lower_fd);

// Finds the lower object an upper object was copied up from by decoding its
// origin file handle (needs CAP_DAC_READ_SEARCH; fails quietly without).
// Returns an O_PATH descriptor and the layer, or nullopt.
std::optional<std::pair<int, int>> DecodeOrigin(const LayerStack& layers, int upper_fd);

// Marks an upper directory opaque ("y").
Result<void> MarkOpaque(const LayerStack& layers, int dir_fd);
// Marks an upper directory "impure" (overlay.impure = "y"), as the kernel
// does to the parent of every copy-up and to the new parent of a moved
// object that continues a lower one: the kernel then looks entries up to
// report their origin's inode number in readdir. A no-op when already set;
// an upper without xattrs is not an error (the kernel's rule).
Result<void> MarkImpure(const LayerStack& layers, int dir_fd);
bool IsImpure(const LayerStack& layers, int dir_fd);
// Marks an upper directory as holding xattr whiteouts ("x"), as the kernel
// requires before it looks for them; a no-op on opaque directories.
Result<void> MarkXattrWhiteouts(const LayerStack& layers, int dir_fd);

}  // namespace lamina::overlay

#endif  // LAMINA_OVERLAY_LAYER_OBJECT_H_

// Inspecting objects inside one layer: whiteouts, opaque directories,
// redirects, metacopy and origin records, the private xattrs overlayfs keeps
// on them.
//
// Layer contents are data anyone may have built, so each record is read
// only in the forms the mount honours (docs/security.md, "Layer contents"):
// the private namespace of the mount's mode ("trusted.overlay." as root,
// "user.overlay." with userxattr), and in lower layers also
// fuse-overlayfs' user.fuseoverlayfs.opaque. A user of the mount can write
// neither (the mount escapes its private names, and writes only the upper).
// OCI whiteouts (".wh.NAME", ".wh..wh..opq") are names, which the mount
// never creates, and count in every layer. Write side: only what the kernel
// writes.

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
  bool xattr_whiteouts = false;  // a listing hides xattr whiteouts (opaque "x")
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

// Opens an object of `layer`: openat(dir_fd, path, flags), plus O_NOATIME
// where Layer::open_noatime asks for it (a lower whose mount does not
// already keep access times still, the upper of a noatime mount), retried
// without it where the kernel refuses it (EPERM: neither owner nor
// CAP_FOWNER).
// "/proc/self/fd/N" with AT_FDCWD reopens an O_PATH descriptor.
int OpenInLayer(const Layer& layer, int dir_fd, const char* path, int flags);

// Whether `st` is a character-device whiteout (0/0), which every layer form
// and the kernel read.
bool IsDeviceWhiteout(const struct stat& st);
// Whether `name` in `dir_fd` (whose stat is `st`) is an xattr whiteout: an
// empty regular file with the mount's overlay.whiteout. A lookup takes it
// for a whiteout in any directory (as the kernel does); a listing hides it
// only in a directory marked opaque "x" (DirMarks::xattr_whiteouts).
bool IsXattrWhiteout(const LayerStack& layers, int dir_fd, std::string_view name,
                     const struct stat& st);
// Either form: what a lookup stops at.
bool IsWhiteout(const LayerStack& layers, int dir_fd, std::string_view name, const struct stat& st);
// Whether the layer directory `dir_fd` has an OCI whiteout for `name`.
bool HasOciWhiteout(int dir_fd, std::string_view name);
// Reads a layer directory's markers in the forms honoured for its role
// (the upper layer, or a lower one): opaque "y" or "x", the OCI opaque
// marker, and whether it records a redirect.
DirMarks ReadDirMarks(const LayerStack& layers, int dir_fd, bool upper);

// A renamed directory's overlay.redirect: where its lower directories are.
// An absolute value ("/a/b") is a path from the layer roots; a relative one
// is a name in the same parent. nullopt when there is none. Read as the
// kernel reads it (up to the first NUL); EINVAL for a value the kernel
// calls invalid: empty, a relative one with a '/', an absolute one with an
// empty component. (A "." or ".." component, or the empty name a value
// starting with NUL leaves, is refused with EACCES only where a lookup
// meets it, as on the kernel.)
Result<std::optional<std::string>> ReadRedirect(const LayerStack& layers, int dir_fd);
// 0 for a (non-empty) redirect the kernel reads, else EINVAL.
int CheckRedirect(std::string_view redirect);
Result<void> WriteRedirect(const LayerStack& layers, int dir_fd, const std::string& redirect);

// The metacopy record (overlay.metacopy) of the regular file `name` in
// `dir_fd`: such a file holds only metadata, its data lies below, and
// following it needs metacopy=on, which this overlay does not offer. Ok
// when there is none; EPERM for a metacopy file (the kernel's "refusing to
// follow metacopy origin"), EIO for a record of 1 to 3 bytes.
Result<void> CheckNotMetacopy(const LayerStack& layers, int dir_fd, std::string_view name);

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

// Finds the lower object the upper non-directory `upper_fd` was copied up
// from by decoding its origin file handle in the lower layers (needs
// CAP_DAC_READ_SEARCH; fails quietly without). Like the kernel, accepts
// only an object of the upper's own type (S_IFMT `type`), and uses it for
// its identity alone (inode number, node): a handle carries no parent, so
// where the object lies cannot be checked, as the kernel says of its own
// lookup. Returns an O_PATH descriptor and the layer, or nullopt.
std::optional<std::pair<int, int>> DecodeOrigin(const LayerStack& layers, int upper_fd,
                                                mode_t type);

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

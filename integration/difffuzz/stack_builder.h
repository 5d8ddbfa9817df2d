// Writing a case's layers to disk, once per system, and rewriting the forms
// only Lamina reads into the kernel's.
//
// Everything is written through descriptors, one name at a time, never
// following a symlink: a layer's own symlinks (to /etc, to "..") must not
// send the builder outside the set. Origin records and index entries are
// made from this set's own objects (real file handles), so each set is
// self-consistent and the two sets are alike object for object.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_STACK_BUILDER_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_STACK_BUILDER_H_

#include <string>
#include <vector>

#include "integration/difffuzz/case_spec.h"

namespace lamina::difffuzz {

// The directories of one set of layers under `root`: upper, lower1..N,
// work, and `outside` (files no access through the overlay may reach; the
// targets of the escaping symlinks, origins and work links).
class StackDirs {
 public:
  explicit StackDirs(std::string root) : root_(std::move(root)) {}

  const std::string& root() const { return root_; }
  // root/upper for layer 0, root/lowerN for layer N.
  std::string Layer(int layer) const;
  std::vector<std::string> Lowers(const StackOptions& options) const;
  std::string work() const { return root_ + "/work"; }
  std::string outside() const { return root_ + "/outside"; }

 private:
  std::string root_;
};

// Makes the set's directories and writes every entry of `spec` in order.
// An entry that cannot be written (its parent is no directory in that
// layer, a hard link to a missing name, an origin of a missing object) is
// left out; that happens alike in both sets.
void BuildStack(const CaseSpec& spec, const StackDirs& dirs);

// Rewrites, in every layer of `dirs`, what Lamina reads and the kernel does
// not into the kernel's equivalent, so that a kernel overlay of the result
// shows what Lamina documents for the original (docs/overlay.md, "On-disk
// formats"):
//   - OCI ".wh.NAME" (NAME absent beside it) -> a 0/0 whiteout NAME; beside
//     a directory NAME -> overlay.opaque "y" on NAME (it hides the layers
//     below, not NAME); any other ".wh."-prefixed name is removed (Lamina
//     never shows one);
//   - OCI ".wh..wh..opq" -> overlay.opaque "y" on its directory;
//   - user.fuseoverlayfs.opaque "y" in a lower layer -> overlay.opaque "y"
//     as well (in the upper it is a user's attribute to both).
// The rest (forms both read, forms neither should) stays as it is.
void TranslateForKernel(const StackOptions& options, const StackDirs& dirs);

// The kernel's origin record (struct ovl_fb) of the object at `path`, not
// followed if a symlink: empty if it has no file handle.
std::string OriginRecord(const std::string& path);
// Lowercase hex of `bytes`: an index entry's name.
std::string Hex(const std::string& bytes);

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_STACK_BUILDER_H_

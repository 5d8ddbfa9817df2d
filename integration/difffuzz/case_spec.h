// One case of the differential fuzzer: a stack of layers with hostile
// content and the operations applied to it, as plain data.
//
// A case is a pure function of (seed, case number) (see stack_generator.h),
// so it can be replayed exactly; it is also what the minimizer shrinks, and
// ToText() prints it in a compact, line-per-entry form for reports:
//
//   stack lowers=2 upper=1 index=on xattrs=trusted
//   L1 d a 0755
//   L1 f a/x 0644 "lower data"
//   L2 x a trusted.overlay.redirect "/b"
//   U  w a/x
//   U  origin a/y valid L1 a/x
//   op rename a/x b/y
//
// Layers are numbered as the overlay stacks them: 0 is the upper, 1..N
// the lowers top first. Paths are relative to the layer root.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_CASE_SPEC_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_CASE_SPEC_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lamina::difffuzz {

inline constexpr int kUpperLayer = 0;

// How the stack is mounted, on both systems alike.
struct StackOptions {
  int lowers = 1;          // 1..3
  bool upper = true;       // false: a read-only overlay (the kernel needs 2+ lowers)
  bool index = false;      // index=on (only with an upper and trusted xattrs)
  bool userxattr = false;  // private xattrs in user.overlay. (redirect_dir=nofollow)

  // "trusted.overlay." or "user.overlay.": the namespace both systems read.
  std::string PrivatePrefix() const { return userxattr ? "user.overlay." : "trusted.overlay."; }
  // The other one, which neither should read.
  std::string ForeignPrefix() const { return userxattr ? "trusted.overlay." : "user.overlay."; }
};

// What an origin record (overlay.origin) names, and how it is damaged.
enum class OriginForm {
  kValid,        // the kernel's record of the referenced lower object
  kForeignUuid,  // the same with another filesystem's uuid
  kWrongType,    // the same with another file handle type byte
  kTruncated,    // cut inside the file handle
  kGarbage,      // random bytes
  kEmpty,        // "" (what an unprivileged copy-up writes)
  kOutside,      // a valid record of a file outside every layer
};

// One thing written into a layer (or the work directory) before any mount.
struct Entry {
  enum class Kind {
    kDir,         // path, mode
    kFile,        // path, mode, data = contents
    kSymlink,     // path, data = target
    kHardlink,    // path, data = an earlier path of the same layer
    kWhiteout,    // path: a 0/0 character device
    kXattr,       // path, name, data = value (lsetxattr, never follows)
    kOwner,       // path, uid, gid (lchown)
    kOrigin,      // path, origin, ref_layer, ref_path: an overlay.origin record
    kIndexEntry,  // an entry in work/index (see IndexForm)
    kWorkLink,    // work/<path> is a symlink to data (a path below the set)
  };
  // An index entry: named after the origin record of ref_layer/ref_path;
  // kLinkUp is a hard link of the upper file `path` (which gets that origin
  // too), the rest are damaged entries.
  enum class IndexForm { kLinkUp, kBadName, kSymlink, kDirectory, kWhiteout, kOrphan };

  Kind kind = Kind::kDir;
  int layer = 0;
  std::string path;
  mode_t mode = 0755;
  std::string data;
  std::string name;  // kXattr
  uid_t uid = 0;     // kOwner
  gid_t gid = 0;
  OriginForm origin = OriginForm::kValid;  // kOrigin
  IndexForm index = IndexForm::kLinkUp;    // kIndexEntry
  int ref_layer = 1;                       // kOrigin, kIndexEntry
  std::string ref_path;
};

// One operation applied through both mounts; its outcome (errno) and the
// view after it are compared.
struct Op {
  enum class Kind {
    kRename,           // path -> path2
    kRenameNoReplace,  // path -> path2, RENAME_NOREPLACE
    kExchange,         // path <-> path2, RENAME_EXCHANGE
    kChmod,            // path, mode
    kChown,            // path, uid, gid
    kAppend,           // path, data: copy-up of a file
    kTruncate,         // path, size = data.size()
    kUnlink,
    kRmdir,
    kMkdir,          // path, mode
    kCreate,         // path, mode, data
    kLink,           // path -> path2
    kSymlink,        // path2 -> target data
    kSetXattr,       // path, name, data
    kRemoveXattr,    // path, name
    kMknodWhiteout,  // path: mknod of a 0/0 character device
  };
  Kind kind = Kind::kUnlink;
  std::string path;
  std::string path2;
  std::string data;
  std::string name;
  mode_t mode = 0644;
  uid_t uid = 0;
  gid_t gid = 0;
};

struct CaseSpec {
  uint64_t seed = 0;
  int number = 0;
  StackOptions options;
  std::vector<Entry> entries;
  std::vector<Op> ops;
};

// `text` in double quotes, with backslash escapes for quotes, backslashes
// and every byte outside printable ASCII, so that odd names and binary
// xattr values print on one line.
std::string Quote(const std::string& text);
// The text Quote() quoted (without the quotes: from just after the
// opening one); stops at the closing quote, `*end` gets the index after it.
std::string Unquote(const std::string& quoted, size_t start = 1, size_t* end = nullptr);
// Quote(), with a long run of one byte at the start abbreviated as
// "aaaaaaaa"x5000 (for reports; not reversible).
std::string Short(const std::string& text);
// A path or name: as is when plain, else quoted.
std::string Printable(const std::string& text);

std::string LayerName(int layer);  // "U", "L1", "L2", ...
std::string ToText(const StackOptions& options);
std::string ToText(const Entry& entry);
std::string ToText(const Op& op);
std::string OpName(Op::Kind kind);
// The whole case, one line per entry and operation.
std::string ToText(const CaseSpec& spec);

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_CASE_SPEC_H_

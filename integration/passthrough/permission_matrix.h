// A permission matrix for mounted tests: one tree of files with various
// owners, modes, ACLs and xattrs, and a list of operations (open for read
// and write, O_TRUNC, O_NOATIME, create, mknod, unlink, rmdir, rename, link,
// chmod, chown, truncate, utimes, xattrs of every namespace, ACLs, set-ID
// handling, sticky directories) that one principal runs on two copies of
// the tree that must behave alike: a mount and the plain directory, or
// Lamina's overlay and kernel overlayfs. Each operation's outcome is
// compared, and so is the state the operations leave behind.

#ifndef LAMINA_INTEGRATION_PASSTHROUGH_PERMISSION_MATRIX_H_
#define LAMINA_INTEGRATION_PASSTHROUGH_PERMISSION_MATRIX_H_

#include <sys/types.h>

#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace lamina::testing {

// The tree's users: the owner of the "own*" files (uid and gid 1000), a
// member of the owner's group (1001, supplementary group 1000), a stranger
// (65534) who owns "prog", and root with and without its capabilities.
inline constexpr uid_t kMatrixOwner = 1000;
inline constexpr uid_t kMatrixMember = 1001;
inline constexpr uid_t kMatrixStranger = 65534;

struct Principal {
  const char* name;
  uid_t uid;
  gid_t gid;
  std::vector<gid_t> groups;
  // uid 0 without a single capability, as a container's root may run.
  bool drop_capabilities = false;
};

inline void PrintTo(const Principal& who, std::ostream* os) {
  *os << who.name;
}

// Root, capability-less root, owner, group member, stranger.
const std::vector<Principal>& MatrixPrincipals();

// Builds the tree under `root` (an existing empty directory), as root:
// plain files of root, the owner and the stranger with modes from 0600 to
// 06777, a root-only directory, a world-writable one, a sticky one, a
// group-writable one, files with ACLs that grant and that deny, files with
// capabilities (security.capability), and xattrs in the user, trusted and
// security namespaces. Empty on success, else what
// the filesystem refused.
std::string BuildMatrixTree(const std::string& root);

// Runs `body` as `who` in a child process and returns what it returned
// ("cannot become NAME" if the switch failed, "child failed" if it died).
std::string RunAs(const Principal& who, const std::function<std::string()>& body);

// Runs every operation as `who`, in a child process, on each of `roots`
// (copies of the tree) in turn, and returns one list of outcomes per root,
// each "operation path: ok" (with what a read returned) or ": ERRNO". If the
// child failed, the first list holds only why and the others are empty.
std::vector<std::vector<std::string>> RunMatrixAs(const Principal& who,
                                                  const std::vector<std::string>& roots);

// The state of the tree under `root`, seen as root: one line per object
// with its type, mode, owner, size and content or link target, and its
// xattrs with their values (trusted.overlay.* left out).
std::string DescribeMatrixState(const std::string& root);

// The lines of two DescribeMatrixState results that differ ("- " for
// `left` only, "+ " for `right` only); empty if the states are equal.
std::string StateDifference(const std::string& left, const std::string& right);

// A difference between the two trees that a test knows of and tolerates
// (a protocol limit, or a defect reported and not fixed yet): printed on
// stdout, and, for a principal it applies to, required to still be there,
// so that a fix makes the test say the entry must go.
struct KnownDifference {
  std::string what;
  // Outcome lines ("chown-none setid-chown-none:") or state lines
  // ("/setid-chown-none ") that start so belong to it.
  std::vector<std::string> prefixes;
  std::function<bool(const Principal&)> applies;
};

// Compares the two outcome lists RunMatrixAs returned and the two states
// (DescribeMatrixState) after them, `left` against `right`; returns every
// difference that no applicable known difference explains, and every
// applicable known difference not seen, one per line ("" if none).
std::string CompareMatrix(const Principal& who,
                          const std::vector<std::vector<std::string>>& outcomes,
                          const std::string& left_state, const std::string& right_state,
                          const std::vector<KnownDifference>& known);

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_PASSTHROUGH_PERMISSION_MATRIX_H_

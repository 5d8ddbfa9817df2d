// Questions the masks of known_differences.h ask of a case: what the
// layers and the operations put at a path, under any of its names.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_SPEC_QUERIES_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_SPEC_QUERIES_H_

#include <functional>
#include <set>
#include <string>

#include "integration/difffuzz/case_spec.h"

namespace lamina::difffuzz {

// The names the object at `path` has in `layer`: the path itself and its
// same-layer hard links (links of links included).
std::set<std::string> NamesOf(const CaseSpec& spec, int layer, const std::string& path);

// The paths the object now at `path` may have had in the layers: `path`
// itself; where it was before the case's renames and exchanges (taken back
// from the last, whether or not they succeeded); and, below a directory
// with an absolute redirect in a layer, the path the lower layers hold.
std::set<std::string> EarlierPaths(const CaseSpec& spec, const std::string& path);

using ValueTest = std::function<bool(const std::string&)>;
bool AnyValue(const std::string&);
bool AnyLayer(int layer);
bool UpperLayer(int layer);

// Whether a layer `layer_ok` accepts sets the xattr `name` on the object
// at `path` (any of its earlier paths, under any of its names there), with
// a value `value_ok` takes; or an operation sets it through the mount (it
// lands in the upper).
bool HasXattr(const CaseSpec& spec, const std::string& path, const std::string& name,
              const std::function<bool(int)>& layer_ok, const ValueTest& value_ok = AnyValue);

// Whether `path` is at or below a directory with a redirect whose target
// (an absolute path, or a name beside it) some lower layer also has, or at
// or below such a target: one lower directory with two names in the view.
bool InRedirectAlias(const CaseSpec& spec, const std::string& path);

// Whether `path` is one of the upper files, or a name of the lower object,
// of a conflicting claim: several upper files claiming one lower object
// (valid origin records, "outside" ones, index link-ups), one claiming a
// lower file under another name than the lower file's own, or one upper
// file linked as the index entry of several lower objects.
bool InConflictingClaim(const CaseSpec& spec, const std::string& path);
// Whether `path` names a hard link of a lower layer (either name).
bool IsLowerHardLink(const CaseSpec& spec, const std::string& path);

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_SPEC_QUERIES_H_

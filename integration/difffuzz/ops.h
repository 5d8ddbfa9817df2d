// Applying one operation of a case through a mounted overlay.
//
// Every path is resolved below the mount root with openat2
// (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV) and the last
// component is handled with *at() calls that do not follow it, so a
// symlink in a hostile layer cannot make an operation reach outside the
// overlay. Operations that would follow a final symlink (chmod, opening for
// append or truncate) are not made on one: they report "skipped:TYPE",
// alike on both overlays since the views agreed before.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_OPS_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_OPS_H_

#include <string>

#include "integration/difffuzz/case_spec.h"

namespace lamina::difffuzz {

// "ok", an errno name, or "skipped:..." (see above); resolving a parent
// that fails gives "parent:ERRNO".
std::string ApplyOp(const std::string& root, const Op& op);

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_OPS_H_

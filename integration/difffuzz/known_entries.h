// The tables of known differences, by theme (known_differences.h), for
// KnownDifferences() to join. Within a table, masks apply in order.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_KNOWN_ENTRIES_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_KNOWN_ENTRIES_H_

#include <vector>

#include "integration/difffuzz/known_differences.h"

namespace lamina::difffuzz {

std::vector<KnownDifference> MarkerDifferences();    // known_markers.cc
std::vector<KnownDifference> RedirectDifferences();  // known_redirects.cc
std::vector<KnownDifference> OriginDifferences();    // known_origins.cc

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_KNOWN_ENTRIES_H_

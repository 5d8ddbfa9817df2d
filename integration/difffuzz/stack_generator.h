// Random hostile layer stacks and operation sequences, one per (seed, case
// number): the same pair always gives the same case, on any machine with
// the same build (the generator uses its own random number generator and
// no library distribution).
//
// Layers draw their names from a small shared tree of names (so that the
// layers collide: merged directories, files over directories, whiteouts
// over real objects) plus a few odd names, and carry every form a layer can
// hold: files, directories, symlinks (out of the layers too), hard links,
// whiteouts (0/0 devices, xattr whiteouts with and without the opaque "x"
// mark, OCI .wh. names), opaque markers (y, x, garbage, the foreign
// namespace, fuse-overlayfs' and OCI's), redirects (relative, absolute,
// loops, "..", "//", empty, "/", very long, to files and whiteouts),
// origin records (valid, corrupt, outside the layers), metacopy flags,
// index entries, symlinks in the work directory, owners, user and trusted
// xattrs, and deep directory chains.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_STACK_GENERATOR_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_STACK_GENERATOR_H_

#include <cstdint>

#include "integration/difffuzz/case_spec.h"

namespace lamina::difffuzz {

CaseSpec GenerateCase(uint64_t seed, int number);

// Every path a case's entries and operations name, and their parents: what
// the view walker probes besides what it lists.
std::vector<std::string> PathsNamed(const CaseSpec& spec);

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_STACK_GENERATOR_H_

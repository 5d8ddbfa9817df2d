// Known differences from kernel overlayfs (known_differences.h): whiteouts, and what the kernel
// reports of merged directories (st_nlink, d_ino, refused entries).

#include <set>
#include <string>
#include <vector>

#include "integration/difffuzz/known_entries.h"
#include "integration/difffuzz/spec_queries.h"
#include "integration/difffuzz/view_lines.h"

namespace lamina::difffuzz {
namespace {

using Kind = KnownDifference::Kind;
using Masked = KnownDifference::Masked;

}  // namespace

std::vector<KnownDifference> MarkerDifferences() {
  return {
      {
          Kind::kDeliberate,
          "d_ino-without-impure",
          "In a merged directory whose upper is not marked overlay.impure, the kernel's "
          "readdir gives an upper entry's own inode number as d_ino while lstat gives its "
          "origin's (ovl_iterate fixes d_ino only in impure directories); Lamina reports "
          "the same number in both, reading origins itself (docs/overlay.md, on-disk "
          "formats: impure is not needed to read). Only the kernel's side is masked.",
          [](const CaseSpec&, const std::string&, std::string& lamina, std::string& kernel) {
            if (Has(lamina, " d_ino!=ino")) return Masked::kNo;
            return Erase(kernel, " d_ino!=ino") ? Masked::kLines : Masked::kNo;
          },
      },
      {
          Kind::kReported,
          "kernel-lists-whiteouts",
          "Kernel overlayfs lists whiteouts its own lookup hides (lstat ENOENT): the 0/0 "
          "devices and xattr whiteouts of a directory it does not merge (one that only one "
          "layer has, whose readdir is the layer's own), e.g. L1 d/w a whiteout and nothing "
          "at d below, or an upper directory that merges nothing. Lamina leaves them out of "
          "the listing; and removes such a directory (rmdir) where the kernel answers "
          "ENOTEMPTY, its whiteouts being real entries of a directory it does not merge. "
          "Reported by task F (difffuzz).",
          [](const CaseSpec&, const std::string&, std::string& lamina, std::string& kernel) {
            if (!lamina.empty() || ListedError(kernel) != "ENOENT") return Masked::kNo;
            kernel.clear();
            return Masked::kLines;
          },
          /*diverges=*/true,
      },
      {
          Kind::kReported,
          "xattr-whiteout-in-dir-made-impure",
          "An xattr whiteout (empty file with overlay.whiteout) in an upper directory not "
          "marked \"x\", whose lower directory the upper one merges without an origin "
          "record: the kernel's first lookup of the merged directory writes the lower "
          "directory's origin on it and marks its parent impure (namei.c, ovl_lookup -> "
          "ovl_fix_origin); from then on the parent's readdir looks its upper entries up "
          "(readdir.c, ovl_calc_d_ino/ovl_cache_update) and leaves out the whiteout, "
          "which it listed before. Lamina writes no such origin at lookup, so its parent "
          "stays pure and it lists the name (lstat ENOENT, as the kernel's first "
          "listing). Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            if (ListedError(lamina) != "ENOENT" || !kernel.empty() ||
                !HasXattr(spec, RawPath(path), spec.options.PrivatePrefix() + "whiteout",
                          UpperLayer)) {
              return Masked::kNo;
            }
            lamina.clear();
            return Masked::kLines;
          },
      },
      {
          Kind::kReported,
          "refused-entries-listed",
          "An entry whose lookup is refused (an invalid redirect, nofollow): in a directory "
          "whose readdir the kernel serves by looking entries up (an impure one), the kernel "
          "leaves the entry out, or fails the whole readdir with the entry's errno; Lamina "
          "lists it (docs/overlay.md, \"Not yet done\"; reliability.md, open item 4).",
          [](const CaseSpec&, const std::string& path, std::string& lamina, std::string& kernel) {
            const std::string error = ListedError(lamina);
            if (!error.empty() && error != "ENOENT" && kernel.empty()) {
              lamina.clear();
              return Masked::kLines;
            }
            // The probe of the name the kernel left out finds it refused.
            if (path.compare(0, 6, "probe ") == 0 && lamina.empty() && !kernel.empty() &&
                kernel.find(" parent=") == std::string::npos &&
                (Has(kernel, " EINVAL") || Has(kernel, " EACCES") || Has(kernel, " EPERM"))) {
              kernel.clear();
              return Masked::kLines;
            }
            // The kernel's readdir of the directory failed.
            const size_t at = kernel.find(" readdir=");
            const std::string failed = at == std::string::npos
                                           ? ""
                                           : kernel.substr(at + 9, kernel.find('\n', at) - at - 9);
            if ((failed == "EINVAL" || failed == "EACCES" || failed == "EPERM" ||
                 failed == "ESTALE") &&
                !Has(lamina, " readdir=")) {
              return Masked::kSubtree;
            }
            return Masked::kNo;
          },
          /*diverges=*/true,
      },
  };
}

}  // namespace lamina::difffuzz

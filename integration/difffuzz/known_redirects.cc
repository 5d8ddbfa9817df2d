// Known differences from kernel overlayfs (known_differences.h): what directories with redirects
// report, and which of two names of one directory is refused.

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

std::vector<KnownDifference> RedirectDifferences() {
  return {
      {
          Kind::kReported,
          "redirected-dir-d_ino",
          "A directory with an overlay.redirect (from the layers, or from a rename or "
          "RENAME_EXCHANGE of merged directories): Lamina's readdir gives it the inode number "
          "of the directory of the same name below (the merge's rule for unredirected "
          "directories), its lstat the number of the object the redirect leads to (or its "
          "own): d_ino and st_ino disagree. The kernel's agree. Reported by task F "
          "(difffuzz).",
          [](const CaseSpec&, const std::string&, std::string& lamina, std::string& kernel) {
            if (Has(kernel, " d_ino!=ino") || TypeOf(lamina) != "dir" || TypeOf(kernel) != "dir") {
              return Masked::kNo;
            }
            return Erase(lamina, " d_ino!=ino") ? Masked::kLines : Masked::kNo;
          },
      },
      {
          Kind::kFuse,
          "directory-alias-lookup-order",
          "One lower directory reached under two names, its own and another directory's "
          "redirect (\"d/x\" redirected to \"/a/y\" while a/y is there too): both refuse "
          "whichever name is looked up second (ESTALE; the kernel's ovl_get_inode finds the "
          "directory's inode in use, Lamina's SameDirectory), but which one that is depends "
          "on the order of lookups. On a FUSE mount every readdir is a READDIRPLUS that "
          "looks up each listed name in the daemon's listing order "
          "(fs/fuse/readdir.c: parse_dirplusfile -> fuse_direntplus_link) before the walk's "
          "lstat, so Lamina meets the names in its own listing order, the kernel's overlay "
          "in the walk's. Only paths of such an alias where one side answers ESTALE.",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            if (!Has(lamina, " ESTALE") && !Has(kernel, " ESTALE") &&
                ListedError(lamina) != "ESTALE" && ListedError(kernel) != "ESTALE") {
              return Masked::kNo;
            }
            return InRedirectAlias(spec, RawPath(path)) ? Masked::kSubtree : Masked::kNo;
          },
          /*diverges=*/true,
      },
  };
}

}  // namespace lamina::difffuzz

// Known differences from kernel overlayfs (known_differences.h): Origin records, the index and hard
// links: which objects are one.

#include <algorithm>
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

std::vector<KnownDifference> OriginDifferences() {
  return {
      {
          Kind::kDeliberate,
          "copy-up-by-last-looked-up-name",
          "A write through one name of a lower hard link copies up the name the node was "
          "last looked up by, with its parent directories (FUSE's OPEN names a node, not the "
          "name used; docs/overlay.md, \"Hard links across copy-up\"), so an upper directory "
          "can appear where the kernel made none: the view is the same but for that "
          "directory's st_nlink (merged now: 1, where the kernel's lower directory shows its "
          "own count).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            if (TypeOf(lamina) != "dir" || TypeOf(kernel) != "dir") return Masked::kNo;
            const std::string dir = RawPath(path);
            bool holds_link = false;
            for (const Entry& e : spec.entries) {
              if (e.kind != Entry::Kind::kHardlink || e.layer == kUpperLayer) continue;
              for (const std::string& name : NamesOf(spec, e.layer, e.path)) {
                holds_link |= dir.empty() || name.compare(0, dir.size() + 1, dir + "/") == 0;
              }
            }
            if (!holds_link) return Masked::kNo;
            return SetField(lamina, "nlink", Field(kernel, "nlink")) ? Masked::kLines : Masked::kNo;
          },
      },
      {
          Kind::kDeliberate,
          "index-off-hard-links-share-while-mounted",
          "With index=off, a write through one name of a lower hard link copies up that "
          "name only; the kernel's other names keep the lower file (its data, nlink 2), "
          "Lamina's show the written data while mounted (docs/overlay.md, \"Hard links "
          "across copy-up\": the names share one node until remount).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            if (spec.options.index || TypeOf(lamina) != "file" || TypeOf(kernel) != "file" ||
                !std::ranges::any_of(EarlierPaths(spec, RawPath(path)), [&](const std::string& p) {
                  return IsLowerHardLink(spec, p);
                })) {
              return Masked::kNo;
            }
            // (Everything the written name's copy changed: data, size, link
            // count, inode, xattrs.)
            lamina = kernel;
            return Masked::kLines;
          },
      },
      {
          Kind::kReported,
          "conflicting-origin-claims",
          "Upper files that claim one lower object between them (two files with its origin "
          "record, or its index entry linked to one file while another records its origin), "
          "or one upper file linked as the index entry of two lower objects, or an upper "
          "file recording the origin of a lower file that the view still shows under its "
          "own name (a copy-up renamed without the whiteout): the kernel refuses some names "
          "(ESTALE), keeps the rest apart or follows the first name looked up; Lamina keys "
          "them all to one node and serves the data of whichever upper file the node holds "
          "under every name (a lower name shows an upper file's data, an upper file another "
          "upper file's). Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string&, std::string&) {
            for (const std::string& earlier : EarlierPaths(spec, RawPath(path))) {
              if (InConflictingClaim(spec, earlier)) return Masked::kSubtree;
            }
            return Masked::kNo;
          },
          /*diverges=*/true,
          // An operation on one of the names Lamina keys to one node.
          [](const CaseSpec& spec, const Op& op, const std::string&, const std::string&) {
            for (const std::string* path : {&op.path, &op.path2}) {
              if (path->empty()) continue;
              for (const std::string& earlier : EarlierPaths(spec, *path)) {
                if (InConflictingClaim(spec, earlier)) return true;
              }
            }
            return false;
          },
      },
      {
          Kind::kReported,
          "index-entries-lamina-ignores",
          "With index=on, entries in work/index that Lamina does not use: one named after a "
          "lower file with a single link (a link-up, an orphan), or one that is not a "
          "regular file (a directory, a symlink, a 0/0 whiteout, the kernel's nfs_export "
          "marker) for any lower file: the kernel looks the index up for every lower file "
          "(ovl_lookup_index) and shows the entry's data, or refuses the names (EIO, "
          "ESTALE) when the entry does not fit; Lamina consults the index only for lower "
          "files with several links and passes over entries that are not regular files. "
          "Only a hand-made or damaged index has such entries. Reported by task F "
          "(difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string&, std::string&) {
            if (!spec.options.index) return Masked::kNo;
            const std::set<std::string> paths = EarlierPaths(spec, RawPath(path));
            for (const Entry& e : spec.entries) {
              if (e.kind != Entry::Kind::kIndexEntry) continue;
              for (const std::string& name : NamesOf(spec, e.ref_layer, e.ref_path)) {
                if (paths.contains(name)) return Masked::kSubtree;
              }
            }
            return Masked::kNo;
          },
          /*diverges=*/true,
      },
  };
}

}  // namespace lamina::difffuzz

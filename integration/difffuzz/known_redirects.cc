// Known differences from kernel overlayfs (known_differences.h): Redirects: when they are read, how
// they are checked, and where they lead.

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
          "redirect-read-with-nothing-below",
          "A directory's overlay.redirect where the lookup has no layer left below it (in the "
          "bottom layer, in a directory only one lower layer has, or, with "
          "redirect_dir=nofollow, in an upper directory whose parent merges no lower): the "
          "kernel never reads it (ovl_lookup_single returns before ovl_check_redirect when "
          "d->last; with nofollow, d.last is set when the parent has no lower), so an invalid "
          "value (\"/..\", \"/a/\", \"a/b\") or nofollow changes nothing; Lamina reads it and "
          "refuses the lookup (EINVAL, EACCES; EPERM under nofollow), hiding the directory "
          "and all below it. Likewise Lamina checks every component of a redirect before "
          "walking it (CheckRedirect: EACCES for \".\" or \"..\", EINVAL for an empty one), "
          "the kernel only when its walk reaches the component: where an earlier component "
          "is missing the kernel shows the directory, and where a redirect further down "
          "fails first the errnos differ. Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            const std::string raw = RawPath(path);
            if (!HasXattr(spec, raw, spec.options.PrivatePrefix() + "redirect", AnyLayer)) {
              return Masked::kNo;
            }
            const std::string error = ListedError(lamina);
            const bool refused = error == "EINVAL" || error == "EACCES" || error == "EPERM";
            // Refused, or left out of a listing (an impure parent's), where
            // the kernel shows a directory; a probe of it refused where the
            // kernel listed it.
            if ((refused || lamina.empty()) && TypeOf(kernel) == "dir") return Masked::kSubtree;
            // Both refuse, with other errnos: Lamina checks every component
            // of a redirect before it walks (EACCES for \".\", EINVAL for an
            // empty one), the kernel as its walk reaches them, so a redirect
            // further down (or a missing component) decides first.
            const std::string kernel_error = ListedError(kernel);
            if (refused && !kernel_error.empty() && kernel_error != error) {
              return Masked::kSubtree;
            }
            if (path.compare(0, 6, "probe ") == 0 && kernel.empty() && !lamina.empty() &&
                !Has(lamina, " dir\n")) {
              lamina.clear();
              return Masked::kLines;
            }
            return Masked::kNo;
          },
          /*diverges=*/true,
      },
      {
          Kind::kReported,
          "empty-redirect-ignored",
          "An empty overlay.redirect value: the kernel refuses the lookup (EINVAL, "
          "ovl_check_redirect: \"invalid redirect\"); Lamina's ReadRedirect takes an empty "
          "value for no redirect and shows the directory (CheckRedirect calls it EINVAL, but "
          "is never asked). Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            if (!HasXattr(spec, RawPath(path), spec.options.PrivatePrefix() + "redirect", AnyLayer,
                          [](const std::string& value) { return value.empty(); })) {
              return Masked::kNo;
            }
            if (KernelProbeRefuses(path, kernel, lamina, {"EINVAL"})) {
              kernel.clear();
              return Masked::kLines;
            }
            // (Lamina shows the directory, or refuses it for another reason
            // further down: a redirect below the empty one.)
            if (!kernel.empty() && ListedError(kernel) != "EINVAL") return Masked::kNo;
            return Masked::kSubtree;
          },
          /*diverges=*/true,
      },
      {
          Kind::kReported,
          "redirect-nofollow-errno",
          "With redirect_dir=nofollow (userxattr), a directory whose redirect is invalid: the "
          "kernel answers EPERM (it refuses to follow any redirect before reading it), Lamina "
          "EINVAL or EACCES (it checks the value first). Both refuse the lookup. Reported by "
          "task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            if (!spec.options.userxattr) return Masked::kNo;
            const std::string redirect = spec.options.PrivatePrefix() + "redirect";
            // A probe below such a directory: "parent=EACCES" against "parent=EPERM".
            if (path.compare(0, 6, "probe ") == 0 &&
                (Has(lamina, " parent=EACCES\n") || Has(lamina, " parent=EINVAL\n")) &&
                Has(kernel, " parent=EPERM\n") && AncestorHasXattr(spec, RawPath(path), redirect)) {
              lamina.clear();
              kernel.clear();
              return Masked::kLines;
            }
            if (!HasXattr(spec, RawPath(path), redirect, AnyLayer)) return Masked::kNo;
            // Lamina leaves the name out of an impure directory's listing
            // where the kernel lists it refused; the probe of the left-out
            // name finds it refused.
            const bool probe = path.compare(0, 6, "probe ") == 0;
            const bool lamina_refused = Has(lamina, " EACCES\n") || Has(lamina, " EINVAL\n");
            if ((!probe && lamina.empty() && ListedError(kernel) == "EPERM") ||
                (probe && lamina_refused && (kernel.empty() || Has(kernel, " EPERM\n")))) {
              lamina.clear();
              kernel.clear();
              return Masked::kLines;
            }
            const std::string error = ListedError(lamina);
            if (ListedError(kernel) != "EPERM" || (error != "EINVAL" && error != "EACCES")) {
              return Masked::kNo;
            }
            return Masked::kSubtree;
          },
      },
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
          Kind::kReported,
          "redirect-through-opaque-ancestor",
          "An absolute redirect whose path crosses a directory marked opaque in a lower "
          "layer (\"/e/y\" with e opaque in L1): the kernel's lookup stops at the opaque "
          "directory for the layers below it (ovl_lookup_layer: d->stop), Lamina's "
          "OpenLayerPath walks on and merges the directory of the layer further down. "
          "Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            if (lamina.empty() || !kernel.empty() || !RedirectCrossesOpaque(spec, RawPath(path))) {
              return Masked::kNo;
            }
            lamina.clear();
            return Masked::kLines;
          },
          /*diverges=*/true,
      },
      {
          Kind::kReported,
          "directory-alias-through-redirect",
          "One lower directory reached under two names, its own and another directory's "
          "redirect (\"d/x\" redirected to \"/a/y\" while a/y is there too): the kernel "
          "refuses whichever name is looked up second (ESTALE, ovl_get_inode finds the "
          "directory's inode in use), never aliasing a directory; Lamina keys both names to "
          "one node and shows one merged directory under both, a directory hard link "
          "(changes through one show through the other), and the node's attributes are "
          "those of whichever name was looked up last (an upper directory shown with the "
          "lower one's mode: 0700 for 0755, or the reverse). Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            const std::string alias = Field(lamina, "ino");
            if (TypeOf(lamina) == "dir" && !alias.empty() && alias != "self" &&
                (ListedError(kernel) == "ESTALE" || kernel.empty())) {
              return Masked::kSubtree;
            }
            // Below either name, either overlay may show the other name's
            // objects or attributes.
            auto aliased = [&](const std::string& p) {
              for (const std::string& earlier : EarlierPaths(spec, p)) {
                if (InRedirectAlias(spec, earlier)) return true;
              }
              return false;
            };
            if (aliased(RawPath(path))) return Masked::kSubtree;
            // An object elsewhere whose inode was first seen there.
            const std::string lamina_ino = Field(lamina, "ino"), kernel_ino = Field(kernel, "ino");
            if (!lamina_ino.empty() && !kernel_ino.empty() && lamina_ino != kernel_ino &&
                ((lamina_ino != "self" && aliased(RawPath(lamina_ino))) ||
                 (kernel_ino != "self" && aliased(RawPath(kernel_ino))))) {
              SetField(lamina, "ino", kernel_ino);
              return Masked::kLines;
            }
            return Masked::kNo;
          },
          /*diverges=*/true,
      },
      {
          Kind::kReported,
          "redirect-to-ancestor-leaks",
          "A directory whose redirect names one of its own ancestors (\"d/z\" redirected to "
          "\"/d\"): Lamina resolves it to the ancestor's node, so the directory contains "
          "itself (d/z/z/z/... without end) and the node references itself as its parent; "
          "after the unmount its descriptors (the upper and lower directory) stay open in "
          "the daemon: a leak per such mount. The kernel refuses the name (ESTALE). "
          "Reported by task F (difffuzz).",
          [](const CaseSpec&, const std::string&, std::string&, std::string&) {
            return Masked::kNo;  // (the view difference is directory-alias-through-redirect)
          },
          /*diverges=*/false,
          /*outcome=*/nullptr,
          [](const CaseSpec& spec, const std::string& detail) {
            return detail.find("descriptors before the mount") != std::string::npos &&
                   RedirectToAncestor(spec);
          },
      },
      {
          Kind::kReported,
          "redirect-on-the-way-of-a-redirect",
          "An absolute redirect whose path passes a directory that has a redirect of its own "
          "in a lower layer where the rest of the path is missing (upper colon:x/z -> "
          "\"/c/z/p\", L1 c -> \"/colon:x/z/./p\", no c/z in L1): the kernel takes c's "
          "redirect for the layers below even though its walk in L1 ends at z, and follows "
          "\"/colon:x/z/./p/z/p\" further down (here into an EACCES); Lamina's OpenLayerPath "
          "gives up on L1 and keeps the first path. Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            if (TypeOf(lamina) != "dir" || !KernelRefuses(kernel, lamina, {"EACCES", "EINVAL"}) ||
                !RedirectPassesRedirected(spec, RawPath(path))) {
              return Masked::kNo;
            }
            return Masked::kSubtree;
          },
          /*diverges=*/true,
      },
  };
}

}  // namespace lamina::difffuzz

// Known differences from kernel overlayfs (known_differences.h): Whiteouts, opaque markers (every
// form and namespace), metacopy, and what the kernel reports of merged directories (st_nlink,
// d_ino, refused entries).

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
          Kind::kReported,
          "merged-dir-nlink",
          "Kernel overlayfs reports st_nlink 1 for a merged directory (ovl_getattr: "
          "\"nlink=1 seems to pacify 'find'\"); Lamina reports the top directory's count, "
          "which can be 2 while lower subdirectories exist (find's leaf optimisation would "
          "skip them). Reported by task F (difffuzz).",
          [](const CaseSpec&, const std::string&, std::string& lamina, std::string& kernel) {
            if (TypeOf(lamina) != "dir" || TypeOf(kernel) != "dir") return Masked::kNo;
            if (Field(kernel, "nlink") != "1") return Masked::kNo;
            return SetField(lamina, "nlink", "1") ? Masked::kLines : Masked::kNo;
          },
      },
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
          "xattr-whiteout-outside-x-dir",
          "An xattr whiteout (empty file with overlay.whiteout) in a directory not marked "
          "opaque \"x\": the kernel lists the name and its lookup fails (ENOENT); Lamina shows "
          "an empty file (hostile_layers_test.cc, WhiteoutFormsTheKernelAlsoReads, says so).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            // (Or the kernel left it out of an impure directory's listing.)
            const bool refused =
                (ListedError(kernel) == "ENOENT" && Has(kernel, "dtype=file")) ||
                (kernel.empty() && HasXattr(spec, RawPath(path),
                                            spec.options.PrivatePrefix() + "whiteout", AnyLayer));
            if (!refused || TypeOf(lamina) != "file" || Field(lamina, "size") != "0") {
              return Masked::kNo;
            }
            kernel.clear();
            lamina.clear();
            return Masked::kLines;
          },
          /*diverges=*/true,
      },
      {
          Kind::kReported,
          "metacopy-ignored",
          "An upper file marked overlay.metacopy, mounted with metacopy=off: the kernel "
          "refuses its lookup (EPERM: it will not follow a metacopy origin it was not asked "
          "to); Lamina ignores the mark and shows the upper file as it is (its data may be "
          "missing: a metacopy file holds none). Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            if (!HasXattr(spec, RawPath(path), spec.options.PrivatePrefix() + "metacopy",
                          UpperLayer)) {
              return Masked::kNo;
            }
            if (KernelProbeRefuses(path, kernel, lamina, {"EPERM"})) {
              kernel.clear();
              return Masked::kLines;
            }
            if (!KernelRefuses(kernel, lamina, {"EPERM"}) || TypeOf(lamina) != "file") {
              return Masked::kNo;
            }
            return Masked::kSubtree;
          },
          /*diverges=*/true,
      },
      {
          Kind::kReported,
          "foreign-namespace-markers-read",
          "Markers in the other namespace than the mount's (user.overlay.* with trusted "
          "xattrs, trusted.overlay.* with userxattr): the kernel reads only its own "
          "(ovl_xattr(ofs, ...)), Lamina's ReadDirMarks and IsWhiteout read both, so a "
          "user.overlay.opaque \"y\" or user.overlay.whiteout that any owner of a layer "
          "file can set (and any user of a trusted-mode mount can set through it) hides "
          "lower content the kernel shows. Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            const std::string raw = RawPath(path);
            const std::string foreign = spec.options.ForeignPrefix();
            // A directory Lamina takes for opaque and so never merges with
            // a lower one the kernel refuses (its redirect, say).
            if ((kernel.empty() || !ListedError(kernel).empty()) && TypeOf(lamina) == "dir" &&
                (HasXattr(spec, raw, foreign + "opaque", AnyLayer) ||
                 AncestorHasXattr(spec, raw, foreign + "opaque"))) {
              return Masked::kSubtree;
            }
            if (!lamina.empty() || kernel.empty() ||
                (!HasXattr(spec, raw, foreign + "whiteout", AnyLayer) &&
                 !AncestorHasXattr(spec, raw, foreign + "opaque"))) {
              return Masked::kNo;
            }
            kernel.clear();
            return Masked::kLines;
          },
          /*diverges=*/true,
          // A directory Lamina takes for opaque (pure upper) where the kernel
          // merges it: renaming or removing it answers differently (EXDEV
          // against ENOTEMPTY or success).
          [](const CaseSpec& spec, const Op& op, const std::string&, const std::string&) {
            const std::string opaque = spec.options.ForeignPrefix() + "opaque";
            for (const std::string* path : {&op.path, &op.path2}) {
              if (!path->empty() && (HasXattr(spec, *path, opaque, AnyLayer) ||
                                     AncestorHasXattr(spec, *path, opaque))) {
                return true;
              }
            }
            return false;
          },
      },
      {
          Kind::kReported,
          "fuseoverlayfs-opaque-copied-up",
          "A lower directory marked opaque the fuse-overlayfs way (user.fuseoverlayfs.opaque "
          "\"y\", which Lamina reads) keeps the mark when it is copied up, since it is an "
          "ordinary user xattr: the upper directory then hides the lower directory it was "
          "copied from, and after a remount its lower entries are gone from the view. (The "
          "kernel side reads the mark as overlay.opaque, which copy-up does not carry.) Any "
          "user of the mount can also set the mark through it (setxattr "
          "user.fuseoverlayfs.opaque y: fuse-overlayfs refuses that name, Lamina stores it), "
          "with the same effect after a remount. Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            // An inode first seen below such a directory on one side.
            const std::string lamina_ino = Field(lamina, "ino"), kernel_ino = Field(kernel, "ino");
            if (!lamina_ino.empty() && !kernel_ino.empty() && lamina_ino != kernel_ino) {
              for (const std::string& label : {lamina_ino, kernel_ino}) {
                if (label == "self") continue;
                for (const std::string& earlier : EarlierPaths(spec, RawPath(label))) {
                  if (AncestorHasXattr(spec, earlier, "user.fuseoverlayfs.opaque")) {
                    SetField(lamina, "ino", kernel_ino);
                    return Masked::kLines;
                  }
                }
              }
            }
            // Lamina takes the directory above for opaque and never merges a
            // lower directory here that the kernel refuses (its redirect).
            if ((kernel.empty() || !ListedError(kernel).empty()) && TypeOf(lamina) == "dir" &&
                AncestorHasXattr(spec, RawPath(path), "user.fuseoverlayfs.opaque")) {
              return Masked::kSubtree;
            }
            if (!lamina.empty() || kernel.empty() ||
                !AncestorHasXattr(spec, RawPath(path), "user.fuseoverlayfs.opaque")) {
              return Masked::kNo;
            }
            kernel.clear();
            return Masked::kLines;
          },
          /*diverges=*/true,
      },
      {
          Kind::kReported,
          "opaque-marker-on-layer-root",
          "An opaque marker on a lower layer's root directory (overlay.opaque \"y\", "
          "fuse-overlayfs' or an OCI .wh..wh..opq in the root): the kernel ignores it, the "
          "overlay root merging every lower layer; Lamina's listing of the root honours it "
          "and leaves the layers below out, while its lookups of their names still succeed "
          "(listed nowhere, reachable by name). Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            if (!RootMarkedOpaque(spec)) return Masked::kNo;
            const bool probe = path.compare(0, 6, "probe ") == 0;
            // Missing from Lamina's listing, found by its probe.
            if ((!probe && lamina.empty() && !kernel.empty()) ||
                (probe && kernel.empty() && !lamina.empty())) {
              lamina.clear();
              kernel.clear();
              return Masked::kLines;
            }
            return Masked::kNo;
          },
          /*diverges=*/true,
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

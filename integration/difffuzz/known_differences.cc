#include "integration/difffuzz/known_differences.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string_view>
#include <utility>

namespace lamina::difffuzz {
namespace {

using Kind = KnownDifference::Kind;
using Masked = KnownDifference::Masked;

// Where the value of " FIELD=" starts in a view line and where it ends (a
// quoted value ends at its closing quote), or npos.
std::pair<size_t, size_t> FieldSpan(const std::string& line, std::string_view field) {
  const std::string key = " " + std::string(field) + "=";
  size_t at = line.find(key, ViewLineKey(line).size());
  if (at == std::string::npos) return {at, at};
  at += key.size();
  size_t end = at;
  if (end < line.size() && line[end] == '"') {
    for (++end; end < line.size() && line[end] != '"'; ++end) {
      if (line[end] == '\\') ++end;
    }
    ++end;
  }
  end = std::min(line.find_first_of(" \n", end), line.size());
  return {at, end};
}

// The value of " FIELD=" in a view line, or "" when absent.
std::string Field(const std::string& line, std::string_view field) {
  const auto [at, end] = FieldSpan(line, field);
  return at == std::string::npos ? "" : line.substr(at, end - at);
}

// Replaces the value of " FIELD=" (if present) with `value`.
bool SetField(std::string& line, std::string_view field, const std::string& value) {
  const auto [at, end] = FieldSpan(line, field);
  if (at == std::string::npos || line.compare(at, end - at, value) == 0) return false;
  line.replace(at, end - at, value);
  return true;
}

bool Erase(std::string& line, std::string_view text) {
  const size_t at = line.find(text);
  if (at == std::string::npos) return false;
  line.erase(at, text.size());
  return true;
}

// The object's type as a view line gives it (the field after the path).
std::string TypeOf(const std::string& line) {
  const size_t start = ViewLineKey(line).size();
  if (start >= line.size()) return "";
  return line.substr(start + 1, line.find(' ', start + 1) - start - 1);
}

bool Has(const std::string& line, std::string_view text) {
  return line.find(text) != std::string::npos;
}

// The errno of a "PATH listed, lstat=ERRNO dtype=TYPE" line, or "".
std::string ListedError(const std::string& line) {
  const size_t at = line.find(" listed, lstat=");
  if (at == std::string::npos) return "";
  return line.substr(at + 15, line.find(' ', at + 15) - at - 15);
}

// The path a view prints (Printable, maybe after "probe "), as it is.
std::string RawPath(std::string key) {
  if (key.compare(0, 6, "probe ") == 0) key = key.substr(6);
  if (!key.empty() && key[0] == '"') return Unquote(key, 1);
  return key == "/" ? "" : key;
}

// The names the object at `path` has in `layer`: the path itself and the
// same-layer hard links made to it or from it.
std::set<std::string> NamesOf(const CaseSpec& spec, int layer, const std::string& path) {
  std::set<std::string> names = {path};
  for (size_t before = 0; before != names.size();) {  // (links of links)
    before = names.size();
    for (const Entry& e : spec.entries) {
      if (e.kind != Entry::Kind::kHardlink || e.layer != layer) continue;
      if (names.contains(e.data)) names.insert(e.path);
      if (names.contains(e.path)) names.insert(e.data);
    }
  }
  return names;
}

// The paths the object now at `path` may have had in the layers: `path`
// itself and, through the case's renames and exchanges (taken back from
// the last), where it was before; whether each succeeded does not matter.
std::set<std::string> EarlierPaths(const CaseSpec& spec, const std::string& path) {
  std::set<std::string> paths = {path};
  auto within = [](const std::string& p, const std::string& top) {
    return p == top ||
           (p.size() > top.size() && p.compare(0, top.size(), top) == 0 && p[top.size()] == '/');
  };
  for (auto op = spec.ops.rbegin(); op != spec.ops.rend(); ++op) {
    if (op->kind != Op::Kind::kRename && op->kind != Op::Kind::kRenameNoReplace &&
        op->kind != Op::Kind::kExchange) {
      continue;
    }
    std::set<std::string> more;
    for (const std::string& p : paths) {
      if (within(p, op->path2)) more.insert(op->path + p.substr(op->path2.size()));
      if (op->kind == Op::Kind::kExchange && within(p, op->path)) {
        more.insert(op->path2 + p.substr(op->path.size()));
      }
    }
    paths.insert(more.begin(), more.end());
  }
  // And through the layers' absolute redirects: below a redirected
  // directory, the path the lower layers hold.
  const std::string redirect = spec.options.PrivatePrefix() + "redirect";
  for (int round = 0; round < 4; ++round) {
    std::set<std::string> more;
    for (const Entry& e : spec.entries) {
      if (e.kind != Entry::Kind::kXattr || e.name != redirect || e.data.size() < 2 ||
          e.data[0] != '/') {
        continue;
      }
      for (const std::string& p : paths) {
        if (within(p, e.path)) more.insert(e.data.substr(1) + p.substr(e.path.size()));
      }
    }
    const size_t before = paths.size();
    paths.insert(more.begin(), more.end());
    if (paths.size() == before || paths.size() > 64) break;
  }
  return paths;
}

using ValueTest = std::function<bool(const std::string&)>;
bool AnyValue(const std::string&) {
  return true;
}

// Whether a layer `layer_ok` accepts sets the xattr `name` on the object
// at `path` (under any of its names there), with a value `value_ok` takes;
// or an operation sets it through the mount (it lands in the upper).
bool HasXattr(const CaseSpec& spec, const std::string& path, const std::string& name,
              const std::function<bool(int)>& layer_ok, const ValueTest& value_ok = AnyValue) {
  const std::set<std::string> paths = EarlierPaths(spec, path);
  for (const Entry& e : spec.entries) {
    if (e.kind != Entry::Kind::kXattr || e.name != name || !layer_ok(e.layer) ||
        !value_ok(e.data)) {
      continue;
    }
    for (const std::string& p : NamesOf(spec, e.layer, e.path)) {
      if (paths.contains(p)) return true;
    }
  }
  for (const Op& op : spec.ops) {
    if (op.kind == Op::Kind::kSetXattr && op.name == name && paths.contains(op.path) &&
        layer_ok(kUpperLayer) && value_ok(op.data)) {
      return true;
    }
  }
  return false;
}

// Whether the kernel refuses `path` with one of `errors`: listed with that
// lstat errno, or left out of its parent's listing (a directory whose
// readdir looks entries up) while Lamina shows an object.
bool KernelRefuses(const std::string& kernel, const std::string& lamina,
                   std::initializer_list<std::string_view> errors) {
  if (kernel.empty()) return !lamina.empty() && ListedError(lamina).empty();
  const std::string error = ListedError(kernel);
  return std::find(errors.begin(), errors.end(), error) != errors.end();
}

// For the probe of a name the kernel left out of a listing: whether it
// found the name refused with one of `errors` while Lamina listed it.
bool KernelProbeRefuses(const std::string& path, const std::string& kernel,
                        const std::string& lamina, std::initializer_list<std::string_view> errors) {
  if (path.compare(0, 6, "probe ") != 0 || !lamina.empty() || kernel.empty()) return false;
  const std::string result = kernel.substr(kernel.rfind(' ') + 1, kernel.size());
  for (std::string_view error : errors) {
    if (result == std::string(error) + "\n") return true;
  }
  return false;
}

bool AnyLayer(int) {
  return true;
}
bool UpperLayer(int layer) {
  return layer == kUpperLayer;
}

// HasXattr for `path`'s directories above it, the layer roots included.
bool AncestorHasXattr(const CaseSpec& spec, std::string path, const std::string& name,
                      const ValueTest& value_ok = AnyValue) {
  while (!path.empty()) {
    const size_t slash = path.rfind('/');
    path = slash == std::string::npos ? "" : path.substr(0, slash);
    if (HasXattr(spec, path, name, AnyLayer, value_ok)) return true;
  }
  return false;
}

// Whether `path` is at or below a directory with a redirect whose target
// (an absolute path, or a name beside it) some lower layer also has, or at
// or below such a target: one lower directory with two names in the view.
bool InRedirectAlias(const CaseSpec& spec, const std::string& path) {
  const std::string redirect = spec.options.PrivatePrefix() + "redirect";
  auto within = [](const std::string& p, const std::string& top) {
    return p == top ||
           (p.size() > top.size() && p.compare(0, top.size(), top) == 0 && p[top.size()] == '/');
  };
  auto in_a_lower = [&](const std::string& target) {
    for (const Entry& e : spec.entries) {
      if (e.layer != kUpperLayer && within(e.path, target)) return true;
    }
    return false;
  };
  for (const Entry& e : spec.entries) {
    if (e.kind != Entry::Kind::kXattr || e.name != redirect || e.data.empty()) continue;
    std::string target;
    if (e.data[0] == '/') {
      target = e.data.substr(1);
    } else if (e.data.find('/') == std::string::npos) {
      const size_t slash = e.path.rfind('/');
      target = (slash == std::string::npos ? "" : e.path.substr(0, slash + 1)) + e.data;
    }
    if (target.empty() || !in_a_lower(target)) continue;
    if (within(path, e.path) || within(path, target)) return true;
  }
  return false;
}

// Whether a directory above `path` (or `path` itself) has an absolute
// redirect whose way, before its last component, crosses a directory some
// lower layer marks opaque (any form Lamina reads).
bool RedirectCrossesOpaque(const CaseSpec& spec, const std::string& path) {
  const std::string redirect = spec.options.PrivatePrefix() + "redirect";
  auto opaque_somewhere = [&](const std::string& dir) {
    for (const Entry& e : spec.entries) {
      if (e.layer == kUpperLayer) continue;
      if (e.kind == Entry::Kind::kXattr && e.path == dir && e.data == "y" &&
          (e.name == spec.options.PrivatePrefix() + "opaque" ||
           e.name == "user.fuseoverlayfs.opaque")) {
        return true;
      }
      if (e.kind == Entry::Kind::kFile &&
          e.path == (dir.empty() ? "" : dir + "/") + ".wh..wh..opq") {
        return true;
      }
    }
    return false;
  };
  for (std::string dir = path; !dir.empty();) {
    for (const Entry& e : spec.entries) {
      if (e.kind != Entry::Kind::kXattr || e.name != redirect || e.path != dir || e.data.empty() ||
          e.data[0] != '/') {
        continue;
      }
      // Every proper prefix of the redirect's path.
      for (size_t slash = e.data.find('/', 1); slash != std::string::npos;
           slash = e.data.find('/', slash + 1)) {
        if (opaque_somewhere(e.data.substr(1, slash - 1))) return true;
      }
    }
    const size_t slash = dir.rfind('/');
    dir = slash == std::string::npos ? "" : dir.substr(0, slash);
  }
  return false;
}

// Whether `path` is one of the upper files, or the lower object, of a
// conflicting claim: several upper files claiming one lower object
// (origin records, index link-ups), or one upper file linked as the index
// entry of several lower objects.
bool InConflictingClaim(const CaseSpec& spec, const std::string& path) {
  std::map<std::string, std::set<std::string>> claimants;  // lower object -> upper files
  std::map<std::string, std::set<std::string>> claimed;    // upper file -> lower objects
  for (const Entry& e : spec.entries) {
    const bool outside = e.kind == Entry::Kind::kOrigin && e.origin == OriginForm::kOutside;
    const bool origin = e.kind == Entry::Kind::kOrigin && e.layer == kUpperLayer &&
                        (e.origin == OriginForm::kValid || outside);
    const bool link_up = e.kind == Entry::Kind::kIndexEntry && e.index == Entry::IndexForm::kLinkUp;
    if (!origin && !link_up) continue;
    // (Every "outside" record names the same file outside the layers.)
    const std::string lower =
        outside ? "0:(outside)" : std::to_string(e.ref_layer) + ":" + e.ref_path;
    for (const std::string& name : NamesOf(spec, kUpperLayer, e.path)) {
      claimants[lower].insert(name);
      if (link_up) claimed[name].insert(lower);
    }
  }
  for (const auto& [lower, uppers] : claimants) {
    const size_t colon = lower.find(':');
    const std::set<std::string> lower_names =
        lower == "0:(outside)"
            ? std::set<std::string>()
            : NamesOf(spec, std::stoi(lower.substr(0, colon)), lower.substr(colon + 1));
    // Two claimants, or one under another name than the lower object's
    // own, which the view may show too.
    const bool conflict =
        uppers.size() > 1 || (uppers.size() == 1 && !lower_names.contains(*uppers.begin()));
    if (conflict && (uppers.contains(path) || lower_names.contains(path))) return true;
  }
  for (const auto& [upper, lowers] : claimed) {
    if (lowers.size() < 2) continue;
    if (upper == path) return true;
    for (const std::string& lower : lowers) {
      if (lower.substr(lower.find(':') + 1) == path) return true;
    }
  }
  return false;
}

// Whether some directory's absolute redirect names one of its ancestors
// (or the root).
bool RedirectToAncestor(const CaseSpec& spec) {
  const std::string redirect = spec.options.PrivatePrefix() + "redirect";
  for (const Entry& e : spec.entries) {
    if (e.kind != Entry::Kind::kXattr || e.name != redirect || e.data.empty() || e.data[0] != '/') {
      continue;
    }
    const std::string target = e.data.substr(1);
    if (target.empty() ||
        (e.path.size() > target.size() && e.path.compare(0, target.size(), target) == 0 &&
         e.path[target.size()] == '/')) {
      return true;
    }
  }
  return false;
}

// Whether a lower layer's root carries an opaque marker Lamina reads.
bool RootMarkedOpaque(const CaseSpec& spec) {
  for (const Entry& e : spec.entries) {
    if (e.layer == kUpperLayer) continue;
    if (e.kind == Entry::Kind::kXattr && e.path.empty() && e.data == "y" &&
        (e.name == spec.options.PrivatePrefix() + "opaque" ||
         e.name == spec.options.ForeignPrefix() + "opaque" ||
         e.name == "user.fuseoverlayfs.opaque")) {
      return true;
    }
    if (e.kind == Entry::Kind::kFile && e.path == ".wh..wh..opq") return true;
  }
  return false;
}

// Whether `path` names a hard link of a lower layer (either name).
bool IsLowerHardLink(const CaseSpec& spec, const std::string& path) {
  for (const Entry& e : spec.entries) {
    if (e.kind == Entry::Kind::kHardlink && e.layer != kUpperLayer &&
        (e.path == path || e.data == path)) {
      return true;
    }
  }
  return false;
}

const std::vector<KnownDifference>& Entries() {
  static const std::vector<KnownDifference> entries = {
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
          "origin-of-another-type",
          "An upper object whose overlay.origin names a lower object of another type (a file "
          "recording a directory): the kernel ignores such an origin (ovl_check_origin_fh: "
          "\"invalid origin\", the file types differ), Lamina's DecodeOrigin takes it and the "
          "file shows the directory's inode number: two objects of the view share st_ino. "
          "Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            const std::string shared = Field(lamina, "ino");
            if (shared.empty() || shared == "self" || Field(kernel, "ino") == shared) {
              return Masked::kNo;
            }
            const std::set<std::string> here = EarlierPaths(spec, RawPath(path));
            const std::set<std::string> there = EarlierPaths(spec, RawPath(shared));
            for (const Entry& e : spec.entries) {
              if (e.kind == Entry::Kind::kOrigin &&
                  ((there.contains(e.path) && here.contains(e.ref_path)) ||
                   (here.contains(e.path) && there.contains(e.ref_path)))) {
                return SetField(lamina, "ino", Field(kernel, "ino")) ? Masked::kLines : Masked::kNo;
              }
            }
            return Masked::kNo;
          },
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
          "upper-hard-link-with-origin-index-off",
          "An upper file with an origin record and more than one link (as an index=on mount "
          "leaves a link-up: the file and its work/index entry), mounted with index=off: "
          "the kernel refuses its lookup (ESTALE), Lamina shows it, with its origin's inode "
          "number. Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string&, std::string& lamina, std::string& kernel) {
            if (spec.options.index || ListedError(kernel) != "ESTALE" || TypeOf(lamina) != "file") {
              return Masked::kNo;
            }
            return Masked::kSubtree;
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
            if (InRedirectAlias(spec, RawPath(path))) return Masked::kSubtree;
            // An object elsewhere whose inode was first seen there.
            const std::string lamina_ino = Field(lamina, "ino"), kernel_ino = Field(kernel, "ino");
            if (!lamina_ino.empty() && !kernel_ino.empty() && lamina_ino != kernel_ino &&
                ((lamina_ino != "self" && InRedirectAlias(spec, RawPath(lamina_ino))) ||
                 (kernel_ino != "self" && InRedirectAlias(spec, RawPath(kernel_ino))))) {
              SetField(lamina, "ino", kernel_ino);
              return Masked::kLines;
            }
            return Masked::kNo;
          },
          /*diverges=*/true,
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
      },
      {
          Kind::kReported,
          "removexattr-absent-copies-up",
          "removexattr of a name a lower object does not have: the kernel answers ENODATA "
          "without copying the object up (ovl_xattr_set checks the lower object first), "
          "Lamina copies it up and then answers ENODATA; the copy shows later (a merged "
          "directory where the kernel has a lower one: st_nlink, and after a remount "
          "whatever a copy-up changes). Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            // The object itself, or a directory its copy-up copied first.
            bool removed = false;
            const std::string raw = RawPath(path);
            for (const Op& op : spec.ops) {
              removed |= op.kind == Op::Kind::kRemoveXattr &&
                         (op.path == raw || op.path.compare(0, raw.size() + 1, raw + "/") == 0 ||
                          raw.empty());
            }
            if (!removed || TypeOf(lamina) != TypeOf(kernel)) return Masked::kNo;
            return SetField(lamina, "nlink", Field(kernel, "nlink")) ? Masked::kLines : Masked::kNo;
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
          "lower-link-shows-upper-copy",
          "A lower hard link with an upper copy that records its origin, the index not "
          "leading to it (index=off over what an index=on mount left, or a copy made without "
          "the index): the kernel shows the other names of the lower file as the lower file; "
          "Lamina keys them to the upper copy's node and shows its data and attributes under "
          "every name, which docs/overlay.md says happens only while mounted with index=off. "
          "Reported by task F (difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string&, std::string&) {
            const std::string raw = RawPath(path);
            for (const Entry& e : spec.entries) {
              const bool claim =
                  (e.kind == Entry::Kind::kOrigin && e.layer == kUpperLayer &&
                   e.origin == OriginForm::kValid) ||
                  (e.kind == Entry::Kind::kIndexEntry && e.index == Entry::IndexForm::kLinkUp);
              if (!claim) continue;
              const std::set<std::string> names = NamesOf(spec, e.ref_layer, e.ref_path);
              if (names.size() > 1 && names.contains(raw)) return Masked::kSubtree;
            }
            return Masked::kNo;
          },
          /*diverges=*/true,
      },
      {
          Kind::kReported,
          "link-of-lower-symlink-inode",
          "link() of a symlink of a lower layer: the kernel copies it up and links it, both "
          "names showing one inode (st_ino equal, st_nlink 2); Lamina's new name shows "
          "another inode number than the old one (st_nlink 2 on both). Reported by task F "
          "(difffuzz).",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            const std::string shared = Field(kernel, "ino");
            if (TypeOf(lamina) != "symlink" || TypeOf(kernel) != "symlink") return Masked::kNo;
            // The old name: its readdir d_ino is the lower one's.
            if (shared == "self" && Has(lamina, " d_ino!=ino") && !Has(kernel, " d_ino!=ino")) {
              for (const Op& op : spec.ops) {
                if (op.kind == Op::Kind::kLink &&
                    EarlierPaths(spec, RawPath(path)).contains(op.path)) {
                  Erase(lamina, " d_ino!=ino");
                  return Masked::kLines;
                }
              }
              return Masked::kNo;
            }
            if (Field(lamina, "ino") != "self" || shared == "self" || shared.empty()) {
              return Masked::kNo;
            }
            const std::set<std::string> here = EarlierPaths(spec, RawPath(path));
            const std::set<std::string> there = EarlierPaths(spec, RawPath(shared));
            for (const Op& op : spec.ops) {
              if (op.kind == Op::Kind::kLink &&
                  ((here.contains(op.path2) && there.contains(op.path)) ||
                   (here.contains(op.path) && there.contains(op.path2)))) {
                SetField(lamina, "ino", shared);
                Erase(lamina, " d_ino!=ino");
                return Masked::kLines;
              }
            }
            return Masked::kNo;
          },
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
          Kind::kDeliberate,
          "copy-up-by-last-looked-up-name",
          "A write through one name of a lower hard link copies up the name the node was "
          "last looked up by, with its parent directories (FUSE's OPEN names a node, not the "
          "name used; docs/overlay.md, \"Hard links across copy-up\"), so an upper directory "
          "can appear where the kernel made none: the view is the same but for that "
          "directory's st_nlink (merged: the upper's count, where the kernel's lower "
          "directory shows its own).",
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
          "origin-uuid-not-compared",
          "An origin record whose filesystem uuid is not the lower layer's: the kernel "
          "ignores it (ovl_decode_real_fh returns nothing on a uuid mismatch), so the upper "
          "file keeps its own inode number; Lamina's HasOrigin compares the file handle "
          "only, \"so copied layers still work\" (overlay/layer_object.h), and the file shows "
          "its origin's inode number.",
          [](const CaseSpec& spec, const std::string& path, std::string& lamina,
             std::string& kernel) {
            if (TypeOf(lamina) != TypeOf(kernel)) return Masked::kNo;
            bool foreign = false;
            for (const std::string& p : EarlierPaths(spec, RawPath(path))) {
              for (const Entry& e : spec.entries) {
                foreign |= e.kind == Entry::Kind::kOrigin && e.origin == OriginForm::kForeignUuid &&
                           NamesOf(spec, e.layer, e.path).contains(p);
              }
            }
            if (!foreign) return Masked::kNo;
            bool changed = SetField(lamina, "ino", Field(kernel, "ino"));
            changed |= Erase(lamina, " d_ino!=ino") | Erase(kernel, " d_ino!=ino");
            return changed ? Masked::kLines : Masked::kNo;
          },
      },
  };
  return entries;
}

bool Within(const std::string& path, const std::string& top) {
  return path == top || top.empty() ||
         (path.size() > top.size() && path.compare(0, top.size(), top) == 0 &&
          path[top.size()] == '/');
}

bool Below(const std::string& path, const std::map<std::string, std::string>& subtrees) {
  for (const auto& [top, entry] : subtrees) {
    if (Within(path, top)) return true;
  }
  return false;
}

}  // namespace

const std::vector<KnownDifference>& KnownDifferences() {
  // LAMINA_DIFFFUZZ_KNOWN=fail (scripts/difffuzz --known-fail): none.
  static const std::vector<KnownDifference> none;
  const char* mode = getenv("LAMINA_DIFFFUZZ_KNOWN");
  return mode != nullptr && std::string(mode) == "fail" ? none : Entries();
}

std::string CompareViews(const CaseSpec& spec, const View& lamina, const View& kernel,
                         const std::string& lamina_label, const std::string& kernel_label,
                         std::set<std::string>* used,
                         std::map<std::string, std::string>* diverged) {
  const auto pairs = PairViews(lamina, kernel);
  // First the subtrees the masks leave out, then what is left, path by path.
  std::map<std::string, std::string> dropped;
  for (const auto& [path, sides] : pairs) {
    if (sides.first == sides.second) continue;
    for (const KnownDifference& entry : KnownDifferences()) {
      std::string l = sides.first, k = sides.second;
      if (entry.mask(spec, path, l, k) == Masked::kSubtree) {
        dropped[RawPath(path)] = entry.name;
        used->insert(entry.name);
        break;
      }
    }
  }
  std::map<std::string, std::string> diverging = dropped;
  std::string out;
  size_t differing = 0;
  for (const auto& [path, sides] : pairs) {
    if (sides.first == sides.second || Below(RawPath(path), dropped)) continue;
    std::string l = sides.first, k = sides.second;
    // An inode first seen, on one side, in a subtree left out: the other
    // side saw it first here.
    const std::string l_ino = Field(l, "ino"), k_ino = Field(k, "ino");
    for (const auto& [one, other] : {std::pair(&l_ino, &k_ino), std::pair(&k_ino, &l_ino)}) {
      if (*other != "self" || one->empty() || *one == "self") continue;
      const std::string entry = DivergedEntry(dropped, RawPath(*one));
      if (entry.empty() || !Below(RawPath(*one), dropped)) continue;
      SetField(one == &l_ino ? l : k, "ino", "self");
      used->insert(entry);
    }
    std::vector<const KnownDifference*> helped;
    for (const KnownDifference& entry : KnownDifferences()) {
      if (entry.mask(spec, path, l, k) == Masked::kLines) helped.push_back(&entry);
      if (l == k) break;
    }
    if (l == k) {
      for (const KnownDifference* entry : helped) {
        used->insert(entry->name);
        if (entry->diverges) diverging[RawPath(path)] = entry->name;
      }
      continue;
    }
    if (++differing > 6) continue;
    out += "  " + lamina_label + ": " + (sides.first.empty() ? "(nothing)\n" : sides.first);
    out += "  " + kernel_label + ": " + (sides.second.empty() ? "(nothing)\n" : sides.second);
  }
  if (differing > 6) out += "  ... " + std::to_string(differing - 6) + " more paths differ\n";
  if (diverged != nullptr) *diverged = diverging;
  return out;
}

std::string DivergedEntry(const std::map<std::string, std::string>& diverged,
                          const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string parent = slash == std::string::npos ? "" : path.substr(0, slash);
  for (const auto& [top, entry] : diverged) {
    // At or below a diverged path, or above one (renaming or removing a
    // directory depends on what it holds).
    if (Within(path, top) || (!parent.empty() && Within(parent, top)) || Within(top, path)) {
      return entry;
    }
  }
  return "";
}

std::string KnownBroken(const CaseSpec& spec, const std::string& detail) {
  for (const KnownDifference& entry : KnownDifferences()) {
    if (entry.broken && entry.broken(spec, detail)) return entry.name;
  }
  return "";
}

std::string KnownOutcome(const CaseSpec& spec, const Op& op, const std::string& lamina,
                         const std::string& kernel) {
  for (const KnownDifference& entry : KnownDifferences()) {
    if (entry.outcome && entry.outcome(spec, op, lamina, kernel)) return entry.name;
  }
  return "";
}

}  // namespace lamina::difffuzz

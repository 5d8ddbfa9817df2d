#include "integration/difffuzz/spec_queries.h"

#include <map>

namespace lamina::difffuzz {

bool AnyValue(const std::string&) {
  return true;
}

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

bool HasXattr(const CaseSpec& spec, const std::string& path, const std::string& name,
              const std::function<bool(int)>& layer_ok, const ValueTest& value_ok) {
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

bool AnyLayer(int) {
  return true;
}
bool UpperLayer(int layer) {
  return layer == kUpperLayer;
}

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

bool IsLowerHardLink(const CaseSpec& spec, const std::string& path) {
  for (const Entry& e : spec.entries) {
    if (e.kind == Entry::Kind::kHardlink && e.layer != kUpperLayer &&
        (e.path == path || e.data == path)) {
      return true;
    }
  }
  return false;
}

}  // namespace lamina::difffuzz

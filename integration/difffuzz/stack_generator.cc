#include "integration/difffuzz/stack_generator.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

namespace lamina::difffuzz {
namespace {

// splitmix64: small, fast and the same everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // In [0, n).
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(Next() % n); }
  int Between(int low, int high) { return low + static_cast<int>(Below(high - low + 1)); }
  bool Percent(int percent) { return static_cast<int>(Below(100)) < percent; }
  template <typename T>
  const T& Pick(const std::vector<T>& items) {
    return items[Below(items.size())];
  }

 private:
  uint64_t state_;
};

// Weighted choice: the index of the weight picked.
size_t Weighted(Rng& rng, const std::vector<int>& weights) {
  int total = 0;
  for (int w : weights) total += w;
  int at = static_cast<int>(rng.Below(static_cast<size_t>(total)));
  for (size_t i = 0; i < weights.size(); ++i) {
    if (at < weights[i]) return i;
    at -= weights[i];
  }
  return weights.size() - 1;
}

const std::vector<std::string>& OddNames() {
  static const std::vector<std::string> names = {
      "sp ace", "new\nline", "back\\slash", "\xff\xfe",           "-dash", "colon:x", "comma,x",
      "eq=x",   "tab\tx",    "quote\"x",    std::string(255, 'n')};
  return names;
}

// The shared tree of names every layer draws from.
class NameTree {
 public:
  explicit NameTree(Rng& rng) {
    std::vector<std::string> top = {"a", "b", "c", "d", "e"};
    if (rng.Percent(30)) top.push_back(rng.Pick(OddNames()));
    for (const std::string& t : top) {
      paths_.push_back(t);
      for (const char* m : {"x", "y", "z"}) {
        paths_.push_back(t + "/" + m);
        for (const char* b : {"p", "q"}) paths_.push_back(t + "/" + m + "/" + b);
      }
    }
  }
  // A path, shallow ones more often.
  std::string Pick(Rng& rng) const {
    for (;;) {
      const std::string& path = rng.Pick(paths_);
      const long depth = std::count(path.begin(), path.end(), '/');
      if (depth == 0 || rng.Percent(depth == 1 ? 60 : 30)) return path;
    }
  }
  const std::vector<std::string>& paths() const { return paths_; }

 private:
  std::vector<std::string> paths_;
};

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

std::string Leaf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

// What one layer holds so far, to pick targets for links and markers.
struct LayerState {
  std::vector<std::string> dirs;
  std::vector<std::string> files;
  std::vector<std::string> all;
  std::set<std::string> taken;
};

class Generator {
 public:
  Generator(uint64_t seed, int number)
      : rng_(seed * 0x100000001b3ULL ^ static_cast<uint64_t>(number) * 0x9e3779b97f4a7c15ULL),
        tree_(rng_) {
    spec_.seed = seed;
    spec_.number = number;
  }

  CaseSpec Make() {
    ChooseOptions();
    const StackOptions& o = spec_.options;
    layers_.resize(static_cast<size_t>(o.lowers) + 1);
    // Bottom layer first, as an image is built; the upper last.
    for (int layer = o.lowers; layer >= 1; --layer) FillLayer(layer);
    if (o.upper) {
      FillLayer(kUpperLayer);
      AddOrigins();
      if (rng_.Percent(25)) AddIndexEntries();
      if (rng_.Percent(6)) AddWorkLink();
    }
    AddOps();
    return spec_;
  }

 private:
  void ChooseOptions() {
    StackOptions& o = spec_.options;
    o.upper = rng_.Percent(85);
    // The kernel mounts no upper-less overlay of one lower.
    o.lowers = o.upper ? rng_.Between(1, 3) : rng_.Between(2, 3);
    o.userxattr = rng_.Percent(15);
    o.index = o.upper && !o.userxattr && rng_.Percent(50);
  }

  std::string Prefix() const { return spec_.options.PrivatePrefix(); }

  void Add(Entry e) { spec_.entries.push_back(std::move(e)); }

  Entry Make(Entry::Kind kind, int layer, const std::string& path) {
    Entry e;
    e.kind = kind;
    e.layer = layer;
    e.path = path;
    return e;
  }

  void Xattr(int layer, const std::string& path, const std::string& name,
             const std::string& value) {
    Entry e = Make(Entry::Kind::kXattr, layer, path);
    e.name = name;
    e.data = value;
    Add(std::move(e));
  }

  mode_t DirMode() { return rng_.Pick(std::vector<mode_t>{0755, 0755, 0755, 0700, 0555, 01777}); }
  mode_t FileMode() {
    return rng_.Pick(std::vector<mode_t>{0644, 0644, 0644, 0600, 0755, 0444, 04755, 0});
  }

  std::string Contents(int layer, const std::string& path) {
    switch (rng_.Below(6)) {
      case 0:
        return "";
      case 1:
        return std::string(static_cast<size_t>(rng_.Between(100, 5000)), 'a' + rng_.Below(26));
      default:
        return LayerName(layer) + ":" + path;
    }
  }

  void FillLayer(int layer) {
    LayerState& state = layers_[static_cast<size_t>(layer)];
    const int objects = rng_.Between(2, 12);
    for (int i = 0; i < objects; ++i) {
      const std::string path = tree_.Pick(rng_);
      if (state.taken.contains(path)) continue;
      // A name below a non-directory of this layer cannot be made.
      bool blocked = false;
      for (std::string p = Parent(path); !p.empty(); p = Parent(p)) {
        if (state.taken.contains(p) &&
            std::find(state.dirs.begin(), state.dirs.end(), p) == state.dirs.end()) {
          blocked = true;
        }
      }
      if (blocked) continue;
      AddObject(layer, path, state);
    }
    if (rng_.Percent(4)) AddDeepChain(layer, state);
    for (const std::string& dir : state.dirs) {
      if (rng_.Percent(25)) AddDirMarker(layer, dir, state);
    }
    for (const std::string& path : state.all) {
      if (rng_.Percent(8)) {
        Xattr(layer, path, rng_.Percent(70) ? "user.k" : "trusted.k",
              rng_.Percent(80) ? "v-" + LayerName(layer) : std::string("\0\x01", 2));
      }
      if (rng_.Percent(4)) {
        Entry e = Make(Entry::Kind::kOwner, layer, path);
        e.uid = e.gid = rng_.Percent(50) ? 1000 : 65534;
        Add(std::move(e));
      }
    }
    // Markers on the layer root itself.
    if (rng_.Percent(5)) AddDirMarker(layer, "", state);
  }

  void AddObject(int layer, const std::string& path, LayerState& state) {
    const std::string parent = Parent(path);
    // Implicit parents are directories of this layer.
    for (std::string p = parent; !p.empty(); p = Parent(p)) {
      if (state.taken.insert(p).second) {
        state.dirs.push_back(p);
        state.all.push_back(p);
      }
    }
    state.taken.insert(path);
    switch (Weighted(rng_, {30, 30, 8, 9, 5, 4, 6})) {
      case 0: {
        Entry e = Make(Entry::Kind::kDir, layer, path);
        e.mode = DirMode();
        Add(std::move(e));
        state.dirs.push_back(path);
        state.all.push_back(path);
        return;
      }
      case 1: {
        Entry e = Make(Entry::Kind::kFile, layer, path);
        e.mode = FileMode();
        e.data = Contents(layer, path);
        Add(std::move(e));
        state.files.push_back(path);
        state.all.push_back(path);
        if (layer == kUpperLayer && rng_.Percent(5)) Xattr(layer, path, Prefix() + "metacopy", "");
        return;
      }
      case 2: {
        Entry e = Make(Entry::Kind::kSymlink, layer, path);
        e.data = rng_.Pick(std::vector<std::string>{"x", "../a", "/etc/passwd",
                                                    "../../../../outside/secret", Leaf(path), "."});
        Add(std::move(e));
        state.all.push_back(path);
        return;
      }
      case 3:
        Add(Make(Entry::Kind::kWhiteout, layer, path));
        return;
      case 4: {
        // An xattr whiteout; the kernel reads it only in a directory marked
        // opaque "x".
        Entry e = Make(Entry::Kind::kFile, layer, path);
        e.mode = 0644;
        Add(std::move(e));
        Xattr(layer, path,
              rng_.Percent(85) ? Prefix() + "whiteout" : spec_.options.ForeignPrefix() + "whiteout",
              "");
        if (rng_.Percent(70)) Xattr(layer, parent, Prefix() + "opaque", "x");
        return;
      }
      case 5: {
        // OCI: ".wh.NAME" hides NAME in the layers below.
        Entry e = Make(Entry::Kind::kFile, layer, Join(parent, ".wh." + Leaf(path)));
        e.mode = 0644;
        state.taken.erase(path);
        Add(std::move(e));
        return;
      }
      default: {
        if (state.files.empty()) return;
        Entry e = Make(Entry::Kind::kHardlink, layer, path);
        e.data = rng_.Pick(state.files);
        Add(std::move(e));
        state.files.push_back(path);
        state.all.push_back(path);
        return;
      }
    }
  }

  void AddDeepChain(int layer, LayerState& state) {
    std::string path = "deep";
    const int depth = rng_.Between(20, 40);
    for (int i = 0; i < depth; ++i) path += "/d";
    Entry e = Make(Entry::Kind::kFile, layer, path + "/leaf");
    e.mode = 0644;
    e.data = "bottom of " + LayerName(layer);
    Add(std::move(e));
    state.taken.insert("deep");
  }

  std::string RedirectValue(const std::string& dir) {
    const std::string some = tree_.Pick(rng_);
    switch (rng_.Below(16)) {
      case 0:
        return Leaf(some);  // relative: a name in the same parent
      case 1:
      case 2:
        return "/" + some;
      case 3:
        return "/" + dir;  // itself
      case 4:
        return "..";
      case 5:
        return "/..";
      case 6:
        return "//" + Leaf(some);
      case 7:
        return "";
      case 8:
        return "/";
      case 9:
        return "/" + std::string(300, 'r');
      case 10:
        return "/" + std::string(5000, 'r');
      case 11:
        return some;  // relative with a slash (when nested)
      case 12:
        return "/" + some + "/";
      case 13:
        return "/" + Parent(some) + "/./" + Leaf(some);
      default:
        return "/" + tree_.Pick(rng_);
    }
  }

  void AddDirMarker(int layer, const std::string& dir, LayerState& state) {
    switch (Weighted(rng_, {8, 4, 3, 3, 3, 3, 10, 2})) {
      case 0:
        Xattr(layer, dir, Prefix() + "opaque", "y");
        return;
      case 1:
        Xattr(layer, dir, Prefix() + "opaque", "x");
        return;
      case 2:
        Xattr(layer, dir, Prefix() + "opaque",
              rng_.Pick(std::vector<std::string>{"", "n", "yes", "Y", std::string(1, '\0')}));
        return;
      case 3:
        Xattr(layer, dir, spec_.options.ForeignPrefix() + "opaque", "y");
        return;
      case 4:
        Xattr(layer, dir, "user.fuseoverlayfs.opaque", "y");
        return;
      case 5: {
        Entry e = Make(Entry::Kind::kFile, layer, Join(dir, ".wh..wh..opq"));
        e.mode = 0644;
        Add(std::move(e));
        return;
      }
      case 6:
        if (!dir.empty()) Xattr(layer, dir, Prefix() + "redirect", RedirectValue(dir));
        return;
      default:
        if (!dir.empty()) {
          Xattr(layer, dir, spec_.options.ForeignPrefix() + "redirect", "/" + tree_.Pick(rng_));
        }
        (void)state;
        return;
    }
  }

  // Origin records on upper objects: most name the lower object of the same
  // path (as a copy-up leaves them), some another lower object (a rename or
  // a hard link), some are damaged or name something outside.
  void AddOrigins() {
    const StackOptions& o = spec_.options;
    for (const std::string& path : layers_[kUpperLayer].all) {
      if (!rng_.Percent(35)) continue;
      Entry e = Make(Entry::Kind::kOrigin, kUpperLayer, path);
      e.ref_layer = rng_.Between(1, o.lowers);
      const LayerState& lower = layers_[static_cast<size_t>(e.ref_layer)];
      if (rng_.Percent(70) || lower.all.empty()) {
        e.ref_path = path;
      } else {
        e.ref_path = rng_.Pick(lower.all);
      }
      e.origin = static_cast<OriginForm>(
          Weighted(rng_, {60, 6, 6, 6, 6, 6, 6}));  // the order of OriginForm
      Add(std::move(e));
    }
  }

  void AddIndexEntries() {
    const StackOptions& o = spec_.options;
    const int count = rng_.Between(1, 3);
    for (int i = 0; i < count; ++i) {
      Entry e = Make(Entry::Kind::kIndexEntry, kUpperLayer, "");
      e.ref_layer = rng_.Between(1, o.lowers);
      const LayerState& lower = layers_[static_cast<size_t>(e.ref_layer)];
      if (lower.files.empty()) return;
      e.ref_path = rng_.Pick(lower.files);
      e.index = static_cast<Entry::IndexForm>(Weighted(rng_, {50, 10, 10, 10, 10, 10}));
      if (e.index == Entry::IndexForm::kLinkUp) {
        const LayerState& upper = layers_[kUpperLayer];
        if (upper.files.empty()) continue;
        e.path = rng_.Pick(upper.files);
      }
      Add(std::move(e));
    }
  }

  void AddWorkLink() {
    Entry e = Make(Entry::Kind::kWorkLink, kUpperLayer, rng_.Percent(50) ? "work" : "index");
    e.data = "outside/victim-dir";
    Add(std::move(e));
  }

  // A path an operation may name: one of the layers' (most often) or a new
  // name beside one.
  std::string OpPath() {
    if (rng_.Percent(70)) return tree_.Pick(rng_);
    const std::string near = tree_.Pick(rng_);
    return Join(Parent(near), rng_.Pick(std::vector<std::string>{"n1", "n2", "m"}));
  }

  void AddOps() {
    const int count = spec_.options.upper ? rng_.Between(2, 8) : rng_.Between(1, 3);
    for (int i = 0; i < count; ++i) {
      Op op;
      op.kind = static_cast<Op::Kind>(
          Weighted(rng_, {20, 4, 6, 8, 3, 12, 4, 10, 6, 6, 8, 6, 3, 5, 2, 2}));
      op.path = OpPath();
      switch (op.kind) {
        case Op::Kind::kRename:
        case Op::Kind::kRenameNoReplace:
        case Op::Kind::kExchange:
        case Op::Kind::kLink:
          op.path2 = OpPath();
          break;
        case Op::Kind::kSymlink:
          op.data = rng_.Pick(std::vector<std::string>{"x", "../a", "/etc/passwd"});
          break;
        case Op::Kind::kChmod:
          op.mode = rng_.Pick(std::vector<mode_t>{0700, 0644, 0755, 0, 04755, 01777});
          break;
        case Op::Kind::kMkdir:
          op.mode = 0755;
          break;
        case Op::Kind::kChown:
          op.uid = op.gid = rng_.Percent(50) ? 1000 : 0;
          break;
        case Op::Kind::kCreate:
          op.mode = 0644;
          op.data = "created " + std::to_string(i);
          break;
        case Op::Kind::kAppend:
          op.data = "+appended " + std::to_string(i);
          break;
        case Op::Kind::kTruncate:
          op.data = std::string(static_cast<size_t>(rng_.Between(0, 8)), ' ');
          break;
        case Op::Kind::kSetXattr:
          op.name = rng_.Pick(std::vector<std::string>{"user.k", "trusted.k", Prefix() + "opaque",
                                                       spec_.options.ForeignPrefix() + "opaque",
                                                       "user.fuseoverlayfs.opaque"});
          op.data = "y";
          break;
        case Op::Kind::kRemoveXattr:
          op.name = rng_.Pick(std::vector<std::string>{"user.k", "trusted.k"});
          break;
        default:
          break;
      }
      spec_.ops.push_back(std::move(op));
    }
  }

  Rng rng_;
  NameTree tree_;
  CaseSpec spec_;
  std::vector<LayerState> layers_;
};

}  // namespace

CaseSpec GenerateCase(uint64_t seed, int number) {
  return Generator(seed, number).Make();
}

std::vector<std::string> PathsNamed(const CaseSpec& spec) {
  std::set<std::string> paths;
  auto add = [&](std::string path) {
    for (; !path.empty(); path = Parent(path)) {
      // The view hides OCI whiteout names; probing one says nothing new.
      if (Leaf(path).compare(0, 4, ".wh.") != 0) paths.insert(path);
    }
  };
  for (const Entry& e : spec.entries) {
    if (e.kind == Entry::Kind::kDir || e.kind == Entry::Kind::kFile ||
        e.kind == Entry::Kind::kSymlink || e.kind == Entry::Kind::kHardlink ||
        e.kind == Entry::Kind::kWhiteout) {
      add(e.path);
      if (e.path.compare(0, 5, "deep/") == 0) break;
    }
  }
  for (const Op& op : spec.ops) {
    add(op.path);
    if (!op.path2.empty()) add(op.path2);
  }
  return {paths.begin(), paths.end()};
}

}  // namespace lamina::difffuzz

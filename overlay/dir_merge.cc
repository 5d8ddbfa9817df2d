#include "overlay/dir_merge.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "overlay/layer_object.h"
#include "xxhash.h"

namespace lamina::overlay {
namespace {

struct RawEntry {
  std::string name;
  uint32_t type;
  ino_t ino;
};

// Every entry of one layer directory, "." and ".." excluded. Listing a
// lower directory leaves its access time alone, as on the kernel's noatime
// lower mounts.
std::vector<RawEntry> ReadLayerDir(const Layer& layer, int dir_fd) {
  std::vector<RawEntry> entries;
  int fd = OpenInLayer(layer, dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return entries;
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    close(fd);
    return entries;
  }
  while (struct dirent* e = readdir(dir)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    entries.push_back(RawEntry{std::string(name), e->d_type, e->d_ino});
  }
  closedir(dir);
  return entries;
}

}  // namespace

std::vector<DirItem> MergeListing(const LayerStack& layers, const DirSources& dir) {
  struct Source {
    int layer;
    int fd;
    DirMarks marks;
  };
  std::vector<Source> sources;
  if (dir.upper_fd >= 0) sources.push_back(Source{0, dir.upper_fd, dir.upper_marks});
  bool upper_opaque = !sources.empty() && sources.front().marks.opaque;
  if (!upper_opaque && dir.lowers != nullptr) {
    for (const LowerRef& lower : *dir.lowers) {
      sources.push_back(Source{lower.layer, lower.fd, lower.marks});
    }
  }

  std::vector<DirItem> items = {
      {".", DT_DIR, dir.ino, std::nullopt},
      {"..", DT_DIR, dir.parent_ino != 0 ? dir.parent_ino : dir.ino, std::nullopt}};
  absl::flat_hash_set<std::string> decided;             // shown or hidden already
  absl::flat_hash_map<std::string, size_t> from_upper;  // name -> item, for inode fix-ups
  for (const Source& source : sources) {
    std::vector<RawEntry> entries = ReadLayerDir(layers.layer(source.layer), source.fd);
    std::vector<std::string> hidden_below;
    for (RawEntry& e : entries) {
      if (IsHiddenName(e.name)) {
        if (e.name != kOciOpaqueMarker) {
          hidden_below.push_back(e.name.substr(kOciWhiteoutPrefix.size()));
        }
        continue;
      }
      if (decided.contains(e.name)) {
        // The same name lower down: a merged directory, or the origin of a
        // copied-up file, lends the listing its stable inode number.
        auto it = from_upper.find(e.name);
        if (it != from_upper.end() && items[it->second].type == e.type) {
          bool origin = e.type == DT_DIR;
          if (!origin) {
            Result<int> upper = OpenPathAt(sources.front().fd, e.name);
            Result<int> lower = OpenPathAt(source.fd, e.name);
            origin = upper.ok() && lower.ok() && HasOrigin(layers, *upper, *lower);
            if (upper.ok()) close(*upper);
            if (lower.ok()) close(*lower);
          }
          if (origin) {
            items[it->second].ino = layers.MergedInode(source.layer, e.ino);
            items[it->second].identity = NodeKey{layers.layer(source.layer).dev, e.ino};
          }
          from_upper.erase(it);
        }
        continue;
      }
      decided.insert(e.name);
      // Xattr whiteouts are left out only where the directory says it
      // holds them (opaque "x"); elsewhere the kernel lists them, though
      // a lookup takes them for whiteouts.
      const bool xattr_whiteouts = source.marks.xattr_whiteouts;
      bool maybe_whiteout =
          e.type == DT_CHR || e.type == DT_UNKNOWN || (e.type == DT_REG && xattr_whiteouts);
      if (maybe_whiteout) {
        std::optional<struct stat> st = StatAt(source.fd, e.name);
        if (!st || IsDeviceWhiteout(*st) ||
            (xattr_whiteouts && IsXattrWhiteout(layers, source.fd, e.name, *st))) {
          continue;
        }
        if (e.type == DT_UNKNOWN) e.type = (st->st_mode & S_IFMT) >> 12;
      }
      if (source.layer == 0 && layers.has_upper()) from_upper[e.name] = items.size();
      items.push_back(DirItem{e.name, e.type, layers.MergedInode(source.layer, e.ino),
                              NodeKey{layers.layer(source.layer).dev, e.ino}, 0, source.layer});
    }
    for (std::string& name : hidden_below) decided.insert(std::move(name));
    if (source.marks.opaque) break;
  }
  items[0].cookie = 1;
  items[1].cookie = 2;
  for (size_t i = 2; i < items.size(); ++i) {
    items[i].cookie = (XXH3_64bits(items[i].name.data(), items[i].name.size()) >> 2) + 3;
  }
  std::sort(items.begin() + 2, items.end(),
            [](const DirItem& a, const DirItem& b) { return a.cookie < b.cookie; });
  // Names whose hashes collide get the next free cookies (in name order, so
  // every snapshot agrees as long as both names are there).
  for (size_t i = 3; i < items.size(); ++i) {
    if (items[i].cookie <= items[i - 1].cookie) items[i].cookie = items[i - 1].cookie + 1;
  }
  return items;
}

size_t FirstAfter(const std::vector<DirItem>& items, uint64_t cookie) {
  auto it = std::upper_bound(items.begin(), items.end(), cookie,
                             [](uint64_t c, const DirItem& item) { return c < item.cookie; });
  return static_cast<size_t>(it - items.begin());
}

}  // namespace lamina::overlay

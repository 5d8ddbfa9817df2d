// Helpers shared by the layer-contents tests (redirects, markers, origins):
// layers that carry overlayfs records anyone could have written, served by
// Lamina beside kernel overlayfs, whose answers are the reference.

#ifndef LAMINA_INTEGRATION_SCENARIOS_LAYER_CONTENTS_H_
#define LAMINA_INTEGRATION_SCENARIOS_LAYER_CONTENTS_H_

#include <sys/stat.h>
#include <sys/xattr.h>

#include <algorithm>
#include <string>
#include <vector>

#include "integration/overlay/overlay_harness.h"

namespace lamina::testing {

// What a caller learns about `path` under `root`: the lookup's outcome,
// the type, and a directory's sorted names or a file's contents.
inline std::string Show(const std::string& root, const std::string& path) {
  struct stat st;
  std::string out = path + ":";
  if (lstat((root + "/" + path).c_str(), &st) != 0) return out + Outcome(-1);
  if (S_ISDIR(st.st_mode)) {
    out += "dir[";
    for (const std::string& name : ListDir(root + "/" + path)) out += name + " ";
    return out + "]";
  }
  if (S_ISREG(st.st_mode)) return out + "file=" + ReadFile(root + "/" + path);
  return out + "mode=" + std::to_string(st.st_mode & S_IFMT);
}

inline std::string ShowAll(const std::string& root, const std::vector<std::string>& paths) {
  std::string out;
  for (const std::string& path : paths) out += Show(root, path) + "\n";
  return out;
}

// The private xattr `name` of a layer object ("-" when it has none).
inline std::string LayerXattr(const std::string& path, const std::string& name) {
  char value[4096];
  ssize_t n = lgetxattr(path.c_str(), name.c_str(), value, sizeof(value));
  if (n < 0) return "-";
  return std::string(value, static_cast<size_t>(n));
}

}  // namespace lamina::testing

#endif  // LAMINA_INTEGRATION_SCENARIOS_LAYER_CONTENTS_H_

// Small helpers the differential fuzzer's files share.

#ifndef LAMINA_INTEGRATION_DIFFFUZZ_FS_UTIL_H_
#define LAMINA_INTEGRATION_DIFFFUZZ_FS_UTIL_H_

#include <cstring>
#include <string>

namespace lamina::difffuzz {

// "ENOENT" for ENOENT; the number for an errno without a name.
inline std::string ErrnoName(int error) {
  const char* name = strerrorname_np(error);
  return name != nullptr ? name : std::to_string(error);
}

// "/proc/self/fd/N" (a path to the object the descriptor holds), or
// "/proc/self/fd/N/LEAF": `leaf` in that directory, not followed by the
// l*() calls that take it.
inline std::string ProcPath(int fd, const std::string& leaf = "") {
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  return leaf.empty() ? path : path + "/" + leaf;
}

}  // namespace lamina::difffuzz

#endif  // LAMINA_INTEGRATION_DIFFFUZZ_FS_UTIL_H_

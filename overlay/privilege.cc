#include "overlay/privilege.h"

#include <linux/capability.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace lamina::overlay {

bool InInitialUserNamespace() {
  // The initial namespace maps 0..2^32-2 onto itself in one line; any other
  // namespace maps less (util-linux and runc decide it the same way).
  std::ifstream map("/proc/self/uid_map");
  uint64_t inside = 1, outside = 1, count = 0;
  if (!(map >> inside >> outside >> count)) return true;  // no userns support
  std::string more;
  return inside == 0 && outside == 0 && count == 4294967295ULL && !(map >> more);
}

bool HasHostCapability(int cap) {
  if (!InInitialUserNamespace()) return false;
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    uint64_t mask = 0;
    std::istringstream(line.substr(7)) >> std::hex >> mask;
    return (mask >> cap) & 1;
  }
  return false;
}

bool MayUseTrustedXattrs() {
  return HasHostCapability(CAP_SYS_ADMIN);
}

bool MayDecodeFileHandles() {
  return HasHostCapability(CAP_DAC_READ_SEARCH);
}

}  // namespace lamina::overlay

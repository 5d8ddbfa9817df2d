#include "core/request_context.h"

#include <fstream>
#include <sstream>
#include <string>

namespace lamina {

std::vector<gid_t> RequestContext::SupplementaryGroups() const {
  std::vector<gid_t> groups(kernel_groups.begin(), kernel_groups.end());
  if (!groups.empty() || pid == 0) return groups;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream ids(line.substr(7));
    gid_t gid;
    while (ids >> gid) groups.push_back(gid);
    break;
  }
  return groups;
}

}  // namespace lamina

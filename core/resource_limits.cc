#include "core/resource_limits.h"

#include <algorithm>
#include <fstream>

namespace lamina {

rlim_t RaiseDescriptorLimit() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  rlim_t system_max = 0;
  std::ifstream("/proc/sys/fs/nr_open") >> system_max;
  if (system_max > limit.rlim_max) {
    struct rlimit raised = {system_max, system_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return system_max;
  }
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

rlim_t SetDescriptorLimit(rlim_t wanted) {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  limit.rlim_cur = std::min(wanted, limit.rlim_max);
  setrlimit(RLIMIT_NOFILE, &limit);
  getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

}  // namespace lamina

#include "passthrough/credentials.h"

#include <linux/capability.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "spdlog/spdlog.h"

namespace lamina::passthrough {
namespace {

long RawSetfsuid(uid_t uid) {
  return syscall(SYS_setfsuid, uid);
}
long RawSetfsgid(gid_t gid) {
  return syscall(SYS_setfsgid, gid);
}

// The daemon's own supplementary groups, read once: they are what every
// thread returns to after acting as a caller.
const std::vector<gid_t>& DaemonGroups() {
  static const std::vector<gid_t>* groups = [] {
    auto* list = new std::vector<gid_t>(static_cast<size_t>(std::max(getgroups(0, nullptr), 0)));
    int n = getgroups(static_cast<int>(list->size()), list->data());
    list->resize(static_cast<size_t>(std::max(n, 0)));
    return list;
  }();
  return *groups;
}

}  // namespace

ScopedCredentials::ScopedCredentials(uid_t uid, gid_t gid, std::span<const uint32_t> groups) {
  if (geteuid() != 0 || (uid == 0 && gid == 0)) return;
  DaemonGroups();  // captured before the first switch
  // setgroups takes gid_t; uint32_t is the same width on Linux.
  static_assert(sizeof(gid_t) == sizeof(uint32_t));
  if (syscall(SYS_setgroups, groups.size(), groups.data()) != 0) {
    error_ = errno;
    return;
  }
  switched_ = true;
  // setfsuid/setfsgid return the previous value and cannot report errors
  // directly: read back to verify.
  RawSetfsgid(gid);
  RawSetfsuid(uid);
  if (static_cast<uid_t>(RawSetfsuid(static_cast<uid_t>(-1))) != uid ||
      static_cast<gid_t>(RawSetfsgid(static_cast<gid_t>(-1))) != gid) {
    error_ = EPERM;
  }
}

ScopedCredentials::~ScopedCredentials() {
  if (!switched_) return;
  RawSetfsuid(geteuid());
  RawSetfsgid(getegid());
  const std::vector<gid_t>& groups = DaemonGroups();
  if (syscall(SYS_setgroups, groups.size(), groups.data()) != 0) {
    spdlog::critical("cannot restore supplementary groups (errno {})", errno);
    std::abort();
  }
}

ScopedCapabilityDrop::ScopedCapabilityDrop(int cap) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  static_assert(sizeof(data) == sizeof(saved_));
  if (cap < 0 || cap > 63 || syscall(SYS_capget, &header, data) != 0) return;
  const uint32_t bit = 1U << (cap % 32);
  if ((data[cap / 32].effective & bit) == 0) return;
  std::memcpy(saved_, data, sizeof(saved_));
  data[cap / 32].effective &= ~bit;
  dropped_ = syscall(SYS_capset, &header, data) == 0;
}

ScopedCapabilityDrop::~ScopedCapabilityDrop() {
  if (!dropped_) return;
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  std::memcpy(data, saved_, sizeof(saved_));
  if (syscall(SYS_capset, &header, data) != 0) {
    spdlog::critical("cannot restore capabilities (errno {})", errno);
    std::abort();
  }
}

bool CallerHasCapability(const RequestContext& ctx, int cap) {
  if (ctx.pid == 0 || cap < 0 || cap > 63) return false;
  std::ifstream status("/proc/" + std::to_string(ctx.pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    const uint64_t effective = std::strtoull(line.c_str() + 7, nullptr, 16);
    return (effective >> cap) & 1;
  }
  return false;
}

void UseUmaskOnThisThread(mode_t mask) {
  thread_local bool unshared = false;
  thread_local mode_t current = 0;
  if (!unshared) {
    if (unshare(CLONE_FS) != 0) spdlog::warn("unshare(CLONE_FS) failed (errno {})", errno);
    unshared = true;
    current = ~mask;  // forces the umask() below
  }
  mask &= 0777;
  if (current == mask) return;
  umask(mask);
  current = mask;
}

}  // namespace lamina::passthrough

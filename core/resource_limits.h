// Raising the daemon's descriptor limit.
//
// Filesystems that pin an O_PATH descriptor per inode the kernel caches
// need as many descriptors as the kernel keeps inodes; the usual soft limit
// (1024) or a container's hard limit is far too low for a rootfs walk.

#ifndef LAMINA_CORE_RESOURCE_LIMITS_H_
#define LAMINA_CORE_RESOURCE_LIMITS_H_

#include <sys/resource.h>

namespace lamina {

// Raises RLIMIT_NOFILE: the soft limit to the hard one, and, where the
// process may (CAP_SYS_RESOURCE), both to the system maximum
// (/proc/sys/fs/nr_open). Returns the soft limit now in force.
rlim_t RaiseDescriptorLimit();

// Sets the soft RLIMIT_NOFILE to `limit` (at most the hard limit): for a
// daemon told how many descriptors to plan with (laminafs -o nofile=).
// Returns the soft limit now in force.
rlim_t SetDescriptorLimit(rlim_t limit);

}  // namespace lamina

#endif  // LAMINA_CORE_RESOURCE_LIMITS_H_

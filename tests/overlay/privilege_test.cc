// What the daemon's credentials allow (overlay/privilege.h), decided in a
// child process placed in a user namespace of its own: there even uid 0 may
// use neither trusted.* xattrs nor file-handle decoding on the host.

#include "overlay/privilege.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "gtest/gtest.h"

namespace lamina::overlay {
namespace {

bool WriteFile(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

TEST(PrivilegeTest, HostRootMayUseTrustedXattrsAndDecodeHandles) {
  if (!InInitialUserNamespace() || geteuid() != 0) GTEST_SKIP() << "needs root on the host";
  EXPECT_TRUE(MayUseTrustedXattrs());
  EXPECT_TRUE(MayDecodeFileHandles());
}

TEST(PrivilegeTest, RootOfAUserNamespaceMayNot) {
  if (!InInitialUserNamespace()) GTEST_SKIP() << "already in a user namespace";
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Exit codes: 10 cannot unshare (not a failure of the code under test).
    const std::string uid = std::to_string(geteuid());  // unmapped once inside
    if (unshare(CLONE_NEWUSER) != 0) _exit(10);
    // Map our own uid to 0, as unshare -r does (setgroups must be denied
    // before an unprivileged gid_map; the uid map alone is enough here).
    if (!WriteFile("/proc/self/uid_map", "0 " + uid + " 1\n")) _exit(10);
    if (geteuid() != 0) _exit(1);
    if (InInitialUserNamespace()) _exit(2);
    if (MayUseTrustedXattrs()) _exit(3);
    if (MayDecodeFileHandles()) _exit(4);
    if (HasHostCapability(0)) _exit(5);  // CAP_CHOWN: held in the namespace only
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 10) GTEST_SKIP() << "user namespaces unavailable";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "failed check number " << WEXITSTATUS(status);
}

}  // namespace
}  // namespace lamina::overlay

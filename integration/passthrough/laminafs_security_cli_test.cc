// `laminafs passthrough` run by root for other users: what was reported
// against it, step by step, through the real command.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "integration/harness/mount_harness.h"
#include "integration/passthrough/permission_matrix.h"

namespace lamina::testing {
namespace {

// Unmounts on scope exit, so the daemon (which ends with its mount) never
// outlives the test.
struct UnmountGuard {
  std::string path;
  ~UnmountGuard() { ForceUnmount(path); }
};

std::string Outcome(long rc) {
  if (rc >= 0) return "ok";
  const char* name = strerrorname_np(errno);
  return name != nullptr ? name : std::to_string(errno);
}

// The mount's line in /proc/self/mountinfo.
std::string MountinfoLine(const std::string& mountpoint) {
  std::istringstream mountinfo(ReadFile("/proc/self/mountinfo"));
  for (std::string line; std::getline(mountinfo, line);) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    if (point == mountpoint) return line;
  }
  return "";
}

// The report: `laminafs passthrough -o allow_other SRC MNT` as root, without
// default_permissions. uid 65534 read a 0600 root file, appended to it,
// unlinked root's file in a 0755 root directory, set an xattr on a root
// file, and turned a file it owned into a set-user-ID root program. The
// same steps, as the stranger and as the files' owner, through the mount
// and on a plain twin of the source: the same outcomes, the same state.
TEST(passthrough_cli_security, AllowOtherGivesNoMoreThanTheSource) {
  ASSERT_EQ(geteuid(), 0U) << "needs root";
  TempDir dir("lamina-sec");
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
  const std::string source = dir.Subdir("src"), twin = dir.Subdir("twin"), mnt = dir.Subdir("mnt");
  for (const std::string& base : {source, twin}) {
    WriteFile(base + "/secret", "root only");
    ASSERT_EQ(chmod((base + "/secret").c_str(), 0600), 0);
    ASSERT_EQ(mkdir((base + "/rootdir").c_str(), 0755), 0);
    WriteFile(base + "/rootdir/victim", "keep me");
    for (const char* name : {"/prog-stranger", "/prog-owner"}) {
      WriteFile(base + name, "#!/bin/sh\n");
      ASSERT_EQ(chmod((base + name).c_str(), 0755), 0);
    }
    ASSERT_EQ(chown((base + "/prog-stranger").c_str(), kMatrixStranger, kMatrixStranger), 0);
    ASSERT_EQ(chown((base + "/prog-owner").c_str(), kMatrixOwner, kMatrixOwner), 0);
  }
  UnmountGuard guard{mnt};
  ChildProcess command(
      {BuiltBinary("cmd/laminafs"), "passthrough", "-o", "allow_other,timeout=0", source, mnt});
  ASSERT_EQ(command.Wait(std::chrono::seconds(30)), 0) << command.output();
  EXPECT_NE(MountinfoLine(mnt).find("default_permissions"), std::string::npos)
      << MountinfoLine(mnt);

  for (const Principal& who : MatrixPrincipals()) {
    if (who.uid != kMatrixStranger && who.uid != kMatrixOwner) continue;
    const std::string prog = who.uid == kMatrixOwner ? "/prog-owner" : "/prog-stranger";
    auto steps = [&](const std::string& root) {
      std::string out;
      int fd = open((root + "/secret").c_str(), O_RDONLY);
      out += "read " + Outcome(fd);
      if (fd >= 0) close(fd);
      fd = open((root + "/secret").c_str(), O_WRONLY | O_APPEND);
      out += ", append " + Outcome(fd);
      if (fd >= 0) close(fd);
      out += ", access " + Outcome(access((root + "/secret").c_str(), R_OK | W_OK));
      out += ", unlink " + Outcome(unlink((root + "/rootdir/victim").c_str()));
      out += ", setxattr " + Outcome(setxattr((root + "/secret").c_str(), "user.x", "1", 1, 0));
      out += ", chown " + Outcome(chown((root + prog).c_str(), 0, 0));
      out += ", chmod " + Outcome(chmod((root + prog).c_str(), 04755));
      return out;
    };
    const std::string mounted = RunAs(who, [&] { return steps(mnt); });
    const std::string plain = RunAs(who, [&] { return steps(twin); });
    EXPECT_EQ(mounted, plain) << who.name << ": through the mount (left), on the plain twin";
    EXPECT_EQ(plain,
              "read EACCES, append EACCES, access EACCES, unlink EACCES, setxattr EACCES, "
              "chown EPERM, chmod ok")
        << who.name;
  }
  EXPECT_EQ(StateDifference(DescribeMatrixState(source), DescribeMatrixState(twin)), "");
  for (const char* name : {"/prog-stranger", "/prog-owner"}) {
    struct stat st {};
    ASSERT_EQ(stat((source + name).c_str(), &st), 0);
    EXPECT_NE(st.st_uid, 0U) << name << " became root's";
  }
  EXPECT_EQ(ReadFile(source + "/secret"), "root only");
  EXPECT_EQ(ReadFile(source + "/rootdir/victim"), "keep me");
}

}  // namespace
}  // namespace lamina::testing

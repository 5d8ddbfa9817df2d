// `laminafs passthrough` run by root for other users: what was reported
// against it, step by step, through the real command.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
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

// A mountinfo field as it was before the kernel escaped space, tab,
// newline and backslash as \ooo.
std::string Unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      out.push_back(static_cast<char>(std::stoi(field.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

// The fields of the mount at `mountpoint` in /proc/self/mountinfo: mount
// point, mount options, source, super options (unescaped); empty if none.
struct MountinfoEntry {
  std::string mountpoint, options, source, super_options;
};
std::optional<MountinfoEntry> FindMount(const std::string& mountpoint) {
  std::istringstream mountinfo(ReadFile("/proc/self/mountinfo"));
  for (std::string line; std::getline(mountinfo, line);) {
    std::istringstream in(line);
    std::vector<std::string> fields;
    for (std::string field; in >> field;) fields.push_back(field);
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 6 || dash == fields.end() || fields.end() - dash < 4) continue;
    MountinfoEntry entry{Unescape(fields[4]), fields[5], Unescape(dash[2]), dash[3]};
    if (entry.mountpoint == mountpoint) return entry;
  }
  return std::nullopt;
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
  std::optional<MountinfoEntry> entry = FindMount(mnt);
  ASSERT_TRUE(entry.has_value());
  EXPECT_NE(entry->super_options.find("default_permissions"), std::string::npos)
      << entry->super_options;

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

// A source path joined unescaped into fsname= once became mount options:
// `laminafs passthrough "/tmp/src,ro,allow_other" MNT` mounted read-only for
// everyone. Sources and mount points with a comma, backslash, quotes, a
// space or a newline mount as they are: mountinfo shows exactly those
// paths, and no option but the command's.
TEST(passthrough_cli_security, OddNamesStayWholeSourcesAndMountPoints) {
  ASSERT_EQ(geteuid(), 0U) << "needs root";
  TempDir dir("lamina-names");
  const std::string sources = dir.Subdir("src"), mounts = dir.Subdir("mnt");
  for (const std::string name : {"a,ro,allow_other", "back\\slash", "quo'te", "dq\"uote", "sp ace",
                                 "new\nline", "tr\\,ick\\\\,"}) {
    SCOPED_TRACE(name);
    const std::string source = sources + "/" + name, mnt = mounts + "/" + name;
    ASSERT_EQ(mkdir(source.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(mnt.c_str(), 0755), 0);
    WriteFile(source + "/f", "whole");
    UnmountGuard guard{mnt};
    ChildProcess command({BuiltBinary("cmd/laminafs"), "passthrough", source, mnt});
    ASSERT_EQ(command.Wait(std::chrono::seconds(30)), 0) << command.output();
    std::optional<MountinfoEntry> entry = FindMount(mnt);
    ASSERT_TRUE(entry.has_value());
    EXPECT_EQ(entry->source, source);
    EXPECT_EQ(entry->options.rfind("rw,", 0), 0U) << entry->options;
    EXPECT_EQ(entry->super_options.find("allow_other"), std::string::npos) << entry->super_options;
    EXPECT_EQ(ReadFile(mnt + "/f"), "whole");
    WriteFile(mnt + "/written", "yes");
    EXPECT_EQ(ReadFile(source + "/written"), "yes");
  }
}

}  // namespace
}  // namespace lamina::testing

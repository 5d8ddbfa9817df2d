#include "integration/passthrough/permission_matrix.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iostream>
#include <iterator>
#include <sstream>

#include "integration/harness/mount_harness.h"

namespace lamina::testing {
namespace {

std::string ErrnoName(int error) {
  const char* name = strerrorname_np(error);
  return name != nullptr ? name : std::to_string(error);
}

// "ok" or the errno's name.
std::string Result(long rc) {
  return rc >= 0 ? "ok" : ErrnoName(errno);
}

// A POSIX ACL in the kernel's xattr form (version 2; entries sorted by tag,
// then id).
struct AclEntry {
  uint16_t tag, perm;
  uint32_t id;
};
constexpr uint16_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kMask = 0x10, kOther = 0x20;
constexpr uint32_t kNoId = ~0U;

std::string Acl(std::initializer_list<AclEntry> entries) {
  constexpr uint32_t kVersion = 2;
  std::string acl(reinterpret_cast<const char*>(&kVersion), sizeof kVersion);
  for (const AclEntry& entry : entries) {
    acl.append(reinterpret_cast<const char*>(&entry), sizeof entry);
  }
  return acl;
}

// Denies the stranger what "other" grants everyone else.
std::string DenyStrangerAcl() {
  return Acl({{kUserObj, 6, kNoId},
              {kUser, 0, kMatrixStranger},
              {kGroupObj, 4, kNoId},
              {kMask, 4, kNoId},
              {kOther, 4, kNoId}});
}
// Grants the owner read and write of a root file no one else may read.
std::string GrantOwnerAcl() {
  return Acl({{kUserObj, 6, kNoId},
              {kUser, 6, kMatrixOwner},
              {kGroupObj, 0, kNoId},
              {kMask, 6, kNoId},
              {kOther, 0, kNoId}});
}
// What an owner sets: read for the stranger.
std::string ReadForStrangerAcl() {
  return Acl({{kUserObj, 6, kNoId},
              {kUser, 4, kMatrixStranger},
              {kGroupObj, 0, kNoId},
              {kMask, 4, kNoId},
              {kOther, 0, kNoId}});
}

// File capabilities (security.capability, VFS_CAP_REVISION_2, effective):
// CAP_NET_RAW permitted.
std::string FileCapabilities() {
  const uint32_t caps[5] = {0x02000000 | 0x1, 1U << 13, 0, 0, 0};
  return std::string(reinterpret_cast<const char*>(caps), sizeof caps);
}

struct Spec {
  char type;  // f file, d directory
  const char* path;
  uid_t uid;
  gid_t gid;
  mode_t mode;
};

// Directories before their entries.
constexpr Spec kTree[] = {
    {'f', "root600", 0, 0, 0600},
    {'f', "root644", 0, 0, 0644},
    {'f', "own600", kMatrixOwner, kMatrixOwner, 0600},
    {'f', "own640", kMatrixOwner, kMatrixOwner, 0640},
    {'f', "own660", kMatrixOwner, kMatrixOwner, 0660},
    {'f', "own666", kMatrixOwner, kMatrixOwner, 0666},
    {'f', "setid-write", kMatrixOwner, kMatrixOwner, 06777},
    {'f', "setid-truncate", kMatrixOwner, kMatrixOwner, 06777},
    {'f', "setid-chown", kMatrixOwner, kMatrixOwner, 06755},
    {'f', "setid-chown-none", kMatrixOwner, kMatrixOwner, 06755},
    {'f', "setgid-foreign", kMatrixOwner, 0, 0755},
    {'f', "setgid-acl", kMatrixOwner, 0, 02770},
    {'f', "prog", kMatrixStranger, kMatrixStranger, 0755},
    {'f', "filecap-write", kMatrixOwner, kMatrixOwner, 0777},
    {'f', "filecap-chown", kMatrixOwner, kMatrixOwner, 0755},
    {'f', "acl-deny", 0, 0, 0644},
    {'f', "acl-grant", 0, 0, 0600},
    {'d', "rootdir", 0, 0, 0755},
    {'f', "rootdir/f", 0, 0, 0644},
    {'d', "rootdir/sub", 0, 0, 0755},
    {'d', "world", 0, 0, 0777},
    {'f', "world/rootf", 0, 0, 0644},
    {'d', "world/d", kMatrixOwner, kMatrixOwner, 0755},
    {'d', "sticky", 0, 0, 01777},
    {'f', "sticky/root", 0, 0, 0666},
    {'f', "sticky/own", kMatrixOwner, kMatrixOwner, 0644},
    {'f', "sticky/stranger", kMatrixStranger, kMatrixStranger, 0644},
    {'d', "sticky/owndir", kMatrixOwner, kMatrixOwner, 0755},
    {'d', "grpdir", 0, kMatrixOwner, 0775},
};

// With O_CREAT, the new file's mode is 0644 (less the umask).
std::string OpenAndWrite(const std::string& path, int flags, const char* data) {
  int fd = open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return Result(-1);
  std::string result = "ok";
  if (data != nullptr && write(fd, data, strlen(data)) < 0) result = "write " + Result(-1);
  close(fd);
  return result;
}

std::string OpenAndRead(const std::string& path, int flags = O_RDONLY) {
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Result(-1);
  char buffer[64];
  ssize_t n = read(fd, buffer, sizeof buffer);
  std::string result = n < 0 ? "read " + Result(-1) : "ok " + std::string(buffer, size_t(n));
  close(fd);
  return result;
}

std::string GetXattr(const std::string& path, const char* name) {
  char value[256];
  ssize_t n = lgetxattr(path.c_str(), name, value, sizeof value);
  if (n < 0) return Result(-1);
  return "ok " + std::string(value, static_cast<size_t>(n));
}

std::string SetXattr(const std::string& path, const char* name, const std::string& value) {
  return Result(lsetxattr(path.c_str(), name, value.data(), value.size(), 0));
}

// The names, sorted, as the caller sees them.
std::string ListXattr(const std::string& path) {
  char names[1024];
  ssize_t n = llistxattr(path.c_str(), names, sizeof names);
  if (n < 0) return Result(-1);
  std::vector<std::string> list;
  for (ssize_t pos = 0; pos < n; pos += static_cast<ssize_t>(strlen(names + pos)) + 1) {
    list.emplace_back(names + pos);
  }
  std::sort(list.begin(), list.end());
  std::string out = "ok";
  for (const std::string& name : list) out += " " + name;
  // A size query must leave room for the list (kernel overlayfs answers
  // the size of the unfiltered list, which is more).
  if (llistxattr(path.c_str(), nullptr, 0) < n) out += " (size query too small)";
  return out;
}

std::string Utimes(const std::string& path, bool now) {
  const struct timespec times[2] = {{1000000, 0}, {2000000, 0}};
  return Result(utimensat(AT_FDCWD, path.c_str(), now ? nullptr : times, 0));
}

struct Operation {
  const char* name;
  const char* path;
  std::function<std::string(const std::string& path, const std::string& m)> run;
};

const std::vector<Operation>& Operations() {
  static const std::vector<Operation> operations = {
      {"open-read", "root600", [](auto& p, auto&) { return OpenAndRead(p); }},
      {"open-append", "root600",
       [](auto& p, auto&) { return OpenAndWrite(p, O_WRONLY | O_APPEND, "+"); }},
      {"open-read", "root644", [](auto& p, auto&) { return OpenAndRead(p); }},
      {"open-append", "root644",
       [](auto& p, auto&) { return OpenAndWrite(p, O_WRONLY | O_APPEND, "+"); }},
      {"open-trunc", "root644",
       [](auto& p, auto&) { return OpenAndWrite(p, O_WRONLY | O_TRUNC, nullptr); }},
      {"open-noatime", "root644",
       [](auto& p, auto&) { return OpenAndRead(p, O_RDONLY | O_NOATIME); }},
      {"access-read", "root600", [](auto& p, auto&) { return Result(access(p.c_str(), R_OK)); }},
      {"open-read", "own600", [](auto& p, auto&) { return OpenAndRead(p); }},
      {"open-read", "own640", [](auto& p, auto&) { return OpenAndRead(p); }},
      {"open-append", "own660",
       [](auto& p, auto&) { return OpenAndWrite(p, O_WRONLY | O_APPEND, "+"); }},
      {"open-read", "acl-deny", [](auto& p, auto&) { return OpenAndRead(p); }},
      {"open-read", "acl-grant", [](auto& p, auto&) { return OpenAndRead(p); }},
      {"open-append", "acl-grant",
       [](auto& p, auto&) { return OpenAndWrite(p, O_WRONLY | O_APPEND, "+"); }},
      {"create", "rootdir/new",
       [](auto& p, auto&) { return OpenAndWrite(p, O_WRONLY | O_CREAT | O_EXCL, "new"); }},
      {"create", "world/new",
       [](auto& p, auto&) { return OpenAndWrite(p, O_WRONLY | O_CREAT | O_EXCL, "new"); }},
      {"create", "grpdir/new",
       [](auto& p, auto&) { return OpenAndWrite(p, O_WRONLY | O_CREAT | O_EXCL, "new"); }},
      {"mkdir", "rootdir/d", [](auto& p, auto&) { return Result(mkdir(p.c_str(), 0755)); }},
      {"mkdir", "world/newdir", [](auto& p, auto&) { return Result(mkdir(p.c_str(), 0755)); }},
      {"mkfifo", "world/fifo",
       [](auto& p, auto&) { return Result(mknod(p.c_str(), S_IFIFO | 0644, 0)); }},
      {"mknod-chr", "world/null",
       [](auto& p, auto&) { return Result(mknod(p.c_str(), S_IFCHR | 0666, makedev(1, 3))); }},
      {"symlink", "world/link", [](auto& p, auto&) { return Result(symlink("rootf", p.c_str())); }},
      {"unlink", "rootdir/f", [](auto& p, auto&) { return Result(unlink(p.c_str())); }},
      {"rmdir", "rootdir/sub", [](auto& p, auto&) { return Result(rmdir(p.c_str())); }},
      {"unlink", "sticky/root", [](auto& p, auto&) { return Result(unlink(p.c_str())); }},
      {"unlink", "sticky/own", [](auto& p, auto&) { return Result(unlink(p.c_str())); }},
      {"rename", "sticky/stranger",
       [](auto& p, auto&) { return Result(rename(p.c_str(), (p + "2").c_str())); }},
      {"rmdir", "sticky/owndir", [](auto& p, auto&) { return Result(rmdir(p.c_str())); }},
      {"rename", "world/rootf",
       [](auto& p, auto&) { return Result(rename(p.c_str(), (p + "2").c_str())); }},
      {"rename-dir-across", "world/d",
       [](auto& p, auto& m) { return Result(rename(p.c_str(), (m + "/grpdir/d").c_str())); }},
      {"rename-over", "world/new",
       [](auto& p, auto& m) { return Result(rename(p.c_str(), (m + "/rootdir/f").c_str())); }},
      {"link", "root600",
       [](auto& p, auto& m) { return Result(link(p.c_str(), (m + "/world/l600").c_str())); }},
      {"link", "own666",
       [](auto& p, auto& m) { return Result(link(p.c_str(), (m + "/world/l666").c_str())); }},
      {"link", "setid-write",
       [](auto& p, auto& m) { return Result(link(p.c_str(), (m + "/world/lsetid").c_str())); }},
      {"chmod", "root644", [](auto& p, auto&) { return Result(chmod(p.c_str(), 0666)); }},
      {"chmod", "own600", [](auto& p, auto&) { return Result(chmod(p.c_str(), 0604)); }},
      {"chown-to-root", "prog", [](auto& p, auto&) { return Result(chown(p.c_str(), 0, 0)); }},
      {"chmod-setuid", "prog", [](auto& p, auto&) { return Result(chmod(p.c_str(), 04755)); }},
      {"chgrp-foreign", "own640",
       [](auto& p, auto&) { return Result(chown(p.c_str(), -1, kMatrixStranger)); }},
      {"chgrp-own", "own660",
       [](auto& p, auto&) { return Result(chown(p.c_str(), -1, kMatrixOwner)); }},
      {"chgrp-setid", "setid-chown",
       [](auto& p, auto&) { return Result(chown(p.c_str(), -1, kMatrixOwner)); }},
      {"chown-none", "setid-chown-none",
       [](auto& p, auto&) { return Result(chown(p.c_str(), -1, -1)); }},
      {"chmod-setgid", "setgid-foreign",
       [](auto& p, auto&) { return Result(chmod(p.c_str(), 02755)); }},
      {"truncate", "root644", [](auto& p, auto&) { return Result(truncate(p.c_str(), 1)); }},
      {"truncate", "own660", [](auto& p, auto&) { return Result(truncate(p.c_str(), 1)); }},
      {"truncate", "setid-truncate", [](auto& p, auto&) { return Result(truncate(p.c_str(), 0)); }},
      {"write", "setid-write",
       [](auto& p, auto&) { return OpenAndWrite(p, O_WRONLY | O_APPEND, "+"); }},
      {"write", "filecap-write",
       [](auto& p, auto&) { return OpenAndWrite(p, O_WRONLY | O_APPEND, "+"); }},
      {"chgrp-own", "filecap-chown",
       [](auto& p, auto&) { return Result(chown(p.c_str(), -1, kMatrixOwner)); }},
      {"utimes-now", "own666", [](auto& p, auto&) { return Utimes(p, true); }},
      {"utimes-set", "own666", [](auto& p, auto&) { return Utimes(p, false); }},
      {"utimes-now", "root644", [](auto& p, auto&) { return Utimes(p, true); }},
      {"getxattr-user", "root600", [](auto& p, auto&) { return GetXattr(p, "user.a"); }},
      {"setxattr-user", "root644", [](auto& p, auto&) { return SetXattr(p, "user.x", "1"); }},
      {"setxattr-user", "own666", [](auto& p, auto&) { return SetXattr(p, "user.x", "1"); }},
      {"setxattr-user", "sticky", [](auto& p, auto&) { return SetXattr(p, "user.x", "1"); }},
      {"removexattr-user", "root600",
       [](auto& p, auto&) { return Result(lremovexattr(p.c_str(), "user.a")); }},
      {"listxattr", "root600", [](auto& p, auto&) { return ListXattr(p); }},
      {"getxattr-trusted", "root600", [](auto& p, auto&) { return GetXattr(p, "trusted.t"); }},
      {"setxattr-trusted", "own666", [](auto& p, auto&) { return SetXattr(p, "trusted.x", "1"); }},
      {"getxattr-security", "root600", [](auto& p, auto&) { return GetXattr(p, "security.s"); }},
      {"setxattr-security", "own666",
       [](auto& p, auto&) { return SetXattr(p, "security.x", "1"); }},
      {"getxattr-acl", "acl-deny",
       [](auto& p, auto&) {
         return Result(lgetxattr(p.c_str(), "system.posix_acl_access", nullptr, 0));
       }},
      {"setxattr-acl", "own600",
       [](auto& p, auto&) { return SetXattr(p, "system.posix_acl_access", ReadForStrangerAcl()); }},
      {"setxattr-acl", "setgid-acl",
       [](auto& p, auto&) { return SetXattr(p, "system.posix_acl_access", ReadForStrangerAcl()); }},
      {"setxattr-acl", "root644",
       [](auto& p, auto&) { return SetXattr(p, "system.posix_acl_access", ReadForStrangerAcl()); }},
      {"removexattr-acl", "acl-deny",
       [](auto& p, auto&) { return Result(lremovexattr(p.c_str(), "system.posix_acl_access")); }},
  };
  return operations;
}

// Takes every capability away from this process (a uid 0 process then has
// no more rights than the mode bits give uid 0).
bool DropCapabilities() {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  return syscall(SYS_capset, &header, data) == 0;
}

bool BecomePrincipal(const Principal& who) {
  if (setgroups(who.groups.size(), who.groups.data()) != 0) return false;
  if (setresgid(who.gid, who.gid, who.gid) != 0) return false;
  if (setresuid(who.uid, who.uid, who.uid) != 0) return false;
  return !who.drop_capabilities || DropCapabilities();
}

}  // namespace

const std::vector<Principal>& MatrixPrincipals() {
  static const std::vector<Principal> principals = {
      {"root", 0, 0, {}},
      {"capless_root", 0, 0, {}, /*drop_capabilities=*/true},
      {"owner", kMatrixOwner, kMatrixOwner, {}},
      {"member", kMatrixMember, kMatrixMember, {kMatrixOwner}},
      {"stranger", kMatrixStranger, kMatrixStranger, {}},
  };
  return principals;
}

std::string BuildMatrixTree(const std::string& root) {
  for (const Spec& spec : kTree) {
    const std::string path = root + "/" + spec.path;
    if (spec.type == 'd') {
      if (mkdir(path.c_str(), 0700) != 0) return "mkdir " + path + ": " + ErrnoName(errno);
    } else {
      WriteFile(path, spec.path);
    }
    if (chown(path.c_str(), spec.uid, spec.gid) != 0 || chmod(path.c_str(), spec.mode) != 0) {
      return "chown/chmod " + path + ": " + ErrnoName(errno);
    }
  }
  const struct {
    const char* path;
    const char* name;
    std::string value;
  } xattrs[] = {
      {"root600", "user.a", "1"},
      {"root600", "trusted.t", "2"},
      {"root600", "security.s", "3"},
      {"acl-deny", "system.posix_acl_access", DenyStrangerAcl()},
      {"acl-grant", "system.posix_acl_access", GrantOwnerAcl()},
      {"filecap-write", "security.capability", FileCapabilities()},
      {"filecap-chown", "security.capability", FileCapabilities()},
  };
  for (const auto& xattr : xattrs) {
    const std::string path = root + "/" + xattr.path;
    if (lsetxattr(path.c_str(), xattr.name, xattr.value.data(), xattr.value.size(), 0) != 0) {
      return std::string("setxattr ") + xattr.name + " on " + path + ": " + ErrnoName(errno);
    }
  }
  return "";
}

std::string RunAs(const Principal& who, const std::function<std::string()>& body) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    close(pipe_fds[0]);
    umask(022);
    const std::string report =
        BecomePrincipal(who) ? body() : "cannot become " + std::string(who.name);
    for (size_t done = 0; done < report.size();) {
      ssize_t n = write(pipe_fds[1], report.data() + done, report.size() - done);
      if (n <= 0) _exit(1);
      done += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string report;
  char buffer[4096];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof buffer)) > 0) {
    report.append(buffer, static_cast<size_t>(n));
  }
  close(pipe_fds[0]);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return "child failed";
  }
  return report;
}

std::vector<std::vector<std::string>> RunMatrixAs(const Principal& who,
                                                  const std::vector<std::string>& roots) {
  const std::string report = RunAs(who, [&] {
    std::string out;
    for (const std::string& root : roots) {
      for (const Operation& op : Operations()) {
        std::string line =
            std::string(op.name) + " " + op.path + ": " + op.run(root + "/" + op.path, root);
        std::replace(line.begin(), line.end(), '\n', ' ');
        out += line + "\n";
      }
      out += "\n";  // ends this root's list
    }
    return out;
  });
  std::vector<std::vector<std::string>> lists(roots.size());
  std::istringstream lines(report);
  std::string line;
  size_t index = 0;
  while (std::getline(lines, line) && index < lists.size()) {
    if (line.empty()) {
      ++index;
    } else {
      lists[index].push_back(line);
    }
  }
  return lists;
}

std::string DescribeMatrixState(const std::string& root) {
  std::vector<std::string> lines;
  std::error_code error;
  for (auto it = std::filesystem::recursive_directory_iterator(root, error);
       it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
    const std::string path = it->path().string();
    struct stat st {};
    if (lstat(path.c_str(), &st) != 0) continue;
    std::ostringstream line;
    line << path.substr(root.size()) << " type=" << std::oct << (st.st_mode & S_IFMT)
         << " mode=" << (st.st_mode & 07777) << std::dec << " owner=" << st.st_uid << ":"
         << st.st_gid;
    if (S_ISREG(st.st_mode)) {
      std::string data = ReadFile(path);
      std::replace(data.begin(), data.end(), '\n', '|');
      line << " size=" << st.st_size << " data=" << data;
    } else if (S_ISLNK(st.st_mode)) {
      line << " -> " << std::filesystem::read_symlink(path, error).string();
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      line << " rdev=" << major(st.st_rdev) << ":" << minor(st.st_rdev);
    }
    char names[1024];
    ssize_t size = llistxattr(path.c_str(), names, sizeof names);
    std::vector<std::string> xattrs;
    for (ssize_t pos = 0; pos < size; pos += static_cast<ssize_t>(strlen(names + pos)) + 1) {
      const std::string name = names + pos;
      if (name.rfind("trusted.overlay.", 0) == 0) continue;
      char value[256];
      ssize_t length = lgetxattr(path.c_str(), name.c_str(), value, sizeof value);
      std::ostringstream hex;
      for (ssize_t i = 0; i < length; ++i) {
        hex << std::hex << static_cast<int>(static_cast<unsigned char>(value[i])) << ".";
      }
      xattrs.push_back(name + "=" + hex.str());
    }
    std::sort(xattrs.begin(), xattrs.end());
    for (const std::string& xattr : xattrs) line << " " << xattr;
    lines.push_back(line.str());
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const std::string& line : lines) out += line + "\n";
  return out;
}

std::string StateDifference(const std::string& left, const std::string& right) {
  auto lines = [](const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;  // sorted by DescribeMatrixState
  };
  const std::vector<std::string> a = lines(left), b = lines(right);
  std::vector<std::string> only_left, only_right;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(only_left));
  std::set_difference(b.begin(), b.end(), a.begin(), a.end(), std::back_inserter(only_right));
  std::string out;
  for (const std::string& line : only_left) out += "- " + line + "\n";
  for (const std::string& line : only_right) out += "+ " + line + "\n";
  return out;
}

std::string CompareMatrix(const Principal& who,
                          const std::vector<std::vector<std::string>>& outcomes,
                          const std::string& left_state, const std::string& right_state,
                          const std::vector<KnownDifference>& known) {
  if (outcomes.size() != 2 || outcomes[0].empty() || outcomes[0].size() != outcomes[1].size()) {
    return "the operations did not run: " + (outcomes.empty() || outcomes[0].empty()
                                                 ? std::string("no outcomes")
                                                 : outcomes[0].front());
  }
  std::vector<bool> seen(known.size());
  auto explained = [&](const std::string& line) {
    for (size_t k = 0; k < known.size(); ++k) {
      if (!known[k].applies(who)) continue;
      for (const std::string& prefix : known[k].prefixes) {
        if (line.rfind(prefix, 0) != 0) continue;
        std::cout << "known difference (" << known[k].what << "): " << line << "\n";
        seen[k] = true;
        return true;
      }
    }
    return false;
  };
  std::string report;
  for (size_t i = 0; i < outcomes[0].size(); ++i) {
    if (outcomes[0][i] == outcomes[1][i] || explained(outcomes[0][i])) continue;
    report += "left: " + outcomes[0][i] + " | right: " + outcomes[1][i] + "\n";
  }
  std::istringstream lines(StateDifference(left_state, right_state));
  for (std::string line; std::getline(lines, line);) {
    if (!explained(line.substr(2))) report += "state " + line + "\n";
  }
  for (size_t k = 0; k < known.size(); ++k) {
    if (known[k].applies(who) && !seen[k]) {
      report += "fixed? remove the known difference: " + known[k].what + "\n";
    }
  }
  return report;
}

}  // namespace lamina::testing

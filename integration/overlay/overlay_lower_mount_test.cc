// Lower layers behind private read-only clones of their mounts
// (overlay/lower_mount.h): the daemon cannot write a lower layer even when
// something asks it to, as root, as root of a user namespace and as a plain
// user; inode numbers and file handles are those of the layer; and no read,
// listing, readlink or copy-up through the mount changes a lower object's
// access time, side by side with kernel overlayfs (which mounts its lowers
// noatime), with and without FUSE passthrough.

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/backing_registry.h"
#include "core/connection.h"
#include "core/filesystem.h"
#include "core/fuse_server.h"
#include "integration/overlay/overlay_harness.h"
#include "overlay/dir_merge.h"
#include "overlay/layer_object.h"
#include "overlay/layers.h"
#include "overlay/node.h"
#include "overlay/privilege.h"

namespace lamina::testing {
namespace {

using overlay::Layer;
using overlay::LayerConfig;
using overlay::LayerStack;

constexpr uid_t kUser = 1000;  // the machine's unprivileged test user
constexpr time_t kOldAtime = 1000000;

// "" when `rc` failed with `want`, else what happened instead.
std::string Refused(const char* what, int rc, int want) {
  if (rc < 0 && errno == want) return "";
  return std::string(what) + ": " + (rc < 0 ? strerrorname_np(errno) : "succeeded") + "; ";
}

std::string RefusedOpen(const char* what, int fd, int want) {
  std::string out = Refused(what, fd, want);
  if (fd >= 0) close(fd);
  return out;
}

// Sets the access time of `path` (not following a symlink) far before its
// modification time, so that any access, even under relatime, would move it.
void AgeAtime(const std::string& path) {
  struct timespec times[2] = {{kOldAtime, 0}, {0, UTIME_OMIT}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

time_t Atime(int dir_fd, const char* name) {
  struct stat st;
  if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return -1;
  return st.st_atim.tv_sec;
}

// Everything the daemon could try on the lower `layer` whose root holds
// "file" (content "data"): each write must fail with EROFS; reads, inode
// numbers and file handles must be those of the layer at `path`. "" when
// all hold, else what did not.
std::string CheckLowerRefusesWrites(const Layer& layer, const std::string& path,
                                    bool expect_noatime) {
  std::string out;
  if (!layer.read_only) out += "layer not marked read-only; ";
  if (layer.noatime != expect_noatime) out += "noatime is " + std::to_string(layer.noatime) + "; ";
  out += RefusedOpen("openat O_WRONLY", openat(layer.fd, "file", O_WRONLY | O_CLOEXEC), EROFS);
  out += RefusedOpen("openat O_RDWR|O_TRUNC", openat(layer.fd, "file", O_RDWR | O_TRUNC), EROFS);
  out += RefusedOpen("openat O_CREAT",
                     openat(layer.fd, "new", O_WRONLY | O_CREAT | O_CLOEXEC, 0644), EROFS);
  out += Refused("mkdirat", mkdirat(layer.fd, "newdir", 0755), EROFS);
  out += Refused("unlinkat", unlinkat(layer.fd, "file", 0), EROFS);
  out += Refused("renameat", renameat(layer.fd, "file", layer.fd, "moved"), EROFS);
  out += Refused("symlinkat", symlinkat("file", layer.fd, "link2"), EROFS);

  const int reader = openat(layer.fd, "file", O_RDONLY | O_CLOEXEC);
  if (reader < 0) return out + "cannot open the file for reading: " + strerror(errno);
  char data[8] = {};
  if (pread(reader, data, sizeof(data), 0) != 4 || std::string(data) != "data") {
    out += "read gave '" + std::string(data) + "'; ";
  }
  out += Refused("fsetxattr", fsetxattr(reader, "user.lamina", "x", 1, 0), EROFS);
  out += Refused("fchmod", fchmod(reader, 0600), EROFS);
  out += Refused("futimens", futimens(reader, nullptr), EROFS);
  close(reader);

  // A reopen through /proc keeps the descriptor's mount.
  const int path_fd = openat(layer.fd, "file", O_PATH | O_CLOEXEC);
  const std::string proc = overlay::FdPath(path_fd);
  out += RefusedOpen("reopen O_WRONLY", open(proc.c_str(), O_WRONLY | O_CLOEXEC), EROFS);
  out += Refused("setxattr through /proc", setxattr(proc.c_str(), "user.lamina", "x", 1, 0), EROFS);

  // The clone shares the layer's superblock: same device and inode.
  struct stat clone_st, layer_st;
  if (fstat(path_fd, &clone_st) != 0 || stat((path + "/file").c_str(), &layer_st) != 0 ||
      clone_st.st_dev != layer_st.st_dev || clone_st.st_ino != layer_st.st_ino ||
      layer.dev != layer_st.st_dev) {
    out += "device or inode number differs from the layer's; ";
  }

  // A file handle taken through the clone decodes there (and only for
  // reading), where the daemon may decode handles.
  struct {
    struct file_handle header;
    unsigned char bytes[MAX_HANDLE_SZ];
  } handle{};
  handle.header.handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (name_to_handle_at(path_fd, "", &handle.header, &mount_id, AT_EMPTY_PATH) != 0) {
    out += std::string("name_to_handle_at: ") + strerror(errno) + "; ";
  } else if (overlay::MayDecodeFileHandles()) {
    out += RefusedOpen("open_by_handle_at O_WRONLY",
                       open_by_handle_at(layer.handle_fd, &handle.header, O_WRONLY), EROFS);
    const int decoded = open_by_handle_at(layer.handle_fd, &handle.header, O_RDONLY | O_CLOEXEC);
    struct stat decoded_st;
    if (decoded < 0 || fstat(decoded, &decoded_st) != 0 || decoded_st.st_ino != layer_st.st_ino) {
      out += std::string("open_by_handle_at O_RDONLY: ") + strerror(errno) + "; ";
    }
    if (decoded >= 0) close(decoded);
  }
  close(path_fd);

  return out;
}

// Lists the layer's root through the overlay's listing code and reads
// "file" as the overlay opens lower objects for reading; both were given an
// old atime (AgeAtime): "" when neither moved, as on a noatime lower mount.
std::string CheckReadsKeepAtimes(const LayerStack& stack, const Layer& layer) {
  overlay::LowerRefs lowers;
  lowers.push_back(overlay::LowerRef{layer.index, layer.fd, {}});
  const overlay::DirSources sources{-1, {}, &lowers, 1, 1};
  std::string out;
  if (overlay::MergeListing(stack, sources).size() < 3) out += "the listing is empty; ";
  const int fd = overlay::OpenInLayer(layer, layer.fd, "file", O_RDONLY | O_CLOEXEC);
  char data[8];
  if (fd < 0 || read(fd, data, sizeof(data)) != 4) out += "cannot read the file; ";
  if (fd >= 0) close(fd);
  if (Atime(layer.fd, ".") != kOldAtime) out += "listing moved the directory's atime; ";
  if (Atime(layer.fd, "file") != kOldAtime) out += "reading moved the file's atime; ";
  return out;
}

// Runs `body` in a forked child (for credentials of its own) and returns
// what it returned: "" for success, else a description of the failure.
std::string RunInChild(const std::function<std::string()>& body) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return "pipe failed";
  const pid_t child = fork();
  if (child == 0) {
    close(pipe_fds[0]);
    const std::string result = body();
    if (!result.empty() && write(pipe_fds[1], result.data(), result.size()) < 0) _exit(2);
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string result;
  char buffer[512];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0) {
    result.append(buffer, static_cast<size_t>(n));
  }
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    result += " (child ended with status " + std::to_string(status) + ")";
  }
  return result;
}

// Writes `text` to a /proc file (uid_map, gid_map).
bool WriteProcFile(const char* path, const std::string& text) {
  const int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

// Whether a child forked from this process may enter a user namespace: not
// where they are disabled, nor where the child has threads of its own (a
// sanitizer's runtime starts one after fork; unshare then gives EINVAL).
bool ChildMayEnterUserNamespace() {
  const pid_t child = fork();
  if (child == 0) _exit(unshare(CLONE_NEWUSER) == 0 ? 0 : 1);
  int status = 0;
  return child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) &&
         WEXITSTATUS(status) == 0;
}

class LowerMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
    lower_ = dir_.Subdir("lower");
    BuildLayer(lower_, {"f file data", "d dir", "f dir/x inside"});
    AgeAtime(lower_);
    AgeAtime(lower_ + "/file");
  }

  LayerConfig Config() const {
    LayerConfig config;
    config.lowers = {lower_};
    return config;
  }

  TempDir dir_{"lamina-lowermnt"};
  std::string lower_;
};

TEST_F(LowerMountTest, AsRootLowersAreReadOnlyNoatimeClones) {
  LayerConfig config = Config();
  config.upper = dir_.Subdir("upper");
  config.work = dir_.Subdir("work");
  absl::StatusOr<LayerStack> stack = LayerStack::Open(config);
  ASSERT_TRUE(stack.ok()) << stack.status();
  const Layer& lower = stack->layer(1);
  EXPECT_EQ(CheckLowerRefusesWrites(lower, lower_, /*expect_noatime=*/true), "");
  EXPECT_EQ(CheckReadsKeepAtimes(*stack, lower), "");
  // Only the overlay's view of the lower is read-only: not the upper, and
  // not the lower's own mount.
  const int made = openat(stack->upper().fd, "made", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  EXPECT_GE(made, 0) << strerror(errno);
  if (made >= 0) close(made);
  EXPECT_FALSE(stack->upper().read_only);
  struct statvfs st;
  ASSERT_EQ(statvfs(lower_.c_str(), &st), 0);
  EXPECT_EQ(st.f_flag & ST_RDONLY, 0u);
}

// Root of a user namespace that owns its mount namespace (rootless podman's
// `podman unshare`): it clones directly, but the atime flags its mounts
// were copied with are locked, so the clones are read-only and lower
// objects are read with O_NOATIME instead.
TEST_F(LowerMountTest, RootOfAUserNamespaceGetsReadOnlyClonesWithoutNoatime) {
  if (!ChildMayEnterUserNamespace()) GTEST_SKIP() << "no user namespaces for a child here";
  const std::string result = RunInChild([this]() -> std::string {
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return "unshare failed";
    if (!WriteProcFile("/proc/self/uid_map", "0 0 1\n") ||
        !WriteProcFile("/proc/self/setgroups", "deny") ||
        !WriteProcFile("/proc/self/gid_map", "0 0 1\n")) {
      return "cannot map root";
    }
    absl::StatusOr<LayerStack> stack = LayerStack::Open(Config());
    if (!stack.ok()) return stack.status().ToString();
    const Layer& lower = stack->layer(0);
    return CheckLowerRefusesWrites(lower, lower_, /*expect_noatime=*/false) +
           CheckReadsKeepAtimes(*stack, lower);
  });
  EXPECT_EQ(result, "");
}

// A plain user (rootless mounts through fusermount3): a helper child
// clones the lowers in a user and mount namespace of its own and passes
// them back.
TEST_F(LowerMountTest, PlainUserGetsReadOnlyClonesFromAHelper) {
  if (!ChildMayEnterUserNamespace()) GTEST_SKIP() << "no user namespaces for a child here";
  for (const auto& entry : std::filesystem::recursive_directory_iterator(lower_)) {
    ASSERT_EQ(lchown(entry.path().c_str(), kUser, kUser), 0);
  }
  ASSERT_EQ(lchown(lower_.c_str(), kUser, kUser), 0);
  AgeAtime(lower_);  // the walk above read it
  const std::string result = RunInChild([this]() -> std::string {
    if (setgroups(0, nullptr) != 0 || setresgid(kUser, kUser, kUser) != 0 ||
        setresuid(kUser, kUser, kUser) != 0) {
      return "cannot become uid 1000";
    }
    absl::StatusOr<LayerStack> stack = LayerStack::Open(Config());
    if (!stack.ok()) return stack.status().ToString();
    const Layer& lower = stack->layer(0);
    return CheckLowerRefusesWrites(lower, lower_, /*expect_noatime=*/false) +
           CheckReadsKeepAtimes(*stack, lower);
  });
  EXPECT_EQ(result, "");
}

// A FUSE filesystem with one file, "f", served entirely by FUSE
// passthrough from a backing file opened for reading relative to
// `layer_fd`, and handed out for every open, writes included: the mistake
// that once let writes reach a lower layer (the kernel reopens the backing
// file's path with the caller's flags). It implements no READ or WRITE, so
// any data that moves went through the backing file.
class LowerBackedFile : public Filesystem {
 public:
  explicit LowerBackedFile(int layer_fd) : layer_fd_(layer_fd) {}

  void Init(InitConfig& config) override {
    if (config.KernelOffers(abi::kPassthrough)) {
      config.want |= abi::kPassthrough;
      config.max_stack_depth = 1;
    }
  }
  void Connected(Connection& connection) override {
    if (connection.Has(abi::kPassthrough)) backing_ = connection.backing();
  }
  Result<Entry> Lookup(const Ctx&, NodeId parent, std::string_view name) override {
    if (parent != kRootNode || name != "f") return Errno{ENOENT};
    Entry entry;
    entry.node = kFileNode;
    if (fstatat(layer_fd_, "f", &entry.attr, AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
    return entry;
  }
  Result<Attributes> GetAttr(const Ctx&, NodeId node, std::optional<uint64_t>) override {
    Attributes attributes;
    const char* name = node == kFileNode ? "f" : ".";
    if (fstatat(layer_fd_, name, &attributes.attr, AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
    return attributes;
  }
  Result<OpenReply> Open(const Ctx&, NodeId node, const OpenRequest&) override {
    if (node != kFileNode) return Errno{EISDIR};
    if (backing_ == nullptr) return Errno{ENOTSUP};
    const int fd = openat(layer_fd_, "f", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return LastErrno();
    Result<int> id = backing_->Acquire(kFileNode, fd);
    close(fd);
    if (!id.ok()) return Errno{id.error()};
    OpenReply reply;
    reply.backing_id = *id;
    return reply;
  }
  Result<void> Release(const Ctx&, NodeId node, uint64_t, int) override {
    if (node == kFileNode && backing_ != nullptr) backing_->Release(kFileNode);
    return Ok();
  }
  Result<void> Flush(const Ctx&, NodeId, uint64_t, uint64_t) override { return Ok(); }

  bool passthrough() const { return backing_ != nullptr; }

 private:
  static constexpr NodeId kRootNode = 1;
  static constexpr NodeId kFileNode = 2;
  const int layer_fd_;
  BackingRegistry* backing_ = nullptr;
};

// Serves `layer_fd`'s "f" through LowerBackedFile at `mountpoint`, reads
// it and tries to append to it; returns what happened.
std::string ReadAndAppendThroughBackingFile(int layer_fd, const std::string& mountpoint) {
  LowerBackedFile fs(layer_fd);
  ServerOptions options;
  options.mount_options = {"fsname=lamina-lower-backing"};
  auto server = FuseServer::Start(fs, mountpoint, options);
  if (!server.ok()) return server.status().ToString();
  if (!fs.passthrough()) return "no FUSE passthrough";
  const std::string path = mountpoint + "/f";
  std::string out = "read:" + ReadFile(path);
  const int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  out += " append-open:" + Outcome(fd);
  if (fd >= 0) {
    out += " write:" + Outcome(static_cast<int>(write(fd, "+landed", 7)));
    close(fd);
  }
  return out;
}

TEST_F(LowerMountTest, PassthroughBackingFilesFromALowerReadButNeverWrite) {
  WriteFile(lower_ + "/f", "lower data");
  absl::StatusOr<LayerStack> stack = LayerStack::Open(Config());
  ASSERT_TRUE(stack.ok()) << stack.status();
  const std::string result =
      ReadAndAppendThroughBackingFile(stack->layer(0).fd, dir_.Subdir("mnt"));
  // The kernel opens the write through the read-only clone, which refuses
  // it (EROFS; FUSE answers the open with EIO on Linux 6.18).
  EXPECT_EQ(result.substr(0, result.find(" append-open:")), "read:lower data");
  EXPECT_EQ(result.find("write:ok"), std::string::npos) << result;
  EXPECT_EQ(ReadFile(lower_ + "/f"), "lower data") << "a write reached the lower layer";

  // The premise: through the layer's own mount the same mistake writes
  // into the layer.
  const int plain = open(lower_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(plain, 0);
  const std::string control = ReadAndAppendThroughBackingFile(plain, dir_.Subdir("mnt2"));
  close(plain);
  EXPECT_EQ(control, "read:lower data append-open:ok write:ok");
  EXPECT_EQ(ReadFile(lower_ + "/f"), "lower data+landed");
}

// Through real mounts, with FUSE passthrough (GetParam()) and without:
// reads, mmap, listings, readlink and copy-ups leave every lower object's
// atime where it was, as on kernel overlayfs.
const std::vector<std::string> kAtimeLower = {
    "f file data",      "d dir",           "f dir/x inside",  "l link file",
    "f mapped mapdata", "f appended base", "f chmodded mode", "f held first",
    "d listed",         "f listed/a a",    "f listed/b b"};

class LowerAtimeTest : public OverlayPair, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    lamina_options_.passthrough = GetParam() ? PassthroughMode::kOn : PassthroughMode::kOff;
    // Aged before the first mount, so that the lower layers' digest
    // records the old atimes too.
    BuildLayers({kAtimeLower});
    for (int s = 0; s < 2; ++s) {
      const std::string lower = set_[s] + "/lower0";
      AgeAtime(lower);
      for (const std::string& line : kAtimeLower) {
        AgeAtime(lower + "/" + line.substr(2, line.find(' ', 2) - 2));
      }
    }
    MountBoth();
  }

  // The lower objects (of set `s`) whose atime moved.
  std::string MovedAtimes(int s) {
    const std::string lower = set_[s] + "/lower0";
    const int root = open(lower.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    std::string moved = Atime(root, ".") == kOldAtime ? "" : "/ ";
    for (const std::string& line : kAtimeLower) {
      const std::string name = line.substr(2, line.find(' ', 2) - 2);
      if (Atime(root, name.c_str()) != kOldAtime) moved += name + " ";
    }
    close(root);
    return moved;
  }
};

TEST_P(LowerAtimeTest, ReadsListingsAndCopyUpsKeepLowerAtimes) {
  std::string held_reads[2];
  int which = 0;
  ExpectSame(
      [&](const std::string& r) {
        std::string out = ReadFile(r + "/file") + ReadFile(r + "/dir/x");
        for (const std::string& name : ListDir(r)) out += " " + name;
        for (const std::string& name : ListDir(r + "/listed")) out += " " + name;
        char target[64] = {};
        out += " " + Outcome(static_cast<int>(readlink((r + "/link").c_str(), target, 63)));
        out += target;
        const int mapped = open((r + "/mapped").c_str(), O_RDONLY | O_CLOEXEC);
        void* map = mmap(nullptr, 7, PROT_READ, MAP_SHARED, mapped, 0);
        if (map != MAP_FAILED) {
          out += " " + std::string(static_cast<const char*>(map), 7);
          munmap(map, 7);
        }
        close(mapped);
        const int append = open((r + "/appended").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        out += " " + Outcome(static_cast<int>(write(append, "+", 1)));
        close(append);
        out += " " + Outcome(chmod((r + "/chmodded").c_str(), 0600));
        // A file held open for reading while another open copies it up.
        const int held = open((r + "/held").c_str(), O_RDONLY | O_CLOEXEC);
        char first[6] = {};
        out += " " + Outcome(static_cast<int>(read(held, first, 5))) + first;
        const int writer = open((r + "/held").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        out += " " + Outcome(static_cast<int>(write(writer, "+", 1)));
        close(writer);
        char again[8] = {};
        if (pread(held, again, sizeof(again) - 1, 0) >= 0) held_reads[which++] = again;
        close(held);
        return out + "\n" + DescribeTree(r);
      },
      "reads, listings, readlink and copy-ups");
  // With FUSE passthrough the kernel reads the held file's backing file,
  // opened from the lower's read-only clone: it still shows the lower data
  // (docs/overlay.md), which shows the reads did pass through.
  EXPECT_EQ(held_reads[0], GetParam() ? "first" : "first+");
  EXPECT_EQ(held_reads[1], "first+");
  EXPECT_EQ(MovedAtimes(1), "") << "the kernel's lower atimes moved: the test's premise is wrong";
  EXPECT_EQ(MovedAtimes(0), "") << "Lamina moved these lower objects' atimes";
}

INSTANTIATE_TEST_SUITE_P(Passthrough, LowerAtimeTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "On" : "Off"; });

}  // namespace
}  // namespace lamina::testing

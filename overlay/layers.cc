#include "overlay/layers.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "overlay/lower_mount.h"
#include "overlay/privilege.h"
#include "overlay/work_dir.h"

namespace lamina::overlay {
namespace {

// Fills in what the layer's root descriptor `layer.fd` tells: its device,
// its filesystem's UUID, and a readable descriptor of it for
// open_by_handle_at (on the same mount, so what it decodes stays on it).
void DescribeLayer(Layer& layer) {
  struct stat st;
  fstat(layer.fd, &st);
  layer.dev = st.st_dev;
  // FS_IOC_GETFSUUID (Linux 6.5+) needs a real descriptor, not O_PATH.
  struct {
    uint8_t len;
    uint8_t uuid[16];
  } fsuuid{};
  constexpr unsigned long kGetFsUuid = _IOR(0x15, 0, decltype(fsuuid));
  int dir = openat(layer.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    fsuuid.len = sizeof(fsuuid.uuid);
    if (ioctl(dir, kGetFsUuid, &fsuuid) == 0 && fsuuid.len == 16) {
      std::memcpy(layer.uuid.data(), fsuuid.uuid, 16);
    }
    layer.handle_fd = dir;
  }
}

// The upper or work directory named by the user (symlinks in `path` are
// followed, as the kernel follows them; nothing below it will be).
absl::StatusOr<Layer> OpenLayer(const std::string& path, const char* role) {
  Layer layer;
  layer.path = path;
  layer.fd = open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (layer.fd < 0) {
    return absl::InvalidArgumentError(absl::StrCat(role, " ", path, ": ", strerror(errno)));
  }
  DescribeLayer(layer);
  return layer;
}

// Takes the exclusive lock that marks `path` as the upper or work directory
// of a live mount. A daemon whose mount was just unmounted may still hold
// it for a moment, so wait a little before calling the directory in use.
absl::StatusOr<int> LockInUse(int dir_fd, const std::string& path, const char* role) {
  int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return absl::InvalidArgumentError(absl::StrCat(role, " ", path, ": ", strerror(errno)));
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(LayerStack::kInUseWaitMs);
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK || std::chrono::steady_clock::now() > deadline) {
      int error = errno;
      close(fd);
      if (error == EWOULDBLOCK) {
        return absl::FailedPreconditionError(
            absl::StrCat(role, " ", path, " is in use by another laminafs mount"));
      }
      return absl::InvalidArgumentError(
          absl::StrCat("cannot lock ", role, " ", path, ": ", strerror(error)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return fd;
}

// The kernel's "overlapping layers" rule: a lower may not lie inside (or
// be) the upper, the work directory or another lower, since the overlay
// would then merge a layer with a part of itself.
absl::Status CheckOverlaps(const LayerConfig& config) {
  for (size_t i = 0; i < config.lowers.size(); ++i) {
    const std::string& lower = config.lowers[i];
    for (const auto& [dir, role] :
         {std::pair{config.upper, "upperdir"}, {config.work, "workdir"}}) {
      if (!dir.empty() && PathIsWithin(lower, dir)) {
        return absl::InvalidArgumentError(
            absl::StrCat("lowerdir ", lower, " overlaps ", role, " ", dir));
      }
    }
    for (size_t j = 0; j < config.lowers.size(); ++j) {
      if (j != i && PathIsWithin(lower, config.lowers[j])) {
        return absl::InvalidArgumentError(
            absl::StrCat("lowerdir ", lower, " overlaps lowerdir ", config.lowers[j]));
      }
    }
  }
  return absl::OkStatus();
}

// The kernel's uuid=auto: an upper without overlay.uuid gets a random one
// at its first mount, recognised by a root not yet marked impure (an upper
// used before keeps none, the kernel's uuid=null). Failing to store it is
// not an error, as on the kernel.
void RecordUuid(int upper_fd, const std::string& prefix) {
  const std::string upper = absl::StrCat("/proc/self/fd/", upper_fd);
  const std::string uuid_name = prefix + "uuid";
  if (getxattr(upper.c_str(), uuid_name.c_str(), nullptr, 0) >= 0 || errno != ENODATA) return;
  if (getxattr(upper.c_str(), (prefix + "impure").c_str(), nullptr, 0) >= 0) return;
  uint8_t uuid[16];
  if (getrandom(uuid, sizeof(uuid), 0) != sizeof(uuid)) return;
  uuid[6] = static_cast<uint8_t>((uuid[6] & 0x0f) | 0x40);  // version 4, as uuid_gen makes
  uuid[8] = static_cast<uint8_t>((uuid[8] & 0x3f) | 0x80);  // RFC 4122 variant
  setxattr(upper.c_str(), uuid_name.c_str(), uuid, sizeof(uuid), 0);
}

}  // namespace

bool PathIsWithin(const std::string& inner, const std::string& outer) {
  return inner == outer || inner.rfind(outer == "/" ? outer : outer + "/", 0) == 0;
}

absl::StatusOr<LayerStack> LayerStack::Open(const LayerConfig& config) {
  LayerStack stack;
  if (config.userxattr || !MayUseTrustedXattrs()) stack.prefix_ = "user.overlay.";
  stack.decode_handles_ = MayDecodeFileHandles();
  stack.ino32_ = config.ino32;
  if (config.lowers.empty()) return absl::InvalidArgumentError("no lowerdir given");
  absl::Status overlaps = CheckOverlaps(config);
  if (!overlaps.ok()) return overlaps;
  if (!config.upper.empty()) {
    if (config.work.empty()) return absl::InvalidArgumentError("upperdir needs a workdir");
    if (PathIsWithin(config.work, config.upper) || PathIsWithin(config.upper, config.work)) {
      return absl::InvalidArgumentError("workdir and upperdir must not contain each other");
    }
    absl::StatusOr<Layer> upper = OpenLayer(config.upper, "upperdir");
    if (!upper.ok()) return upper.status();
    upper->upper = true;
    upper->open_noatime = config.noatime;
    stack.layers_.push_back(*upper);
    stack.has_upper_ = true;
    absl::StatusOr<Layer> work = OpenLayer(config.work, "workdir");
    if (!work.ok()) return work.status();
    stack.work_fd_ = work->fd;
    if (work->handle_fd >= 0) close(work->handle_fd);
    if (work->dev != upper->dev) {
      return absl::InvalidArgumentError("workdir and upperdir are on different filesystems");
    }
    for (const auto& [fd, path, role] :
         {std::tuple{upper->fd, config.upper, "upperdir"}, {work->fd, config.work, "workdir"}}) {
      absl::StatusOr<int> lock = LockInUse(fd, path, role);
      if (!lock.ok()) return lock.status();
      stack.lock_fds_.push_back(*lock);
    }
    WorkDirOptions work_options;
    work_options.volatile_mode = config.volatile_mode;
    // The index needs the trusted namespace (the kernel refuses index=on
    // with userxattr).
    work_options.index = config.index && stack.prefix_ == "trusted.overlay.";
    absl::StatusOr<WorkDirs> dirs = PrepareWorkDirs(work->fd, config.work, work_options);
    if (!dirs.ok()) return dirs.status();
    stack.staging_fd_ = dirs->staging_fd;
    stack.index_fd_ = dirs->index_fd;
    if (config.record_uuid) RecordUuid(upper->fd, stack.prefix_);
  }
  absl::StatusOr<std::vector<LowerRoot>> lowers = OpenLowerRoots(config.lowers);
  if (!lowers.ok()) return lowers.status();
  for (size_t i = 0; i < lowers->size(); ++i) {
    const LowerRoot& root = (*lowers)[i];
    Layer lower;
    lower.path = config.lowers[i];
    lower.fd = root.fd;
    lower.read_only = root.read_only;
    lower.noatime = root.noatime;
    lower.open_noatime = !root.noatime;
    DescribeLayer(lower);
    stack.layers_.push_back(lower);
  }
  for (size_t i = 0; i < stack.layers_.size(); ++i) {
    stack.layers_[i].index = static_cast<int>(i);
    if (stack.layers_[i].dev != stack.layers_[0].dev) stack.single_device_ = false;
  }
  return stack;
}

LayerStack::LayerStack(LayerStack&& other) noexcept
    : layers_(std::move(other.layers_)),
      has_upper_(other.has_upper_),
      single_device_(other.single_device_),
      ino32_(other.ino32_),
      work_fd_(other.work_fd_),
      staging_fd_(other.staging_fd_),
      index_fd_(other.index_fd_),
      lock_fds_(std::move(other.lock_fds_)),
      prefix_(std::move(other.prefix_)),
      decode_handles_(other.decode_handles_) {
  other.layers_.clear();
  other.work_fd_ = -1;
  other.staging_fd_ = -1;
  other.index_fd_ = -1;
  other.lock_fds_.clear();
}

LayerStack::~LayerStack() {
  for (Layer& layer : layers_) {
    close(layer.fd);
    if (layer.handle_fd >= 0) close(layer.handle_fd);
  }
  if (work_fd_ >= 0) close(work_fd_);
  if (staging_fd_ >= 0) close(staging_fd_);
  if (index_fd_ >= 0) close(index_fd_);
  for (int fd : lock_fds_) close(fd);  // releases the locks
}

std::string LayerStack::StagingName() {
  // The pid keeps names apart from a crashed predecessor's leftovers.
  static const pid_t pid = getpid();
  return absl::StrCat("#lamina-", pid, "-", staging_counter_.fetch_add(1));
}

}  // namespace lamina::overlay

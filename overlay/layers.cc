#include "overlay/layers.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace lamina::overlay {
namespace {

absl::StatusOr<Layer> OpenLayer(const std::string& path, const char* role) {
  Layer layer;
  layer.path = path;
  layer.fd = open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (layer.fd < 0) {
    return absl::InvalidArgumentError(absl::StrCat(role, " ", path, ": ", strerror(errno)));
  }
  struct stat st;
  fstat(layer.fd, &st);
  layer.dev = st.st_dev;
  // FS_IOC_GETFSUUID (Linux 6.5+) needs a real descriptor, not O_PATH.
  struct {
    uint8_t len;
    uint8_t uuid[16];
  } fsuuid{};
  constexpr unsigned long kGetFsUuid = _IOR(0x15, 0, decltype(fsuuid));
  int dir = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    fsuuid.len = sizeof(fsuuid.uuid);
    if (ioctl(dir, kGetFsUuid, &fsuuid) == 0 && fsuuid.len == 16) {
      std::memcpy(layer.uuid.data(), fsuuid.uuid, 16);
    }
    close(dir);
  }
  return layer;
}

bool IsInside(const std::string& inner, const std::string& outer) {
  return inner == outer || inner.rfind(outer + "/", 0) == 0;
}

// Removes everything in the directory `fd` (a crashed mount's leftovers).
void EmptyDirectory(const std::string& path) {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(path, error)) {
    std::filesystem::remove_all(entry.path(), error);
  }
}

}  // namespace

absl::StatusOr<LayerStack> LayerStack::Open(const LayerConfig& config) {
  LayerStack stack;
  if (config.userxattr || geteuid() != 0) stack.prefix_ = "user.overlay.";
  stack.ino32_ = config.ino32;
  if (config.lowers.empty()) return absl::InvalidArgumentError("no lowerdir given");
  if (!config.upper.empty()) {
    if (config.work.empty()) return absl::InvalidArgumentError("upperdir needs a workdir");
    if (IsInside(config.work, config.upper) || IsInside(config.upper, config.work)) {
      return absl::InvalidArgumentError("workdir and upperdir must not contain each other");
    }
    absl::StatusOr<Layer> upper = OpenLayer(config.upper, "upperdir");
    if (!upper.ok()) return upper.status();
    upper->upper = true;
    stack.layers_.push_back(*upper);
    stack.has_upper_ = true;
    absl::StatusOr<Layer> work = OpenLayer(config.work, "workdir");
    if (!work.ok()) return work.status();
    stack.work_fd_ = work->fd;
    if (work->dev != upper->dev) {
      return absl::InvalidArgumentError("workdir and upperdir are on different filesystems");
    }
    // Like the kernel, stage in work/work so the workdir itself stays put.
    std::string staging = config.work + "/work";
    if (mkdir(staging.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot create ", staging, ": ", strerror(errno)));
    }
    // A volatile mount's marker: the upper may have lost writes in a crash.
    // Refuse, as the kernel does, until the user removes it.
    std::string marker = staging + "/incompat/volatile";
    if (access(marker.c_str(), F_OK) == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the upper layer was used by a volatile mount (", marker,
          " exists); its contents may be incomplete: remove that directory to mount anyway"));
    }
    EmptyDirectory(staging);
    if (config.volatile_mode) {
      std::filesystem::create_directories(marker);
    }
    stack.staging_fd_ = open(staging.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (stack.staging_fd_ < 0) {
      return absl::InvalidArgumentError(absl::StrCat(staging, ": ", strerror(errno)));
    }
  }
  for (const std::string& path : config.lowers) {
    absl::StatusOr<Layer> lower = OpenLayer(path, "lowerdir");
    if (!lower.ok()) return lower.status();
    stack.layers_.push_back(*lower);
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
      prefix_(std::move(other.prefix_)) {
  other.layers_.clear();
  other.work_fd_ = -1;
  other.staging_fd_ = -1;
}

LayerStack::~LayerStack() {
  for (Layer& layer : layers_) close(layer.fd);
  if (work_fd_ >= 0) close(work_fd_);
  if (staging_fd_ >= 0) close(staging_fd_);
}

std::string LayerStack::StagingName() {
  return absl::StrCat("#lamina-", getpid(), "-", staging_counter_.fetch_add(1));
}

}  // namespace lamina::overlay

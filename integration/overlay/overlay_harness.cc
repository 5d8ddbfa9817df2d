#include "integration/overlay/overlay_harness.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

namespace lamina::testing {

void BuildLayer(const std::string& root, const std::vector<std::string>& spec) {
  mkdir(root.c_str(), 0755);
  for (const std::string& line : spec) {
    std::istringstream in(line);
    std::string kind, path, rest;
    in >> kind >> path;
    std::getline(in, rest);
    if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
    std::string full = root + "/" + path;
    std::filesystem::create_directories(std::filesystem::path(full).parent_path());
    if (kind == "d" || kind == "o") {
      mkdir(full.c_str(), 0755);
      if (kind == "o") setxattr(full.c_str(), "trusted.overlay.opaque", "y", 1, 0);
    } else if (kind == "f") {
      WriteFile(full, rest);
    } else if (kind == "l") {
      symlink(rest.c_str(), full.c_str());
    } else if (kind == "h") {
      if (link((root + "/" + rest).c_str(), full.c_str()) != 0) {
        ADD_FAILURE() << "cannot link " << rest << " as " << path;
      }
    } else if (kind == "x") {
      const size_t space = rest.find(' ');
      const std::string name = rest.substr(0, space);
      const std::string value = space == std::string::npos ? "" : rest.substr(space + 1);
      if (lsetxattr(full.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
        ADD_FAILURE() << "cannot set " << name << " on " << path;
      }
    } else if (kind == "w") {
      mknod(full.c_str(), S_IFCHR | 0, makedev(0, 0));
    } else {
      ADD_FAILURE() << "bad layer spec line: " << line;
    }
  }
}

std::string DescribeTree(const std::string& root) {
  std::vector<std::string> lines;
  std::error_code error;
  for (auto it = std::filesystem::recursive_directory_iterator(root, error);
       !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
    std::string path = it->path().string();
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    std::ostringstream line;
    line << path.substr(root.size()) << " mode=" << std::oct << st.st_mode << std::dec;
    if (S_ISREG(st.st_mode)) {
      line << " size=" << st.st_size << " nlink=" << st.st_nlink << " data=" << ReadFile(path);
    } else if (S_ISLNK(st.st_mode)) {
      line << " -> " << std::filesystem::read_symlink(path, error).string();
    }
    lines.push_back(line.str());
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

std::string Outcome(int rc) {
  if (rc >= 0) return "ok";
  const char* name = strerrorname_np(errno);
  return name != nullptr ? name : std::to_string(errno);
}

void OverlayPair::Mount(const std::vector<std::vector<std::string>>& lowers,
                        const std::vector<std::string>& upper, bool with_upper) {
  BuildLayers(lowers, upper, with_upper);
  MountBoth();
}

void OverlayPair::BuildLayers(const std::vector<std::vector<std::string>>& lowers,
                              const std::vector<std::string>& upper, bool with_upper) {
  lower_count_ = static_cast<int>(lowers.size());
  with_upper_ = with_upper;
  for (int s = 0; s < 2; ++s) {
    set_[s] = dir_.Subdir(s == 0 ? "lamina" : "kernel");
    for (int i = 0; i < lower_count_; ++i) {
      BuildLayer(set_[s] + "/lower" + std::to_string(i), lowers[static_cast<size_t>(i)]);
    }
    if (with_upper) {
      BuildLayer(set_[s] + "/upper", upper);
      mkdir((set_[s] + "/work").c_str(), 0755);
    }
  }
  lamina_mnt_ = dir_.Subdir("lamina-mnt");
  kernel_mnt_ = dir_.Subdir("kernel-mnt");
}

void OverlayPair::MountBoth() {
  MountLamina();
  MountKernel();
}

void OverlayPair::WatchLowers(int set) {
  for (int i = 0; i < lower_count_; ++i) {
    lowers_.Watch(set_[set] + "/lower" + std::to_string(i));
  }
}

void OverlayPair::MountLamina(int set) {
  WatchLowers(set);
  OverlayOptions options = lamina_options_;
  options.layers.lowers.clear();
  const std::string& base = set_[set];
  for (int i = 0; i < lower_count_; ++i) {
    options.layers.lowers.push_back(base + "/lower" + std::to_string(i));
  }
  if (with_upper_) {
    options.layers.upper = base + "/upper";
    options.layers.work = base + "/work";
  }
  auto fs = OverlayFs::Create(options);
  ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  fs_ = std::move(*fs);
  ServerOptions server_options;
  server_options.mount_options = {"fsname=lamina-test", "allow_other", "suid", "dev"};
  if (lamina_default_permissions_) server_options.mount_options.push_back("default_permissions");
  server_options.session.threads = 2;
  server_options.io_uring = lamina_io_uring_;
  auto server = FuseServer::Start(*fs_, lamina_mnt_, server_options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  server_ = std::move(*server);
}

void OverlayPair::UnmountLamina() {
  server_.reset();
  fs_.reset();
}

void OverlayPair::MountKernel() {
  WatchLowers(1);
  std::string lowerdir;
  for (int i = 0; i < lower_count_; ++i) {
    lowerdir += (i ? ":" : "") + set_[1] + "/lower" + std::to_string(i);
  }
  std::string data = "lowerdir=" + lowerdir;
  if (with_upper_) data += ",upperdir=" + set_[1] + "/upper,workdir=" + set_[1] + "/work";
  if (!kernel_options_.empty()) data += "," + kernel_options_;
  ASSERT_EQ(mount("overlay", kernel_mnt_.c_str(), "overlay", 0, data.c_str()), 0)
      << strerror(errno) << " mounting kernel overlay " << data;
  kernel_mounted_ = true;
}

void OverlayPair::UnmountKernel() {
  if (kernel_mounted_) umount2(kernel_mnt_.c_str(), MNT_DETACH);
  kernel_mounted_ = false;
}

void OverlayPair::MountKernelOnLaminaLayers(const std::string& options) {
  UnmountLamina();
  UnmountKernel();
  WatchLowers(0);
  std::string lowerdir;
  for (int i = 0; i < lower_count_; ++i) lowerdir += (i ? ":" : "") + lamina_lower(i);
  std::string data =
      "lowerdir=" + lowerdir + ",upperdir=" + lamina_upper() + ",workdir=" + set_[0] + "/work";
  if (!options.empty()) data += "," + options;
  ASSERT_EQ(mount("overlay", kernel_mnt_.c_str(), "overlay", 0, data.c_str()), 0)
      << strerror(errno) << " mounting kernel overlay on Lamina's layers";
  kernel_mounted_ = true;
}

void OverlayPair::MountLaminaOnKernelLayers() {
  UnmountLamina();
  UnmountKernel();
  MountLamina(/*set=*/1);
}

void OverlayPair::TearDown() {
  UnmountLamina();
  UnmountKernel();
  ExpectLowersUntouched();
}

void OverlayPair::ExpectSame(const std::function<std::string(const std::string& root)>& op,
                             const std::string& what) {
  std::string lamina = op(lamina_mnt_);
  std::string kernel = op(kernel_mnt_);
  EXPECT_EQ(lamina, kernel) << what << " differs from kernel overlayfs";
}

}  // namespace lamina::testing

#include "cmd/options.h"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "overlay/layers.h"
#include "overlay/privilege.h"

namespace lamina::cmd {
namespace {

// FUSE/VFS options the mount understands, passed through unchanged.
constexpr const char* kMountOptions[] = {"allow_other", "allow_root", "default_permissions",
                                         "ro",          "rw",         "suid",
                                         "nosuid",      "dev",        "nodev",
                                         "exec",        "noexec",     "atime",
                                         "noatime",     "relatime"};

bool IsMountOption(const std::string& option) {
  for (const char* known : kMountOptions) {
    if (option == known) return true;
  }
  return false;
}

absl::StatusOr<std::string> Absolute(const std::string& path, const char* what);
// A file the daemon will create: absolute without needing it to exist.
std::string AbsoluteFile(const std::string& path);

// Kernel overlayfs options we implement the default of, and refuse (rather
// than silently ignore) when asked for the rest.
absl::Status CheckOverlayFeature(const std::string& key, const std::string& value) {
  struct Feature {
    const char* key;
    std::vector<std::string> accepted;
  };
  static const Feature kFeatures[] = {
      {"redirect_dir", {"on", "follow", "off", "nofollow"}},
      {"index", {"on", "off"}},
      {"metacopy", {"off"}},
      {"nfs_export", {"off"}},
      {"xino", {"off", "auto", "on"}},
      {"uuid", {"off", "null", "auto", "on"}},
      {"fsync", {"auto", "strict", "volatile"}},
  };
  for (const Feature& feature : kFeatures) {
    if (key != feature.key) continue;
    for (const std::string& ok : feature.accepted) {
      if (value == ok) return absl::OkStatus();
    }
    return absl::InvalidArgumentError(
        absl::StrCat(key, "=", value, " is not supported by laminafs yet"));
  }
  return absl::NotFoundError(key);
}

// "0" or "1", as fuse-overlayfs' numeric switches are written.
absl::StatusOr<bool> ParseSwitch(const std::string& key, const std::string& value) {
  if (value == "0") return false;
  if (value == "1") return true;
  return absl::InvalidArgumentError(absl::StrCat(key, " must be 0 or 1, not '", value, "'"));
}

// fuse-overlayfs' own options. Those that tune fuse-overlayfs' machinery
// (fast_ino, writeback, threaded) have nothing to tune here and are
// accepted without effect; see docs/laminafs.1 for why each is honest.
// uidmapping=, gidmapping=, squash_to_uid=, squash_to_gid=; squash_to_root
// is folded in once all options are read.
absl::Status ApplyOwnerOption(const std::string& key, const std::string& value, MountCommand& out) {
  if (key == "uidmapping" || key == "gidmapping") {
    absl::StatusOr<std::vector<overlay::IdRange>> ranges = overlay::ParseIdRanges(value);
    if (!ranges.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(key, ": ", ranges.status().message()));
    }
    (key == "uidmapping" ? out.ids.uids : out.ids.gids) = *std::move(ranges);
    return absl::OkStatus();
  }
  if (key == "squash_to_uid" || key == "squash_to_gid") {
    std::optional<uint32_t> id = overlay::ParseId(value);
    if (!id) return absl::InvalidArgumentError(absl::StrCat("bad ", key, " '", value, "'"));
    (key == "squash_to_uid" ? out.ids.squash_uid : out.ids.squash_gid) = *id;
    return absl::OkStatus();
  }
  return absl::NotFoundError(key);
}

absl::Status ApplyFuseOverlayfsOption(const std::string& key, const std::string& value,
                                      bool has_value, MountCommand& out) {
  if (!has_value) {
    if (key == "squash_to_root") {
      out.squash_to_root = true;
    } else if (key == "static_nlink") {
      out.static_nlink = true;
    } else if (key == "ino32_t") {
      out.ino32 = true;
    } else if (key == "noacl") {
      out.posix_acl = false;
    } else {
      return absl::NotFoundError(key);
    }
    return absl::OkStatus();
  }
  absl::Status owner = ApplyOwnerOption(key, value, out);
  if (!absl::IsNotFound(owner)) return owner;
  if (key == "xattr_permissions") {
    if (value == "0") return absl::OkStatus();
    if (value == "1" || value == "2") {
      return absl::InvalidArgumentError(
          absl::StrCat("xattr_permissions=", value,
                       " (owners kept in xattrs) is not supported by laminafs yet"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("xattr_permissions must be 0, 1 or 2, not '", value, "'"));
  }
  if (key != "fast_ino" && key != "writeback" && key != "threaded" && key != "noxattrs") {
    return absl::NotFoundError(key);
  }
  absl::StatusOr<bool> on = ParseSwitch(key, value);
  if (!on.ok()) return on.status();
  if (key == "noxattrs") out.xattrs = !*on;
  return absl::OkStatus();
}

absl::Status ApplyOverlayOption(const std::string& key, const std::string& value, bool has_value,
                                MountCommand& out) {
  if (key == "lowerdir" && has_value) {
    absl::StatusOr<std::vector<std::string>> layers = SplitLowerdirs(value);
    if (!layers.ok()) return layers.status();
    out.lowerdirs.clear();
    for (const std::string& layer : *layers) {
      absl::StatusOr<std::string> path = Absolute(layer, "lowerdir");
      if (!path.ok()) return path.status();
      out.lowerdirs.push_back(*path);
    }
    return absl::OkStatus();
  }
  if ((key == "upperdir" || key == "workdir") && has_value) {
    absl::StatusOr<std::string> path = Absolute(value, key.c_str());
    if (!path.ok()) return path.status();
    (key == "upperdir" ? out.upperdir : out.workdir) = *path;
    return absl::OkStatus();
  }
  if (key == "volatile" && !has_value) {
    out.volatile_mode = true;
    return absl::OkStatus();
  }
  if (key == "userxattr" && !has_value) {
    out.userxattr = true;
    return absl::OkStatus();
  }
  absl::Status compat = ApplyFuseOverlayfsOption(key, value, has_value, out);
  if (!absl::IsNotFound(compat)) return compat;
  absl::Status feature = CheckOverlayFeature(key, value);
  if (feature.ok() && key == "fsync" && value == "volatile") out.volatile_mode = true;
  if (feature.ok() && key == "uuid") out.record_uuid = value == "auto" || value == "on";
  if (feature.ok() && key == "redirect_dir") {
    out.redirect_option = value;
    out.redirect_dir = value == "on";
    out.redirect_follow = value != "nofollow";
  }
  if (feature.ok() && key == "index") out.index = value == "on";
  return feature;
}

// `option` as split from the list, escapes kept (option_list.h).
absl::Status ApplyOption(const std::string& option, MountKind kind, MountCommand& out) {
  if (option == "relatime") {
    // The kernel's default for a new mount, which libfuse knows only as
    // "atime" (clear noatime): it refuses "relatime".
    out.mount_options.push_back("atime");
    out.noatime = false;
    return absl::OkStatus();
  }
  if (IsMountOption(option)) {
    if (option == "noatime" || option == "atime") out.noatime = option == "noatime";
    out.mount_options.push_back(option);
    return absl::OkStatus();
  }
  size_t eq = option.find('=');
  std::string key = option.substr(0, eq);
  // lowerdir= splits at unescaped colons before it unescapes.
  std::string raw_value = eq == std::string::npos ? "" : option.substr(eq + 1);
  std::string value = key == "lowerdir" ? raw_value : UnescapeOptionValue(raw_value);
  if (kind == MountKind::kOverlay) {
    absl::Status status = ApplyOverlayOption(key, value, eq != std::string::npos, out);
    if (!absl::IsNotFound(status)) return status;
  }
  if (eq != std::string::npos && key == "passthrough") {
    if (value == "on") {
      out.passthrough = PassthroughMode::kOn;
    } else if (value == "off") {
      out.passthrough = PassthroughMode::kOff;
    } else if (value == "auto") {
      out.passthrough = PassthroughMode::kAuto;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("passthrough must be on, off or auto, not '", value, "'"));
    }
  } else if (key == "io_uring" && (eq == std::string::npos || value == "on" || value == "off")) {
    out.io_uring = eq == std::string::npos || value == "on";
  } else if (eq != std::string::npos && key == "timeout") {
    double seconds;
    if (!absl::SimpleAtod(value, &seconds) || seconds < 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad timeout '", value, "'"));
    }
    out.timeout = seconds;
  } else if (eq != std::string::npos && key == "threads") {
    int threads;
    if (!absl::SimpleAtoi(value, &threads) || threads < 1 || threads > 1024) {
      return absl::InvalidArgumentError(absl::StrCat("bad threads '", value, "'"));
    }
    out.threads = threads;
  } else if (eq != std::string::npos && key == "max_threads") {
    int max_threads;
    if (!absl::SimpleAtoi(value, &max_threads) || max_threads < 1 || max_threads > 1024) {
      return absl::InvalidArgumentError(
          absl::StrCat("max_threads must be 1 to 1024, not '", value, "'"));
    }
    out.max_threads = max_threads;
  } else if (eq != std::string::npos && key == "busy_poll") {
    int microseconds;
    if (!absl::SimpleAtoi(value, &microseconds) || microseconds < 0 || microseconds > 10000) {
      return absl::InvalidArgumentError(
          absl::StrCat("busy_poll must be 0 to 10000 microseconds, not '", value, "'"));
    }
    out.busy_poll_us = microseconds;
  } else if (eq != std::string::npos && key == "max_nodes" && kind == MountKind::kPassthrough) {
    uint64_t max_nodes;
    if (!absl::SimpleAtoi(value, &max_nodes)) {
      return absl::InvalidArgumentError(absl::StrCat("bad max_nodes '", value, "'"));
    }
    out.max_nodes = max_nodes;
  } else if (eq != std::string::npos && key == "max_write") {
    // The kernel's floor is one page; the request buffers are sized for
    // at most the 1 MiB the kernel allows by default (256 pages).
    uint32_t bytes;
    if (!absl::SimpleAtoi(value, &bytes) || bytes < 4096 || bytes > (1U << 20)) {
      return absl::InvalidArgumentError(
          absl::StrCat("max_write must be 4096 to 1048576 bytes, not '", value, "'"));
    }
    out.max_write = bytes;
  } else if (eq != std::string::npos && key == "subtype") {
    // Shown in /proc/self/mountinfo as fuse.NAME: kept to characters that
    // need no escaping there and that tools splitting types at '.' expect.
    if (value.size() > 64 || value.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                     "0123456789_-") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "subtype must be at most 64 letters, digits, '_' or '-', not '", value, "'"));
    }
    out.subtype = value;
  } else if (eq != std::string::npos && key == "fsname" && !value.empty()) {
    out.fsname = value;  // escaped again for the mount (JoinMountOptions)
  } else if (eq != std::string::npos && key == "nofile") {
    // Below a few hundred the daemon's own descriptors (a channel per
    // worker, what a copy-up opens) would not fit beside the budgets.
    uint64_t nofile;
    if (!absl::SimpleAtoi(value, &nofile) || nofile < kMinNofile || nofile > (uint64_t{1} << 30)) {
      return absl::InvalidArgumentError(
          absl::StrCat("nofile must be ", kMinNofile, " to 1073741824, not '", value, "'"));
    }
    out.nofile = nofile;
  } else if (eq != std::string::npos && key == "listing_memory" && kind == MountKind::kOverlay) {
    uint64_t bytes;
    if (!absl::SimpleAtoi(value, &bytes)) {
      return absl::InvalidArgumentError(absl::StrCat("bad listing_memory '", value, "'"));
    }
    out.listing_memory = bytes;
  } else if (eq != std::string::npos && (key == "log" || key == "stats") && !value.empty()) {
    // Absolute now: the daemon leaves the working directory.
    (key == "log" ? out.log_file : out.stats_file) = AbsoluteFile(value);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown option '", option, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Absolute(const std::string& path, const char* what) {
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", path, "': ", std::string(strerror(errno))));
  }
  return std::string(resolved);
}

std::string AbsoluteFile(const std::string& path) {
  if (path.front() == '/') return path;
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  return absl::StrCat(cwd, "/", path);
}

// The mount must not land inside its own upper or work directory, nor
// below a lower: the daemon would meet its own mount while walking that
// layer and the view would contain itself. Mounting over a lower itself is
// fine (as with the kernel): the daemon holds the layer open from before.
absl::Status CheckMountpoint(const MountCommand& command) {
  const std::string& mountpoint = command.mountpoint;
  for (const auto& [dir, role] :
       {std::pair{command.upperdir, "upperdir"}, {command.workdir, "workdir"}}) {
    if (!dir.empty() && overlay::PathIsWithin(mountpoint, dir)) {
      return absl::InvalidArgumentError(
          absl::StrCat("mountpoint ", mountpoint, " is inside ", role, " ", dir));
    }
  }
  for (const std::string& lower : command.lowerdirs) {
    if (mountpoint != lower && overlay::PathIsWithin(mountpoint, lower)) {
      return absl::InvalidArgumentError(absl::StrCat("mountpoint ", mountpoint,
                                                     " is inside lowerdir ", lower,
                                                     ": the overlay would contain itself"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<MountCommand> ParseMountCommand(const std::vector<std::string>& args,
                                               MountKind kind) {
  MountCommand out;
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-f") {
      out.foreground = true;
    } else if (arg == "-d") {
      out.debug = true;
    } else if (arg == "-o" || (arg.size() > 2 && arg.rfind("-o", 0) == 0)) {
      std::string list = arg == "-o" ? (i + 1 < args.size() ? args[++i] : "") : arg.substr(2);
      if (list.empty()) return absl::InvalidArgumentError("-o needs an option list");
      for (const std::string& option : SplitOptionList(list)) {
        absl::Status status = ApplyOption(option, kind, out);
        if (!status.ok()) return status;
      }
    } else if (!arg.empty() && arg[0] == '-') {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", arg, "'"));
    } else {
      positional.push_back(arg);
    }
  }
  if (kind == MountKind::kOverlay) {
    // `mount -t fuse.laminafs SOURCE MOUNTPOINT` passes a source, ignored
    // like overlayfs ignores its device name.
    if (positional.size() == 2) positional.erase(positional.begin());
    if (positional.size() != 1) return absl::InvalidArgumentError("expected MOUNTPOINT");
    if (out.lowerdirs.empty()) return absl::InvalidArgumentError("no lowerdir= given");
    if (out.upperdir.empty() != out.workdir.empty()) {
      return absl::InvalidArgumentError("upperdir and workdir go together");
    }
    // The kernel's rules for userxattr: it turns redirects off
    // (redirect_dir=nofollow) and the index off, and refuses another explicit
    // value of either as conflicting (the index needs the trusted namespace).
    // Without the privilege for trusted.* the option is implied, as the
    // kernel requires it of such mounts.
    const bool implied = !out.userxattr && !overlay::MayUseTrustedXattrs();
    if (out.userxattr || implied) {
      const char* why = implied ? " (implied: not root)" : "";
      if (out.index == true) {
        return absl::InvalidArgumentError(absl::StrCat("index=on conflicts with userxattr", why));
      }
      if (!out.redirect_option.empty() && out.redirect_option != "nofollow") {
        return absl::InvalidArgumentError(absl::StrCat("conflicting options: userxattr", why,
                                                       ",redirect_dir=", out.redirect_option));
      }
      out.userxattr = true;
      out.redirect_dir = false;
      out.redirect_follow = false;
    }
    // squash_to_uid= and squash_to_gid= take precedence over squash_to_root.
    if (out.squash_to_root) {
      out.ids.squash_uid = out.ids.squash_uid.value_or(0);
      out.ids.squash_gid = out.ids.squash_gid.value_or(0);
    }
  } else {
    if (positional.size() != 2) {
      return absl::InvalidArgumentError("expected SOURCE and MOUNTPOINT");
    }
    absl::StatusOr<std::string> source = Absolute(positional[0], "source");
    if (!source.ok()) return source.status();
    out.source = *source;
  }
  absl::StatusOr<std::string> mountpoint = Absolute(positional.back(), "mountpoint");
  if (!mountpoint.ok()) return mountpoint.status();
  out.mountpoint = *mountpoint;
  if (kind == MountKind::kOverlay) {
    absl::Status placed = CheckMountpoint(out);
    if (!placed.ok()) return placed;
  }
  return out;
}

}  // namespace lamina::cmd

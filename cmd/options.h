// Command-line options of `laminafs` mount subcommands.
//
//   laminafs [-f] [-d] -o lowerdir=A:B,upperdir=U,workdir=W[,OPT...] MOUNTPOINT
//   laminafs passthrough [-f] [-d] [-o OPT[,OPT...]] SOURCE MOUNTPOINT
//
// -o takes FUSE mount options (handed to the mount) and Lamina's own
// options (consumed here), in kernel overlayfs' syntax (option_list.h:
// `\,` and `\:` escape commas and colons in paths). Paths are made absolute
// at parse time, before the daemon forks or changes directory.

#ifndef LAMINA_CMD_OPTIONS_H_
#define LAMINA_CMD_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmd/option_list.h"
#include "overlay/id_map.h"
#include "passthrough/passthrough_fs.h"

namespace lamina::cmd {

enum class MountKind { kOverlay, kPassthrough };

// The fewest descriptors -o nofile= may leave the daemon: an eighth of it
// is the daemon's own reserve (core/descriptor_budget.h), which must hold
// a few workers' channels and what their requests open.
inline constexpr uint64_t kMinNofile = 1024;

struct MountCommand {
  bool foreground = false;  // -f: no fork, log to stderr
  bool debug = false;       // -d: trace every request
  // FUSE options passed to the mount (allow_other, ro, nosuid, ...).
  std::vector<std::string> mount_options;
  // -o noatime (the last of noatime, atime and relatime counts): reads
  // through the mount move no access times in the layers either.
  bool noatime = false;
  PassthroughMode passthrough = PassthroughMode::kAuto;
  std::optional<double> timeout;  // -o timeout=SECONDS
  int threads = 0;                // 0: the session's default
  int max_threads = 0;            // -o max_threads=N; 0: the session's default
  // -o busy_poll=MICROSECONDS: longest poll for the next request before a
  // worker sleeps (0: never); unset: the session's default.
  std::optional<int> busy_poll_us;
  bool io_uring = false;   // -o io_uring: FUSE-over-io_uring when the kernel offers it
  std::string log_file;    // daemon log; syslog when empty
  std::string stats_file;  // stats=: request statistics as JSON, on SIGUSR1 and at exit
  std::string source;      // absolute (passthrough)
  std::string mountpoint;  // absolute
  // -o max_nodes=N (passthrough): nodes kept before the kernel is asked to
  // forget some; 0 means no limit, unset the filesystem's default.
  std::optional<size_t> max_nodes;
  // -o max_write=BYTES: the largest WRITE request the kernel may send.
  std::optional<uint32_t> max_write;
  // -o subtype=NAME: the mount's type is fuse.NAME; empty: plain "fuse"
  // (what test suites that identify a FUSE mount by its type expect).
  std::string subtype = "laminafs";
  // -o fsname=NAME: the mount's source in /proc/self/mounts; empty: the
  // default (laminafs for the overlay, the source for the passthrough).
  std::string fsname;
  // -o nofile=N: the descriptors the daemon plans with and may hold (its
  // soft RLIMIT_NOFILE, at most the hard one); unset: the hard limit.
  std::optional<size_t> nofile;
  // -o listing_memory=BYTES (overlay): what directory listings may take
  // together; unset: OverlayOptions' default, 0: no limit.
  std::optional<size_t> listing_memory;

  // Overlay layers (absolute), lowers top first; upper and work optional.
  std::vector<std::string> lowerdirs;
  std::string upperdir;
  std::string workdir;
  bool volatile_mode = false;  // volatile, fsync=volatile
  bool record_uuid = true;     // uuid=auto|on (default); off|null record none
  // redirect_dir=on (the default) records renames of merged directories;
  // follow and off only follow records, nofollow neither (the kernel's
  // meanings, with its default redirect_always_follow). userxattr, given or
  // implied (the daemon may not use trusted.*), means nofollow, as on the
  // kernel, and refuses any other explicit value.
  bool redirect_dir = true;
  bool redirect_follow = true;
  std::string redirect_option;  // the value given, empty if none
  bool userxattr = false;       // given, or implied by the daemon's credentials
  // index=on|off; unset means on (lower hard links stay linked across
  // copy-up; the kernel's default is off). Off is the kernel's index=off.
  std::optional<bool> index;

  // fuse-overlayfs' options that change what the merged view shows.
  bool static_nlink = false;  // directories report st_nlink 1
  bool posix_acl = true;      // noacl: permission checks use mode bits only
  bool ino32 = false;         // ino32_t: inode numbers folded to 32 bits
  bool xattrs = true;         // noxattrs=1: every xattr request answers ENOSYS
  // uidmapping=, gidmapping=, squash_to_root, squash_to_uid=, squash_to_gid=
  // (squash_to_root already folded into squash_uid/squash_gid; overflow ids
  // left at their defaults).
  overlay::IdMapConfig ids;
  bool squash_to_root = false;
};

// Parses the arguments after the subcommand name. Errors are usage errors
// (the message names the offending argument); the caller exits with 2.
absl::StatusOr<MountCommand> ParseMountCommand(const std::vector<std::string>& args,
                                               MountKind kind = MountKind::kPassthrough);

}  // namespace lamina::cmd

#endif  // LAMINA_CMD_OPTIONS_H_

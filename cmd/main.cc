// laminafs: Lamina's command-line entry point, one subcommand per layer.

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cmd/overlay_command.h"
#include "cmd/passthrough_command.h"
#include "core/fuse_abi.h"
#include "core/fuse_mount.h"

namespace {

void Usage(FILE* out) {
  std::fputs(
      "usage: laminafs [-f] [-d] -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR][,OPT...]"
      " MOUNTPOINT\n"
      "       laminafs passthrough [-f] [-d] [-o OPT,...] SOURCE MOUNTPOINT\n"
      "       laminafs --help | --version\n"
      "\n"
      "  -f                    stay in the foreground, logging to stderr\n"
      "  -d                    trace every request (implies debug logging)\n"
      "overlay options:\n"
      "  lowerdir=A:B:...      read-only layers, top first (in paths \\: is a colon, \\, a\n"
      "                        comma, \\\\ a backslash)\n"
      "  upperdir=DIR          writable layer (without it the overlay is read-only)\n"
      "  workdir=DIR           scratch directory on the upper's filesystem\n"
      "  volatile              never sync the upper; leaves work/work/incompat/volatile\n"
      "  fsync=auto|strict|volatile  when to sync the upper (volatile = volatile)\n"
      "  userxattr             keep overlay metadata in user.overlay.* xattrs\n"
      "  redirect_dir=on|follow|off|nofollow  record directory renames (on) or answer\n"
      "                        EXDEV; nofollow (the default with userxattr) also\n"
      "                        refuses to follow recorded ones (EPERM)\n"
      "  index=on|off          on (default): lower hard links stay one file after copy-up\n"
      "                        (work/index, as the kernel's index=on); off: only the name used\n"
      "  metacopy=off, nfs_export=off, xino=off|auto|on, uuid=...\n"
      "                        accepted kernel options (other values are refused)\n"
      "fuse-overlayfs options:\n"
      "  uidmapping=FROM:TO:N[:FROM:TO:N...], gidmapping=...\n"
      "                        ids FROM.. stored in the layers show as TO.. (and back on\n"
      "                        create and chown); unmapped ids show as 65534\n"
      "  squash_to_root        every owner shows as 0:0\n"
      "  squash_to_uid=N, squash_to_gid=N  every owner shows as N (beats squash_to_root)\n"
      "  static_nlink          directories report a link count of 1\n"
      "  ino32_t               inode numbers folded into 32 bits\n"
      "  noxattrs=0|1          1: every xattr call fails with EOPNOTSUPP\n"
      "  noacl                 WARNING, weakens checks: permissions from mode bits only, an\n"
      "                        ACL entry that denies a user is ignored (logged at mount)\n"
      "  fast_ino=0|1, threaded=0|1, writeback=0|1, xattr_permissions=0\n"
      "                        accepted for compatibility, no effect (see laminafs(1))\n"
      "mount options:\n"
      "  allow_other, allow_root, default_permissions, ro, rw, [no]suid, [no]dev,\n"
      "  [no]exec, [no]atime, relatime\n"
      "                        passed to the mount (as root the overlay adds allow_other,\n"
      "                        suid and dev unless told otherwise); default_permissions is\n"
      "                        always on: the kernel checks each access as for the layers\n"
      "  subtype=NAME          the mount's type is fuse.NAME (default laminafs; empty:\n"
      "                        plain fuse)\n"
      "  fsname=NAME           the mount's source in /proc/self/mounts (default: laminafs,\n"
      "                        or the passthrough's SOURCE)\n"
      "lamina options:\n"
      "  passthrough=on|off|auto   kernel FUSE passthrough for file data (default auto)\n"
      "  timeout=SECONDS       how long the kernel caches names and attributes\n"
      "  threads=N             worker threads kept ready (default: cores, at most 8)\n"
      "  max_threads=N         most worker threads; more start while slow requests hold\n"
      "                        all the others, and go again after (default 64)\n"
      "  busy_poll=USEC        longest a free worker polls for the next request before\n"
      "                        sleeping (default 50, adaptive; 0 = never)\n"
      "  io_uring[=on|off]     serve through FUSE-over-io_uring, one queue per CPU, when\n"
      "                        the kernel offers it (as root: echo 1 >\n"
      "                        /sys/module/fuse/parameters/enable_uring); else /dev/fuse\n"
      "  max_write=BYTES       largest write request the kernel sends (4096 to 1048576)\n"
      "  max_nodes=N           passthrough: inodes to keep before asking the kernel to\n"
      "                        forget unused ones (bounds open descriptors; 0 = no limit)\n"
      "  nofile=N              descriptors the daemon may hold (default: its hard\n"
      "                        RLIMIT_NOFILE); each user may keep open files worth a\n"
      "                        quarter of an eighth of them (root half), see laminafs(1)\n"
      "  listing_memory=BYTES  overlay: memory directory listings may take (default\n"
      "                        268435456; a user's open directories a quarter, root half)\n"
      "  log=FILE              daemon log (default: syslog)\n"
      "  stats=FILE            per-request statistics as JSON, written on SIGUSR1 and at\n"
      "                        unmount\n",
      out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    Usage(stderr);
    return 2;
  }
  std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "passthrough") return lamina::cmd::RunPassthrough(args);
  if (command == "-h" || command == "--help") {
    Usage(stdout);
    return 0;
  }
  if (command == "-V" || command == "--version") {
    std::printf(
        "laminafs %s\nFUSE protocol 7.%u (kernels from 7.%u are served)\nlibfuse %s (mounting "
        "only)\n",
        LAMINA_VERSION, lamina::abi::kKernelMinorVersion, lamina::abi::kOldestMinorVersion,
        lamina::FuseMount::LibfuseVersion().c_str());
    return 0;
  }
  // Everything else is the overlay, in the syntax of fuse-overlayfs.
  return lamina::cmd::RunOverlay(std::vector<std::string>(argv + 1, argv + argc));
}

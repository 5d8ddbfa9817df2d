// laminafs: Lamina's command-line entry point, one subcommand per layer.

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cmd/overlay_command.h"
#include "cmd/passthrough_command.h"

namespace {

void Usage() {
  std::fprintf(stderr,
               "usage: laminafs [-f] [-d] -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR]"
               "[,OPT...] MOUNTPOINT\n"
               "       laminafs passthrough [-f] [-d] [-o OPT,...] SOURCE MOUNTPOINT\n"
               "\n"
               "  -f   stay in the foreground, logging to stderr\n"
               "  -d   trace every request (debug logging)\n"
               "  -o   overlay: lowerdir=, upperdir=, workdir=, volatile, userxattr, fsync=,\n"
               "       redirect_dir=on|off, index=off, metacopy=off, xino=\n"
               "  -o   allow_other, allow_root, default_permissions, ro, [no]suid, [no]dev,\n"
               "       [no]exec, [no]atime, passthrough=on|off|auto, timeout=SECONDS,\n"
               "       threads=N, log=FILE\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    Usage();
    return 2;
  }
  std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "passthrough") return lamina::cmd::RunPassthrough(args);
  if (command == "-h" || command == "--help") {
    Usage();
    return 0;
  }
  // Everything else is the overlay, in the syntax of fuse-overlayfs.
  return lamina::cmd::RunOverlay(std::vector<std::string>(argv + 1, argv + argc));
}

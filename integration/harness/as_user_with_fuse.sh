#!/usr/bin/env bash
# Runs a command as a non-root user who may open /dev/fuse, without touching
# the host's device node (mode 0600 here; a stock Debian host has 0666): in
# a private mount namespace, a 0666 copy of the node on a tmpfs at DEVDIR is
# bound over /dev/fuse, then the command runs as USER (its own group, no
# supplementary groups) for at most SECONDS.
#   as_user_with_fuse.sh DEVDIR USER SECONDS COMMAND [ARG...]
set -euo pipefail
devdir=$1 user=$2 seconds=$3
shift 3
mkdir -p "$devdir"
exec unshare -m --propagation private bash -euo pipefail -c '
  devdir=$1 user=$2 seconds=$3
  shift 3
  mount -t tmpfs tmpfs "$devdir"
  mknod -m 666 "$devdir/fuse" c 10 229
  mount --bind "$devdir/fuse" /dev/fuse
  exec timeout "$seconds" setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups -- "$@"
' _ "$devdir" "$user" "$seconds" "$@"

#!/usr/bin/env bash
# An unprivileged user mounts, uses and unmounts a Lamina filesystem through
# fusermount3. The host's /dev/fuse is root-only here, so the test gives the
# user a private copy of the device node inside its own mount namespace
# instead of changing the host. Usage: unprivileged_mount.sh LAMINA_MEMFS
set -euo pipefail
memfs=$1
as_user=$(cd "$(dirname "$0")/../harness" && pwd)/as_user_with_fuse.sh
user=nobody
work=$(mktemp -d /tmp/lamina-unpriv-XXXXXX)
chmod 755 "$work"
trap 'umount -l "$work/mnt" 2>/dev/null || true; pkill -KILL -f "lamina-memfs $work/mnt" || true; rm -rf "$work"' EXIT
mkdir "$work/dev" "$work/mnt" "$work/home"
chown "$user" "$work/mnt" "$work/home"

"$as_user" "$work/dev" "$user" 60 bash -euo pipefail -c "
  work=\$1; memfs=\$2
  \"\$memfs\" \"\$work/mnt\" > \"\$work/home/log\" 2>&1 &
  daemon=\$!
  for i in \$(seq 100); do grep -q serving \"\$work/home/log\" && break; sleep 0.05; done
  grep -q serving \"\$work/home/log\" || { cat \"\$work/home/log\"; exit 1; }
  grep -q \" \$work/mnt fuse.lamina-memfs \" /proc/self/mounts
  test \"\$(cat \"\$work/mnt/hello.txt\")\" = \"Hello from Lamina's FUSE core!\"
  echo written > \"\$work/mnt/new\"
  test \"\$(stat -c %U \"\$work/mnt/new\")\" = nobody
  fusermount3 -u \"\$work/mnt\"
  wait \$daemon
  ! grep -q \" \$work/mnt \" /proc/self/mounts
" _ "$work" "$memfs"
# Nothing was written to the directory under the mount.
test -z "$(ls -A "$work/mnt")"
echo "unprivileged mount: ok"

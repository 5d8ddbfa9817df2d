#!/usr/bin/env bash
# An unprivileged user mounts, uses and unmounts a Lamina filesystem through
# fusermount3. The host's /dev/fuse is root-only here, so the test gives the
# user a private copy of the device node inside its own mount namespace
# instead of changing the host. Usage: unprivileged_mount.sh LAMINA_MEMFS
set -euo pipefail
memfs=$1
user=nobody
work=$(mktemp -d /tmp/lamina-unpriv-XXXXXX)
chmod 755 "$work"
trap 'umount -l "$work/mnt" 2>/dev/null || true; pkill -KILL -f "lamina-memfs $work/mnt" || true; rm -rf "$work"' EXIT
mkdir "$work/dev" "$work/mnt" "$work/home"
chown "$user" "$work/mnt" "$work/home"

unshare -m --propagation private bash -euo pipefail -c '
  work=$1; memfs=$2; user=$3
  mount -t tmpfs tmpfs "$work/dev"
  mknod -m 666 "$work/dev/fuse" c 10 229
  mount --bind "$work/dev/fuse" /dev/fuse
  setpriv --reuid="$user" --regid=nogroup --clear-groups bash -euo pipefail -c "
    work=\$1; memfs=\$2
    \"\$memfs\" \"\$work/mnt\" > \"\$work/home/log\" 2>&1 &
    daemon=\$!
    for i in \$(seq 100); do grep -q serving \"\$work/home/log\" && break; sleep 0.05; done
    grep -q serving \"\$work/home/log\" || { cat \"\$work/home/log\"; exit 1; }
    grep -q \" \$work/mnt fuse.lamina-memfs \" /proc/self/mounts
    test \"\$(cat \"\$work/mnt/hello.txt\")\" = \"Hello from Lamina'"'"'s FUSE core!\"
    echo written > \"\$work/mnt/new\"
    test \"\$(stat -c %U \"\$work/mnt/new\")\" = nobody
    fusermount3 -u \"\$work/mnt\"
    wait \$daemon
    ! grep -q \" \$work/mnt \" /proc/self/mounts
  " _ "$work" "$memfs"
' _ "$work" "$memfs" "$user"
# Nothing was written to the directory under the mount.
test -z "$(ls -A "$work/mnt")"
echo "unprivileged mount: ok"

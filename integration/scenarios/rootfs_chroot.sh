#!/usr/bin/env bash
# A real root filesystem on Lamina: a cached Debian bookworm minbase tree is
# the lower layer of a laminafs overlay with an empty upper; a chroot with
# /proc, /sys and /dev bound runs apt-get update and install (a compiler,
# git, python3), builds and runs a C program, dpkg --verify, git
# init/commit/gc/fsck, Python's tempfile, rm -rf /usr/share/doc and a rename
# of a lower directory. Then: unbind, unmount, remount, same view; kernel
# overlayfs on the same upper shows it too.
#   rootfs_chroot.sh LAMINAFS                  as root (what CI runs, label "long")
#   rootfs_chroot.sh LAMINAFS --unprivileged   the same, as far as it goes, for a
#                                              non-root user inside unshare -Urm
# The tree is built once with debootstrap and cached (rootfs_common.sh).
set -euo pipefail
laminafs=$(realpath "$1")
mode=${2:-root}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/rootfs_common.sh"

t0=$(date +%s)
rootfs_prepare
t_prepared=$(date +%s)

work=$(mktemp -d /tmp/lamina-rootfs-XXXXXX)
chmod 755 "$work"
mnt=$work/root
daemon=""
unbind() {
  local m
  for m in dev sys proc; do
    if mountpoint -q "$mnt/$m" 2>/dev/null; then umount -R -l "$mnt/$m" || true; fi
  done
}
cleanup() {
  unbind
  if mountpoint -q "$mnt" 2>/dev/null; then umount -l "$mnt" || true; fi
  if [[ -n "$daemon" ]] && kill -0 "$daemon" 2>/dev/null; then
    sleep 1
    kill -KILL "$daemon" 2>/dev/null || true
  fi
  if mountpoint -q "$work/kernel" 2>/dev/null; then umount -l "$work/kernel" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/upper" "$work/work" "$mnt" "$work/kernel" "$work/kwork"

# Starts the daemon in the foreground (so its pid is ours) and waits for the mount.
mount_lamina() {
  "$laminafs" -f -o "lowerdir=$rootfs_tree,upperdir=$work/upper,workdir=$work/work" "$mnt" \
    >> "$work/daemon.log" 2>&1 &
  daemon=$!
  for _ in $(seq 200); do
    grep -q " $mnt fuse" /proc/mounts && return 0
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.05
  done
  echo "rootfs: laminafs did not mount" >&2
  cat "$work/daemon.log" >&2
  return 1
}
unmount_lamina() {
  umount "$mnt"
  for _ in $(seq 200); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$daemon" 2>/dev/null; then echo "rootfs: daemon did not exit" >&2; return 1; fi
  wait "$daemon" || { echo "rootfs: daemon exited with $?" >&2; return 1; }
  daemon=""
}
# Everything that identifies the tree: type, mode, size and link count of
# non-directories, link targets, and a digest of every regular file.
listing() {
  (cd "$1" && find . -xdev \( -type d -printf '%p d %m %U:%G\n' \) -o \
     -printf '%p %y %m %U:%G %s %n %l\n' | LC_ALL=C sort)
  (cd "$1" && find . -xdev -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum)
}

# The workload, run inside the chroot. Every step must succeed.
read -r -d '' workload <<'EOF' || true
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
step() { echo "rootfs: --- $*"; }
step apt-get update
apt-get update -qq
step apt-get install
apt-get install -y -qq --no-install-recommends gcc libc6-dev git python3 > /tmp/apt.log
step compile and run a C program
mkdir -p /src && cat > /src/hello.c <<'C'
#include <stdio.h>
#include <string.h>
int main(void) {
  char buf[64];
  FILE* f = fopen("/src/out.txt", "w+");
  fprintf(f, "hello from lamina\n");
  rewind(f);
  if (!fgets(buf, sizeof buf, f)) return 1;
  fclose(f);
  fputs(buf, stdout);
  return strcmp(buf, "hello from lamina\n") != 0;
}
C
gcc -O2 -Wall -o /src/hello /src/hello.c
test "$(/src/hello)" = "hello from lamina"
step dpkg --verify
out=$(dpkg --verify 2>&1 || true)
if [ -n "$out" ]; then echo "$out"; echo "dpkg --verify is not clean"; exit 1; fi
step git init, commit, gc, fsck
git config --global user.email ci@lamina.invalid
git config --global user.name ci
git config --global init.defaultBranch main
rm -rf /src/repo && git init -q /src/repo && cd /src/repo
for i in $(seq 50); do echo "line $i" > "file$i"; git add "file$i"; git commit -qm "commit $i"; done
git mv file1 renamed && git commit -qm rename
git gc -q --aggressive
git fsck --full --strict
test "$(git rev-list --count HEAD)" = 51
cd /
step python tempfile
python3 - <<'PY'
import os, tempfile
with tempfile.TemporaryFile() as f:          # O_TMPFILE, or create and unlink
    f.write(b"x" * 200000); f.seek(0); assert f.read() == b"x" * 200000
with tempfile.NamedTemporaryFile(dir="/var/tmp", delete=False) as f:
    f.write(b"named"); f.flush(); os.unlink(f.name)   # unlinked while open
    f.seek(0); assert f.read() == b"named"
fd, path = tempfile.mkstemp(); os.unlink(path)
os.write(fd, b"abc"); os.lseek(fd, 0, 0); assert os.read(fd, 3) == b"abc"; os.close(fd)
print("tempfile ok")
PY
step rm -rf /usr/share/doc
rm -rf /usr/share/doc
test ! -e /usr/share/doc
step rename a lower directory
mv /usr/share/man /usr/share/man2
test -d /usr/share/man2/man1 && test ! -e /usr/share/man
echo "rootfs: workload ok"
EOF

bind_system() {
  mount -t proc proc "$mnt/proc"
  mount --rbind /sys "$mnt/sys" && mount --make-rslave "$mnt/sys"
  mount --rbind /dev "$mnt/dev" && mount --make-rslave "$mnt/dev"
}

if [[ "$mode" == root ]]; then
  mount_lamina
  bind_system
  cp /etc/resolv.conf "$mnt/etc/resolv.conf"
  t_mounted=$(date +%s)
  chroot "$mnt" /bin/bash -c "$workload"
  t_workload=$(date +%s)
  unbind
  listing "$mnt" > "$work/before"
  unmount_lamina
  test -z "$(ls -A "$work/work/work" 2>/dev/null)" || { echo "rootfs: work/work not empty" >&2; exit 1; }
  mount_lamina
  listing "$mnt" > "$work/after"
  if ! diff -q "$work/before" "$work/after" > /dev/null; then
    echo "rootfs: the view changed across a remount:" >&2
    diff "$work/before" "$work/after" | head -40 >&2
    exit 1
  fi
  test "$(chroot "$mnt" /src/hello)" = "hello from lamina"
  unmount_lamina
  # The upper as kernel overlayfs reads it (read-only: nothing written).
  mount -t overlay overlay -o "ro,lowerdir=$rootfs_tree,upperdir=$work/upper,workdir=$work/kwork" \
    "$work/kernel"
  listing "$work/kernel" > "$work/kernel-view"
  umount "$work/kernel"
  if ! diff -q "$work/before" "$work/kernel-view" > /dev/null; then
    echo "rootfs: kernel overlayfs sees the upper otherwise:" >&2
    diff "$work/before" "$work/kernel-view" | head -40 >&2
    exit 1
  fi
  t_end=$(date +%s)
  echo "rootfs: files in view: $(grep -c '^\./' "$work/before")," \
       "upper: $(du -sh "$work/upper" | cut -f1)"
  echo "rootfs: prepare $((t_prepared - t0)) s, mount+bind $((t_mounted - t_prepared)) s," \
       "workload $((t_workload - t_mounted)) s, remount+compare $((t_end - t_workload)) s," \
       "total $((t_end - t0)) s"
  echo "rootfs chroot: ok"
  exit 0
fi

# --unprivileged: a non-root user with its own user and mount namespace.
# The host's /dev/fuse is root-only, so (as in core/unprivileged_mount.sh)
# the user gets a private 0666 copy of the node in a private mount
# namespace. The lower tree stays owned by the host's root, which the user
# namespace does not map: files show as nobody and cannot be changed, so
# the steps that modify system files are expected to fail; each step's
# outcome is reported rather than required.
user=nobody
chown "$user" "$work/upper" "$work/work" "$mnt" "$work"
mkdir -p "$work/dev" && chown "$user" "$work/dev"
unshare -m --propagation private bash -euo pipefail -c '
  work=$1; laminafs=$2; tree=$3; user=$4; workload=$5
  mount -t tmpfs tmpfs "$work/dev"
  mknod -m 666 "$work/dev/fuse" c 10 229
  mount --bind "$work/dev/fuse" /dev/fuse
  setpriv --reuid="$user" --regid=nogroup --clear-groups -- \
    unshare -Urm --propagation private bash -uo pipefail -c "
      work=\$1; laminafs=\$2; tree=\$3; workload=\$4; mnt=\$work/root
      report() { echo \"rootfs-unprivileged: \$1: \$2\"; }
      \"\$laminafs\" -f -o lowerdir=\$tree,upperdir=\$work/upper,workdir=\$work/work \$mnt \
        > \$work/daemon.log 2>&1 &
      daemon=\$!
      for i in \$(seq 200); do grep -q \" \$mnt fuse\" /proc/mounts && break; sleep 0.05; done
      if ! grep -q \" \$mnt fuse\" /proc/mounts; then
        report mount FAIL; cat \$work/daemon.log; exit 1
      fi
      report mount ok
      mount --rbind /proc \$mnt/proc && mount --rbind /sys \$mnt/sys &&
        mount --rbind /dev \$mnt/dev && report bind ok || report bind FAIL
      cp /etc/resolv.conf \$mnt/etc/resolv.conf 2>/dev/null && report resolv.conf ok ||
        report resolv.conf FAIL
      chroot \$mnt /bin/true && report chroot ok || report chroot FAIL
      # Each step on its own, so one failure does not hide the rest.
      echo \"\$workload\" | awk \"/^step /{n++} {print > (\\\"\$work/step\\\" n)}\"
      for f in \$(ls \$work/step* | sort -V); do
        name=\$(head -1 \$f | sed \"s/^step //\")
        [ \"\$name\" = \"\$(head -1 \$f)\" ] && continue
        if timeout 300 chroot \$mnt /bin/bash -c \"set -eo pipefail; export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root; step() { :; }; \$(cat \$f)\" \
             > \$work/out 2>&1; then
          report \"\$name\" ok
        else
          report \"\$name\" \"FAIL: \$(tail -2 \$work/out | tr \"\\n\" \" \")\"
        fi
      done
      umount -R -l \$mnt/proc \$mnt/sys \$mnt/dev 2>/dev/null
      umount \$mnt && report unmount ok || report unmount FAIL
      for i in \$(seq 100); do kill -0 \$daemon 2>/dev/null || break; sleep 0.05; done
      kill -0 \$daemon 2>/dev/null && { report daemon-exit FAIL; kill -KILL \$daemon; } ||
        report daemon-exit ok
    " _ "$work" "$laminafs" "$tree" "$workload"
' _ "$work" "$laminafs" "$rootfs_tree" "$user" "$workload"
echo "rootfs unprivileged: finished in $(( $(date +%s) - t0 )) s"

#!/usr/bin/env bash
# A real root filesystem on Lamina: a cached Debian bookworm minbase tree is
# the lower layer of a laminafs overlay with an empty upper; a chroot with
# /proc, /sys and /dev bound runs apt-get update and install (a compiler,
# git, python3), builds and runs a C program, dpkg --verify, git
# init/commit/gc/fsck, Python's tempfile, rm -rf /usr/share/doc and a rename
# of a lower directory. Then: unbind, unmount, remount, same view; kernel
# overlayfs on the same upper shows it too.
#   rootfs_chroot.sh LAMINAFS                  as root (what CI runs, label "long")
#   rootfs_chroot.sh LAMINAFS --unprivileged   the same workload without root, set
#                                              up as rootless engines do (see below;
#                                              label "manual", over two minutes)
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
# The lower tree must come out of every mount untouched: its digest before
# the first mount, compared after the last (lower_record, lower_untouched).
# The tree is shared by every run on the machine: another run through a
# laminafs that changes it at the same time fails this one too. Once a run
# has read the cached tree, relatime leaves its atimes alone for a day
# whoever reads it, so here a stray atime update shows only on a tree read
# less recently; every other field is checked on every run.
source "$here/../harness/untouched_lowers.sh"
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
step() { echo "rootfs: --- $* (at ${SECONDS} s)"; }
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
echo "rootfs: workload ok (${SECONDS} s)"
EOF

bind_system() {
  mount -t proc proc "$mnt/proc"
  mount --rbind /sys "$mnt/sys" && mount --make-rslave "$mnt/sys"
  mount --rbind /dev "$mnt/dev" && mount --make-rslave "$mnt/dev"
}

if [[ "$mode" == root ]]; then
  lower_record "$rootfs_tree" "$work/lower.digest"
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
  lower_untouched "$rootfs_tree" "$work/lower.digest" || exit 1
  t_end=$(date +%s)
  echo "rootfs: files in view: $(grep -c '^\./' "$work/before")," \
       "upper: $(du -sh "$work/upper" | cut -f1)"
  echo "rootfs: prepare $((t_prepared - t0)) s, mount+bind $((t_mounted - t_prepared)) s," \
       "workload $((t_workload - t_mounted)) s, remount+compare $((t_end - t_workload)) s," \
       "total $((t_end - t0)) s"
  echo "rootfs chroot: ok"
  exit 0
fi

# --unprivileged: the rootless engines' setup. A user with a subordinate id
# range (/etc/subuid, /etc/subgid) runs in a user namespace that maps root
# and the ids above it onto that range (newuidmap/newgidmap, from util-linux
# unshare --map-users/--map-groups), on a copy of the tree whose owners are
# shifted by the range's start, so that the tree's owners are the
# namespace's own. Nothing in the namespace has a privilege on the host:
# laminafs keeps its metadata in user.overlay.* and does not follow or write
# redirects (the kernel's userxattr rules), so renaming a lower directory
# falls back to copying. The host's /dev/fuse is root-only, so (as in
# core/unprivileged_mount.sh) the namespace gets a private 0666 copy of the
# node. Every step is required; afterwards kernel overlayfs, mounted in the
# same namespace with userxattr on the same upper, must show the same view.
shift_base=100000
user=lamina-rootless
rootfs_prepare_shifted "$shift_base"
lower_record "$rootfs_shifted" "$work/lower.digest"
t_prepared=$(date +%s)
# The test user and its range (idempotent; the range must not be another's).
if ! id -u "$user" > /dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
fi
for f in /etc/subuid /etc/subgid; do
  if ! grep -q "^$user:$shift_base:65536\$" "$f" 2> /dev/null; then
    if grep -q ":$shift_base:" "$f" 2> /dev/null; then
      echo "rootfs: $f already gives $shift_base to another user" >&2
      exit 1
    fi
    echo "$user:$shift_base:65536" >> "$f"
  fi
done
command -v newuidmap > /dev/null || { echo "rootfs: newuidmap missing (package uidmap)" >&2; exit 1; }
mkdir -p "$work/u" "$work/dev"
chown "$shift_base:$shift_base" "$work/upper" "$work/work" "$mnt" "$work/kernel" "$work/kwork" "$work/u"
printf '%s\n' "$workload" > "$work/workload.sh"
cat > "$work/inside.sh" <<'EOF'
# Runs as the namespace's root (host uid 100000).
set -euo pipefail
work=$1; laminafs=$2; tree=$3; mnt=$work/root; u=$work/u
test "$(id -u)" = 0 && grep -q ' 0 *100000 *65536$' /proc/self/uid_map
"$laminafs" -f -o "lowerdir=$tree,upperdir=$work/upper,workdir=$work/work" "$mnt" > "$u/daemon.log" 2>&1 &
daemon=$!
echo "$daemon" > "$u/daemon.pid"
trap 'umount -l "$mnt" 2>/dev/null; umount -l "$work/kernel" 2>/dev/null; true' EXIT
for i in $(seq 200); do grep -q " $mnt fuse" /proc/self/mounts && break; sleep 0.05; done
grep -q " $mnt fuse" /proc/self/mounts || { cat "$u/daemon.log"; exit 1; }
date +%s > "$u/t_mounted"
# The chroot and its binds in a mount namespace of their own: binds made in
# a user namespace cannot be unmounted piecemeal (locked), so they go when
# that namespace ends, and the overlay can then be unmounted.
unshare -m --propagation private bash -euo pipefail -c '
  mnt=$1; work=$2
  mount --rbind /proc "$mnt/proc"
  mount --rbind /sys "$mnt/sys"
  mount --rbind /dev "$mnt/dev"
  cp /etc/resolv.conf "$mnt/etc/resolv.conf"
  chroot "$mnt" /bin/bash -c "$(cat "$work/workload.sh")"
' _ "$mnt" "$work"
date +%s > "$u/t_workload"
listing "$mnt" > "$u/before"
umount "$mnt"
for i in $(seq 200); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.05; done
wait "$daemon" || { echo "rootfs: daemon exited with $?"; exit 1; }
test -z "$(ls -A "$work/work/work")" || { echo "rootfs: work/work not empty"; exit 1; }
mount -t overlay overlay \
  -o "ro,userxattr,lowerdir=$tree,upperdir=$work/upper,workdir=$work/kwork" "$work/kernel"
listing "$work/kernel" > "$u/kernel-view"
umount "$work/kernel"
trap - EXIT
EOF
# listing() for the namespace, then the script.
{ declare -f listing; cat "$work/inside.sh"; } > "$work/inside.run"
t_before=$(date +%s)
if ! "$here/../harness/as_user_with_fuse.sh" "$work/dev" "$user" 900 \
  unshare --user --map-users="$shift_base,0,65536" --map-groups="$shift_base,0,65536" \
  --setuid 0 --setgid 0 -m --propagation private \
  bash "$work/inside.run" "$work" "$laminafs" "$rootfs_shifted"; then
  echo "rootfs-unprivileged: FAIL" >&2
  tail -20 "$work/u/daemon.log" >&2 || true
  exit 1
fi
if ! diff -q "$work/u/before" "$work/u/kernel-view" > /dev/null; then
  echo "rootfs: kernel overlayfs sees the upper otherwise:" >&2
  diff "$work/u/before" "$work/u/kernel-view" | head -40 >&2
  exit 1
fi
# Written in the namespace as its root: host owners in the range, trusted.*
# never used, whiteouts are 0/0 devices.
test "$(stat -c %u "$work/upper/src/hello")" = "$shift_base"
test -c "$work/upper/usr/share/doc" && test "$(stat -c %t:%T "$work/upper/usr/share/doc")" = 0:0
! getfattr -R -h -m '^trusted\.' --absolute-names "$work/upper" 2> /dev/null | grep -q .
lower_untouched "$rootfs_shifted" "$work/lower.digest" || exit 1
t_end=$(date +%s)
echo "rootfs: files in view: $(grep -c '^\./' "$work/u/before"), upper: $(du -sh "$work/upper" | cut -f1)"
echo "rootfs: prepare $((t_prepared - t0)) s, mount $(( $(cat "$work/u/t_mounted") - t_before)) s," \
     "workload $(( $(cat "$work/u/t_workload") - $(cat "$work/u/t_mounted") )) s," \
     "unmount + kernel compare $((t_end - $(cat "$work/u/t_workload"))) s, total $((t_end - t0)) s"
echo "rootfs chroot unprivileged: ok"

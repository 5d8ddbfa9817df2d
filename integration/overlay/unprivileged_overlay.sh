#!/usr/bin/env bash
# Unprivileged laminafs overlays, against kernel overlayfs (issue 5).
#
#   host:   `nobody` mounts laminafs through fusermount3 in the host's user
#           namespace;
#   userns: `nobody` inside `unshare -Urm` mounts laminafs (mount(2) as the
#           namespace's root, no fusermount3) and, in the same namespace,
#           kernel overlayfs with -o userxattr on a sibling copy of the layers.
# The same operations run on each mount: reads, a copy-up by append, deletes
# of a lower file and of a lower tree (whiteouts), rmdir+mkdir over a merged
# directory (opaque), a rename of a merged directory, new files, directories
# and a symlink, an xattr and a chmod on lower files, and a lookup of a
# directory carrying a redirect record (refused: userxattr means
# redirect_dir=nofollow). Compared with the
# kernel: every operation's outcome, the merged view (type, mode, owner,
# size, link target, content, visible xattrs), and the upper layer on disk
# (type, device number of whiteouts, mode, owner, size, every xattr and its
# value; link counts are left out: the kernel shares one whiteout inode).
# Before the operations, a write through each daemon's own descriptor of
# its lower root must fail with EROFS (the lower is a read-only clone of its
# mount: a helper child makes it for the host daemon, the namespace's root
# makes its own). Then each daemon must have exited after the unmount, its
# work/work must be empty, and kernel overlayfs mounted by root with
# -o userxattr on each upper Lamina wrote must show the view Lamina showed.
#
# The host's /dev/fuse is root-only here, so the user gets a private 0666
# copy of the node in a private mount namespace (as in
# integration/core/unprivileged_mount.sh); the host's node is not changed.
# Usage: unprivileged_overlay.sh LAMINAFS   (LAMINA_KEEP=1 keeps the work directory)
set -euo pipefail
laminafs=$(realpath "$1")
as_user=$(cd "$(dirname "$0")/../harness" && pwd)/as_user_with_fuse.sh
user=nobody
group=$(id -gn "$user")
uid=$(id -u "$user")
t0=$(date +%s.%N)

work=$(mktemp -d /tmp/lamina-unpriv-ovl-XXXXXX)
chmod 755 "$work"
cleanup() {
  local pid m
  # Daemons started inside other mount namespaces: their mounts end with
  # them (and with the namespaces, once nothing else holds those).
  for pid in $(cat "$work"/*/daemon.pid 2>/dev/null); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  for m in "$work"/*/mnt "$work"/*/check; do
    if mountpoint -q "$m" 2>/dev/null; then umount -l "$m" || true; fi
  done
  if [[ -n "${LAMINA_KEEP:-}" ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() { echo "unprivileged overlay: FAIL: $*" >&2; exit 1; }

# Layers owned by the user (copied up files keep their owner, and the user
# namespace maps only the user).
make_layers() {
  local d=$work/$1
  mkdir -p "$d"/{lower,upper,work,mnt,check,kwork}
  local l=$d/lower
  mkdir -p "$l/d1/sub" "$l/d2" "$l/d3/in" "$l/d4/deep" "$l/m"
  echo one > "$l/f1"
  echo two > "$l/f2"
  echo three > "$l/f3"
  echo four > "$l/f4"
  echo five > "$l/f5"
  echo x > "$l/d1/x"
  echo y > "$l/d1/sub/y"
  echo z > "$l/d2/z"
  echo w > "$l/d3/w"
  echo in > "$l/d3/in/i"
  echo deep > "$l/d4/deep/e"
  echo m > "$l/m/old"
  ln -s f1 "$l/link"
  setfattr -n user.lower -v kept "$l/f4"
  # A rename recorded by an earlier mount with redirects on: never followed
  # under userxattr (redirect_dir=nofollow), the lookup fails with EPERM.
  mkdir -p "$d/upper/r"
  setfattr -n user.overlay.redirect -v /d4 "$d/upper/r"
  chown -R "$user:$group" "$d"
}
make_layers host
make_layers userns
make_layers kernel
# No mount may change a lower layer: digests now, compared at the end.
source "$(dirname "$as_user")/untouched_lowers.sh"
for c in host userns kernel; do lower_record "$work/$c/lower" "$work/$c/lower.digest"; done

# The operations, run in the mount; each prints its outcome.
cat > "$work/ops.sh" <<'EOF'
cd "$1"
r() { local out; out=$("$@" 2>&1); echo "$* -> $? $out"; }
r cat f1 d1/sub/y link
r ls -A . d3 m
r stat -c %F r
r sh -c 'echo more >> f1'
r cat f1
r rm f2
r rm -r d1
r rm -r d2
r mkdir d2
r ls -A d2
r perl -e 'rename("d4", "d4r") or die "$!\n"'
r mv d3 d3r
r sh -c 'echo added > d3r/added'
r mv f3 f3r
r sh -c 'echo new > new'
r mkdir newdir
r ln -s f1 newlink
r mkdir m/sub
r sh -c 'echo n > m/new'
r setfattr -n user.mine -v 1 f4
r chmod 600 f5
r ls -A . d3r m
r cat d3r/w d3r/in/i d3r/added f3r m/old m/new
EOF
# The merged view from inside a mount, the caller's own ids shown as "self"
# (the user is uid 65534 on the host and 0 in its namespace).
cat > "$work/view.sh" <<'EOF'
cd "$1"
me=$2
find . -mindepth 1 \( -type d -printf '%p d %m %U:%G\n' \) -o -printf '%p %y %m %U:%G %s %l\n' |
  awk -v me="$me" '{ split($4, o, ":"); if (o[1] == me) o[1] = "self"; if (o[2] == me) o[2] = "self";
                     $4 = o[1] ":" o[2]; print }' | LC_ALL=C sort
find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum
find . -print0 | LC_ALL=C sort -z | xargs -0 getfattr -h -d -m - 2>&1
EOF
# An upper layer on disk, seen by root on the host.
disk() {
  (cd "$1" && find . -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' p; do
     case $(stat -c %F "$p") in
       directory) stat -c '%n d %a %U:%G' "$p" ;;
       "character special file") stat -c '%n c %t:%T %a %U:%G' "$p" ;;
       "regular empty file" | "regular file") stat -c '%n f %a %U:%G %s' "$p" ;;
       *) stat -c '%n %F %a %U:%G %s' "$p" ;;
     esac
     { getfattr -h -d -m - -e hex "$p" 2>/dev/null || true; } | sed -e '/^#/d' -e '/^$/d' -e 's/^/    /'
   done)
}
same() {  # same WHAT EXPECTED ACTUAL
  if ! diff -u "$2" "$3" > "$work/diff"; then
    cat "$work/diff" >&2
    fail "$1 differs"
  fi
}

# The daemon $1 reaches its lower layer only through a read-only clone of
# the layer's mount: a write through its own descriptor of the lower root
# (found as the directory holding f1 and d1/sub/y, before any copy-up) fails
# with EROFS, though the user owns the file. Run before the operations.
cat > "$work/lower_read_only.sh" <<'EOF'
daemon=$1; lower=$2
for f in /proc/"$daemon"/fd/*; do
  [ -e "$f/f1" ] && [ -e "$f/d1/sub/y" ] || continue
  if sh -c "echo x >> '$f/f1'" 2> "$lower.rofs"; then
    echo "the daemon's lower root is writable ($f)"; exit 1
  fi
  grep -q "Read-only file system" "$lower.rofs" || { cat "$lower.rofs"; exit 1; }
  # (Read without moving its atime: the lower layers' digest checks it.)
  [ "$(dd if="$lower/f1" iflag=noatime status=none)" = one ] || { echo "lower f1 changed"; exit 1; }
  exit 0
done
echo "no descriptor of the lower root in daemon $daemon"; exit 1
EOF

# Waits for a mount of type $2 at $1 (in the caller's namespace).
cat > "$work/wait_mount.sh" <<'EOF'
for i in $(seq 200); do grep -q " $1 $2 " /proc/self/mounts && exit 0; sleep 0.05; done
exit 1
EOF

# --- host: nobody, fusermount3, the host user namespace -----------------
d=$work/host
cat > "$d/run.sh" <<'EOF'
set -euo pipefail
work=$1; laminafs=$2; d=$work/host
"$laminafs" -f -o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work" "$d/mnt" > "$d/log" 2>&1 &
echo $! > "$d/daemon.pid"
daemon=$!
trap 'fusermount3 -u -z "$d/mnt" 2>/dev/null || true' EXIT
bash "$work/wait_mount.sh" "$d/mnt" fuse.laminafs || { cat "$d/log"; exit 1; }
# Mounted by the user itself: fusermount3 records its uid.
grep " $d/mnt fuse.laminafs " /proc/self/mounts > "$d/mountline"
grep -q "user_id=$(id -u)," "$d/mountline"
bash "$work/lower_read_only.sh" "$daemon" "$d/lower"
bash "$work/ops.sh" "$d/mnt" > "$d/ops"
bash "$work/view.sh" "$d/mnt" "$(id -u)" > "$d/view"
fusermount3 -u "$d/mnt"
trap - EXIT
wait "$daemon" || { echo "daemon exited with $?"; exit 1; }
! grep -q " $d/mnt " /proc/self/mounts
EOF
"$as_user" "$work/dev" "$user" 120 bash "$work/host/run.sh" "$work" "$laminafs" || { cat "$d/log" >&2; fail "host mount through fusermount3"; }
t_host=$(date +%s.%N)

# --- userns: laminafs and kernel overlayfs side by side in unshare -Urm --
cat > "$work/userns.sh" <<'EOF'
set -euo pipefail
work=$1; laminafs=$2
d=$work/userns; k=$work/kernel
test "$(id -u)" = 0  # root of the namespace
"$laminafs" -f -o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work" "$d/mnt" > "$d/log" 2>&1 &
echo $! > "$d/daemon.pid"
daemon=$!
trap 'umount -l "$d/mnt" 2>/dev/null; umount -l "$k/mnt" 2>/dev/null; true' EXIT
bash "$work/wait_mount.sh" "$d/mnt" fuse.laminafs || { cat "$d/log"; exit 1; }
mount -t overlay overlay -o "lowerdir=$k/lower,upperdir=$k/upper,workdir=$k/work,userxattr" "$k/mnt"
bash "$work/ops.sh" "$k/mnt" > "$k/ops"
bash "$work/view.sh" "$k/mnt" 0 > "$k/view"
bash "$work/lower_read_only.sh" "$daemon" "$d/lower"
bash "$work/ops.sh" "$d/mnt" > "$d/ops"
bash "$work/view.sh" "$d/mnt" 0 > "$d/view"
umount "$k/mnt"
umount "$d/mnt"
trap - EXIT
wait "$daemon" || { echo "daemon exited with $?"; exit 1; }
EOF
"$as_user" "$work/dev" "$user" 120 \
  unshare -Urm --propagation private bash "$work/userns.sh" "$work" "$laminafs" || { cat "$work/userns/log" >&2; fail "user-namespace mounts"; }
t_userns=$(date +%s.%N)

# --- compare -------------------------------------------------------------
# The daemons are gone (waited for above) and left nothing staged.
for c in host userns; do
  pid=$(cat "$work/$c/daemon.pid")
  ! kill -0 "$pid" 2>/dev/null || fail "$c daemon $pid still running"
  test -z "$(ls -A "$work/$c/work/work")" || fail "$c work/work not empty"
done
# The kernel's view must show what the operations did (a guard against a
# comparison of two empty listings).
grep -q '^cat f1 d1/sub/y link -> 0 one$' "$work/kernel/ops" || fail "kernel ops did not run"
grep -q '^\./f1 f 644 self:self 9$' "$work/kernel/view" || fail "kernel view lacks the copy-up"
grep -q '^\./d2 d 755 self:self$' "$work/kernel/view" || fail "kernel view lacks d2"
for c in host userns; do
  same "$c: operation outcomes (kernel vs laminafs)" "$work/kernel/ops" "$work/$c/ops"
  same "$c: merged view (kernel vs laminafs)" "$work/kernel/view" "$work/$c/view"
done
# On disk. A new upper's root gets a random 16-byte overlay.uuid (the
# overlay's identity, uuid=auto): compared by its presence and size.
uuid() { sed -E 's/^(    user\.overlay\.uuid=)0x[0-9a-f]{32}$/\1<16 random bytes>/'; }
disk "$work/kernel/upper" | uuid > "$work/kernel/disk"
grep -q '^    user.overlay.uuid=<16 random bytes>$' "$work/kernel/disk" || fail "kernel wrote no uuid"
for c in host userns; do
  disk "$work/$c/upper" | uuid > "$work/$c/disk"
  ! grep -q 'trusted\.' "$work/$c/disk" || fail "$c: trusted.* xattrs in the upper"
  same "$c: upper layer on disk (kernel vs laminafs)" "$work/kernel/disk" "$work/$c/disk"
done
grep -q '^\./f2 c 0:0 ' "$work/host/disk" || fail "no 0/0 whiteout for f2"
grep -q 'user.overlay.opaque=0x79$' "$work/host/disk" || fail "no opaque d2"
# Kernel overlayfs, mounted by root with userxattr, reads each upper Lamina
# wrote as Lamina showed it.
for c in host userns; do
  dd=$work/$c
  mount -t overlay overlay -o "ro,userxattr,lowerdir=$dd/lower,upperdir=$dd/upper,workdir=$dd/kwork" \
    "$dd/check"
  bash "$work/view.sh" "$dd/check" "$uid" > "$dd/kernel-view"
  umount "$dd/check"
  same "$c: kernel overlayfs on Lamina's upper" "$dd/view" "$dd/kernel-view"
done
changed=""
for c in host userns kernel; do
  lower_untouched "$work/$c/lower" "$work/$c/lower.digest" || changed+=" $c"
done
[[ -z "$changed" ]] || fail "lower layers changed:$changed"
t_end=$(date +%s.%N)
awk -v a="$t0" -v b="$t_host" -v c="$t_userns" -v d="$t_end" 'BEGIN {
  printf "unprivileged overlay: host %.1f s, userns %.1f s, compare %.1f s\n", b - a, c - b, d - c }'
echo "unprivileged overlay: ok"

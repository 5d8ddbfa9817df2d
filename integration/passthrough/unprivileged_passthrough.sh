#!/usr/bin/env bash
# `laminafs passthrough SOURCE MOUNTPOINT` mounted by a non-root user through
# fusermount3 (issue 3): create, read, write, rename, unlink, mkdir, rmdir,
# symlink, hard link, chmod, truncate and xattrs work, files land in SOURCE
# owned by that user, and fusermount3 -u ends the daemon. The host's
# /dev/fuse is root-only here, so the user gets a private 0666 copy of the
# node in a private mount namespace (the host's node is not changed).
# Usage: unprivileged_passthrough.sh LAMINAFS
set -euo pipefail
laminafs=$(realpath "$1")
as_user=$(cd "$(dirname "$0")/../harness" && pwd)/as_user_with_fuse.sh
user=nobody
group=$(id -gn "$user")
work=$(mktemp -d /tmp/lamina-unpriv-pt-XXXXXX)
chmod 755 "$work"
cleanup() {
  local pid
  pid=$(cat "$work/u/daemon.pid" 2>/dev/null || true)
  if [[ -n "$pid" ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  if mountpoint -q "$work/mnt" 2>/dev/null; then umount -l "$work/mnt" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/src/old" "$work/mnt" "$work/dev"
echo existing > "$work/src/old/file"
chown -R "$user:$group" "$work/src" "$work/mnt"
# The user's own files: log, pid, outcome.
mkdir "$work/u" && chown "$user" "$work/u"

cat > "$work/run.sh" <<'EOF'
set -euo pipefail
work=$1; laminafs=$2; m=$work/mnt
"$laminafs" passthrough -f "$work/src" "$m" > "$work/u/log" 2>&1 &
daemon=$!
echo "$daemon" > "$work/u/daemon.pid"
trap 'fusermount3 -u -z "$m" 2>/dev/null || true' EXIT
for i in $(seq 200); do grep -q " $m fuse" /proc/self/mounts && break; sleep 0.05; done
grep " $m fuse" /proc/self/mounts > "$work/u/mountline" || { cat "$work/u/log"; exit 1; }
grep -q "user_id=$(id -u)," "$work/u/mountline"   # mounted by the user, via fusermount3
check() { "$@" || { echo "failed: $*"; exit 1; }; }
check test "$(cat "$m/old/file")" = existing
echo hello > "$m/new"
check test "$(cat "$m/new")" = hello
echo more >> "$m/new"
check test "$(cat "$m/new")" = "$(printf 'hello\nmore')"
printf 'xyz' | dd of="$m/new" bs=1 seek=2 conv=notrunc status=none
check test "$(head -c 5 "$m/new")" = hexyz
truncate -s 3 "$m/new"
check test "$(cat "$m/new")" = hex
check test "$(stat -c %U:%G "$m/new")" = "$(id -un):$(id -gn)"
mkdir "$m/dir"
mv "$m/new" "$m/dir/renamed"
check test ! -e "$m/new"
check test "$(cat "$m/dir/renamed")" = hex
ln -s dir/renamed "$m/sym"
check test "$(readlink "$m/sym")" = dir/renamed
check test "$(cat "$m/sym")" = hex
ln "$m/dir/renamed" "$m/hard"
check test "$(stat -c %h "$m/hard")" = 2
chmod 600 "$m/hard"
check test "$(stat -c %a "$m/dir/renamed")" = 600
setfattr -n user.note -v kept "$m/hard"
check test "$(getfattr --absolute-names --only-values -n user.note "$m/dir/renamed")" = kept
mv "$m/old" "$m/older"
rm "$m/older/file"
rmdir "$m/older"
mkdir "$m/gone" && rmdir "$m/gone"
check test "$(ls "$m" | tr '\n' ' ')" = "dir hard sym "
fusermount3 -u "$m"
trap - EXIT
wait "$daemon" || { echo "daemon exited with $?"; exit 1; }
if grep -q " $m " /proc/self/mounts; then echo "still mounted"; exit 1; fi
echo done > "$work/u/result"
EOF

t0=$(date +%s.%N)
"$as_user" "$work/dev" "$user" 60 bash "$work/run.sh" "$work" "$laminafs" || { cat "$work/u/log" >&2; echo "unprivileged passthrough: FAIL" >&2; exit 1; }
t1=$(date +%s.%N)

# What the user did, seen in SOURCE by root: owned by the user.
test "$(cat "$work/u/result")" = done
pid=$(cat "$work/u/daemon.pid")
! kill -0 "$pid" 2>/dev/null || { echo "daemon $pid still running" >&2; exit 1; }
s=$work/src
test "$(cat "$s/dir/renamed")" = hex
test "$(stat -c %U:%G:%a "$s/dir/renamed")" = "$user:$group:600"
test "$(stat -c %U:%G "$s/dir")" = "$user:$group"
test "$(stat -c %U "$s/sym")" = "$user" && test "$(readlink "$s/sym")" = dir/renamed
test "$(stat -c %i "$s/hard")" = "$(stat -c %i "$s/dir/renamed")"
test "$(getfattr --absolute-names --only-values -n user.note "$s/hard")" = kept
test ! -e "$s/older" && test ! -e "$s/old" && test ! -e "$s/gone"
test "$(ls "$s" | tr '\n' ' ')" = "dir hard sym "
# Nothing was written to the directory under the mount.
test -z "$(ls -A "$work/mnt")"
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "unprivileged passthrough: %.1f s\n", b - a }'
echo "unprivileged passthrough: ok"

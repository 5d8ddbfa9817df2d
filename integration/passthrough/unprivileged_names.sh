#!/usr/bin/env bash
# Names given to an unprivileged `laminafs passthrough` reach fusermount3
# whole, as the arguments and option values they are:
#  - a source named `src,ro,nodev x'"\` (comma, quotes, backslash, space)
#    mounts read-write with exactly that source in mountinfo (the comma once
#    made `ro` a mount option of its own);
#  - a mount point named `mnt'$(touch INJECTED)'` whose connection is
#    aborted is detached by fusermount3 without running the touch (it ran
#    when the daemon built a command line for system()). The user aborts its
#    own connection through fusectl; the daemon must then exit, leaving the
#    mount point unmounted.
# The host's /dev/fuse is root-only here, so the user gets a private 0666
# copy of the node in a private mount namespace (as_user_with_fuse.sh).
# Usage: unprivileged_names.sh LAMINAFS
set -euo pipefail
laminafs=$(realpath "$1")
as_user=$(cd "$(dirname "$0")/../harness" && pwd)/as_user_with_fuse.sh
user=nobody
work=$(mktemp -d /tmp/lamina-names-XXXXXX)
chmod 755 "$work"
mnt="$work/mnt'\$(touch INJECTED)'"
cleanup() {
  local pid
  pid=$(cat "$work/u/daemon.pid" 2>/dev/null || true)
  if [[ -n "$pid" ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  if mountpoint -q "$mnt" 2>/dev/null; then umount -l "$mnt" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "unprivileged names: FAIL: $*" >&2; exit 1; }
[[ -d /sys/fs/fuse/connections ]] && mountpoint -q /sys/fs/fuse/connections ||
  mount -t fusectl fusectl /sys/fs/fuse/connections
src="$work/src,ro,nodev x'\"\\"
mkdir -p "$src" "$mnt" "$work/u" "$work/dev"
echo hello > "$src/f"
chown -R "$user" "$src" "$mnt" "$work/u"

cat > "$work/run.sh" <<'EOF'
set -euo pipefail
work=$1 laminafs=$2 m=$3 src=$4
cd "$work/u"   # the daemon's working directory (-f keeps it): where a touch would land
"$laminafs" passthrough -f "$src" "$m" > "$work/u/log" 2>&1 &
daemon=$!
echo "$daemon" > "$work/u/daemon.pid"
for _ in $(seq 200); do mountpoint -q "$m" && break; sleep 0.05; done
mountpoint -q "$m" || { echo "not mounted"; exit 1; }
test "$(cat "$m/f")" = hello
# mountinfo escapes space, tab, newline and backslash as octal.
escape() { local s=${1//\\/\\134}; s=${s// /\\040}; printf '%s' "$s"; }
line=$(M=$(escape "$m") awk '$5 == ENVIRON["M"]' /proc/self/mountinfo)
fields=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { print $(i + 2), $(i + 3); exit } }' <<< "$line")
[[ ${fields%% *} == "$(escape "$src")" ]] || { echo "source shown as ${fields%% *}"; exit 1; }
[[ ${fields#* } == rw,* ]] || { echo "super options ${fields#* }"; exit 1; }
[[ $(awk '{ print $6 }' <<< "$line") == rw,* ]] || { echo "mount options: $line"; exit 1; }
echo written > "$m/new" || { echo "not writable"; exit 1; }
# FUSE connection numbers are the mount's anonymous device minors.
dev=$(stat -c %d "$m")
minor=$(( (dev & 0xff) | ((dev >> 12) & 0xfff00) ))
echo 1 > "/sys/fs/fuse/connections/$minor/abort"
for _ in $(seq 200); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$daemon" 2>/dev/null; then echo "daemon still running after the abort"; exit 1; fi
wait "$daemon" || true
if mountpoint -q "$m"; then echo "still mounted" > "$work/u/result"; else echo done > "$work/u/result"; fi
EOF

status=0
"$as_user" "$work/dev" "$user" 60 bash "$work/run.sh" "$work" "$laminafs" "$mnt" "$src" || status=$?
if [[ -e "$work/u/INJECTED" || -e "$work/INJECTED" ]]; then
  fail "the mount point's name ran as a command"
fi
((status == 0)) || { cat "$work/u/log" >&2; fail "the run as $user failed"; }
result=$(cat "$work/u/result")
[[ $result == done ]] || { cat "$work/u/log" >&2; fail "after the abort: $result"; }
test "$(cat "$src/new")" = written || fail "the write did not reach the source"
echo "unprivileged names: ok"

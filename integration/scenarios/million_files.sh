#!/usr/bin/env bash
# The million-file walk (issues 6 and 7): a lower tree of FILES files
# (default 1,000,000, empty, 1,000 per directory) on a private tmpfs is
# walked through laminafs (lowerdir + empty upper): `find` of every name,
# then `stat` of every name. The daemon's open descriptors and resident
# memory are sampled throughout; it must stay under its descriptor limit
# and a memory bound. The same walk then runs on fuse-overlayfs (if
# installed) for comparison. Prints peak descriptors, peak RSS and bytes
# per cached inode for both.
#
#   million_files.sh LAMINAFS [FILES]
#
# Registered with ctest under the label "extended" (`scripts/test --long`);
# never part of the normal run: it takes minutes and ~3 GB of memory.
# Bytes per cached inode: the daemon's RSS growth over the nodes it holds
# (Lamina's stats gauge "nodes"; for fuse-overlayfs, which does not report
# it, the growth of the kernel's FUSE inodes, all mounts' (other FUSE mounts
# add noise), since it keeps a node for each until the kernel forgets it),
# at the end of the walk; for Lamina also at its first growth (the largest
# node count before it first sheds nodes), before the heap holds freed nodes.
set -euo pipefail

laminafs=${1:?usage: million_files.sh LAMINAFS [FILES]}
files=${2:-1000000}
per_dir=1000
dirs=$(((files + per_dir - 1) / per_dir))

need_kb=$((files * 3))  # tmpfs inodes, the FUSE mount's kernel inodes, slack
avail_kb=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
if ((avail_kb < need_kb)); then
  echo "million_files: needs ~$((need_kb / 1024)) MiB of memory, $((avail_kb / 1024)) MiB available" >&2
  exit 1
fi

root=$(mktemp -d /tmp/lamina-million-XXXXXX)
mnt=$root/mnt
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  umount -l "$mnt" 2>/dev/null || true
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  umount -l "$root/layers" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
mkdir -p "$mnt" "$root/layers"
mount -t tmpfs -o "size=2g,nr_inodes=$((files * 2 + 100000))" lamina-million "$root/layers"

echo "million_files: creating $files files in $dirs directories"
start=$SECONDS
python3 - "$root/layers/lower" "$files" "$per_dir" <<'EOF'
import os, sys
lower, files, per_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(lower)
for d in range((files + per_dir - 1) // per_dir):
    path = f"{lower}/d{d:04d}"
    os.mkdir(path)
    for f in range(min(per_dir, files - d * per_dir)):
        os.close(os.open(f"{path}/f{f:04d}", os.O_CREAT | os.O_WRONLY, 0o644))
EOF
echo "million_files: created in $((SECONDS - start)) s"
expected=$((files + dirs + 1))

fuse_inodes() { awk '$1 == "fuse_inode" {print $2}' /proc/slabinfo; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
fd_count() { ls "/proc/$1/fd" | wc -l; }

# Samples PID's RSS and descriptors every half second into FILE (one line
# "rss_kb fds fuse_inodes nodes"; nodes from Lamina's stats file, 0 else).
sample() {
  local pid=$1 out=$2 stats=${3:-}
  while kill -0 "$pid" 2>/dev/null; do
    local nodes=0
    if [[ -n "$stats" ]]; then
      kill -USR1 "$pid" 2>/dev/null || true
      sleep 0.1
      nodes=$(grep -o '"nodes":[0-9]*' "$stats" 2>/dev/null | cut -d: -f2 || true)
    fi
    echo "$(rss_kb "$pid" 2>/dev/null || echo 0) $(fd_count "$pid" 2>/dev/null || echo 0) $(fuse_inodes) ${nodes:-0}" >>"$out"
    sleep 0.4
  done
}

# Bytes per node: RSS (KiB) above the base, over the nodes.
per_node() {
  awk -v r="$1" -v b="$2" -v n="$3" 'BEGIN { printf("%.0f", (n > 0) ? (r - b) * 1024 / n : 0) }'
}

# walk NAME PID SAMPLES [STATS]: find, then stat of everything; prints a
# result line. The mount is at $mnt, served by PID.
results=()
walk() {
  local name=$1 pid=$2 samples=$3 stats=${4:-}
  : >"$samples"
  local base_rss base_fds base_inodes
  base_rss=$(rss_kb "$pid")
  base_fds=$(fd_count "$pid")
  base_inodes=$(fuse_inodes)
  sample "$pid" "$samples" "$stats" &
  local sampler=$!
  pids+=("$sampler")
  local t0=$SECONDS
  local found
  found=$(find "$mnt" | wc -l)
  local t1=$SECONDS
  local statted
  statted=$(find "$mnt" -print0 | xargs -0 stat -c %i | wc -l)
  local t2=$SECONDS
  sleep 1  # a last sample after the walk
  kill "$sampler"
  wait "$sampler" 2>/dev/null || true
  if ((found != expected || statted != expected)); then
    echo "million_files: $name: find listed $found names, stat $statted, expected $expected" >&2
    exit 1
  fi
  local peak_rss peak_fds end_rss end_inodes end_nodes
  peak_rss=$(awk 'BEGIN {m = 0} $1 > m {m = $1} END {print m}' "$samples")
  peak_fds=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$samples")
  end_rss=$(rss_kb "$pid")
  end_inodes=$(($(fuse_inodes) - base_inodes))
  # The first growth: the sample before any node was forgotten (Lamina: the
  # largest node count before it first fell; fuse-overlayfs: kernel inodes).
  local first
  if [[ -n "$stats" ]]; then
    first=$(awk 'BEGIN {best = ""; last = -1} $4 < last {exit} {last = $4; if ($4 > 0) best = $1 " " $4} END {print best}' "$samples")
    end_nodes=$(grep -o '"nodes":[0-9]*' "$stats" | cut -d: -f2)
  else
    # fuse-overlayfs forgets nothing here (no memory pressure): its nodes
    # only grow, so the end is its largest cache.
    end_nodes=$end_inodes
    first="$end_rss $end_nodes"
  fi
  local first_rss=${first% *} first_nodes=${first#* }
  local per_node_first per_node_end
  per_node_first=$(per_node "$first_rss" "$base_rss" "$first_nodes")
  [[ -z "$stats" ]] && per_node_first=-
  per_node_end=$(per_node "$end_rss" "$base_rss" "$end_nodes")
  results+=("$(printf '%-15s %7d s %7d s %9d %9d %11d %11d %11d %12d %12s %12d' \
    "$name" $((t1 - t0)) $((t2 - t1)) "$base_fds" "$peak_fds" "$base_rss" "$peak_rss" "$end_rss" \
    "$end_nodes" "$per_node_first" "$per_node_end")")
  echo "million_files: $name: find ${found} names in $((t1 - t0)) s, stat in $((t2 - t1)) s, peak $peak_fds fds, peak RSS $peak_rss KiB;" \
    "first growth: RSS $base_rss -> $first_rss KiB at $first_nodes nodes; end: $end_rss KiB, $end_nodes nodes"
  # Export for the checks.
  last_peak_fds=$peak_fds
  last_peak_rss=$peak_rss
  last_base_rss=$base_rss
}

wait_mounted() {
  local pid=$1
  for _ in $(seq 200); do
    if awk -v m="$mnt" '$2 == m' /proc/mounts | grep -q fuse; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

unmount_and_wait() {
  local pid=$1
  umount "$mnt"
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "million_files: daemon $pid still running after unmount" >&2
    exit 1
  fi
  wait "$pid" 2>/dev/null || true
}

# Lamina.
mkdir -p "$root/layers/upper" "$root/layers/work"
# Both walks start with a cold kernel cache of the lower tree's dentries
# and inodes, as far as dropping caches makes it.
sync
echo 2 >/proc/sys/vm/drop_caches
"$laminafs" -f -o "lowerdir=$root/layers/lower,upperdir=$root/layers/upper,workdir=$root/layers/work,stats=$root/lamina-stats.json" \
  "$mnt" >"$root/lamina.log" 2>&1 &
lamina=$!
pids+=("$lamina")
wait_mounted "$lamina" || { cat "$root/lamina.log" >&2; exit 1; }
walk laminafs "$lamina" "$root/lamina.samples" "$root/lamina-stats.json"
lamina_peak_fds=$last_peak_fds
lamina_growth_kb=$((last_peak_rss - last_base_rss))
kill -USR1 "$lamina"
sleep 0.2
limit=$(grep -o '"descriptor_limit":[0-9]*' "$root/lamina-stats.json" | cut -d: -f2)
unmount_and_wait "$lamina"

# fuse-overlayfs on the same lower tree, fresh upper.
if [[ -x /usr/bin/fuse-overlayfs ]]; then
  mkdir -p "$root/layers/upper2" "$root/layers/work2"
  sync
  echo 2 >/proc/sys/vm/drop_caches
  /usr/bin/fuse-overlayfs -f -o "lowerdir=$root/layers/lower,upperdir=$root/layers/upper2,workdir=$root/layers/work2" \
    "$mnt" >"$root/fuse-overlayfs.log" 2>&1 &
  fo=$!
  pids+=("$fo")
  wait_mounted "$fo" || { cat "$root/fuse-overlayfs.log" >&2; exit 1; }
  walk fuse-overlayfs "$fo" "$root/fuse-overlayfs.samples"
  unmount_and_wait "$fo"
else
  results+=("fuse-overlayfs  not run: /usr/bin/fuse-overlayfs is not installed")
fi

echo
echo "million_files: $files files, $dirs directories, $expected names; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-15s %9s %9s %9s %9s %11s %11s %11s %12s %12s %12s\n' system find stat fds0 fds_peak \
  rss0_KiB rss_peak_KiB rss_end_KiB nodes_end B/node_first B/node_end
for line in "${results[@]}"; do echo "$line"; done

# The bounds: descriptors within the limit plus the pruning slack (1/4, as
# the 30,000-file walk allows), memory within 64 KiB per descriptor of the
# limit (nodes are bounded by it; the measured cost is far lower).
failed=0
if ((lamina_peak_fds > limit + limit / 4 + 64)); then
  echo "million_files: laminafs held $lamina_peak_fds descriptors, limit $limit" >&2
  failed=1
fi
if ((lamina_growth_kb > limit * 64)); then
  echo "million_files: laminafs grew by $lamina_growth_kb KiB with a limit of $limit descriptors" >&2
  failed=1
fi
exit $failed

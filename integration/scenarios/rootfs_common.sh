# Shared by the rootfs scenarios: builds (once) and caches a Debian bookworm
# minbase tree outside the repository.
#   LAMINA_ROOTFS_CACHE   where the tree lives (default /var/cache/lamina-rootfs)
# The tree is rebuilt when it is absent or when its "complete" marker is
# missing (an interrupted debootstrap).

rootfs_cache=${LAMINA_ROOTFS_CACHE:-/var/cache/lamina-rootfs}
rootfs_tree=$rootfs_cache/bookworm
rootfs_marker=$rootfs_cache/bookworm.complete

# The machine's own Debian mirror, from its apt sources (one-line or deb822).
rootfs_mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
          2>/dev/null | awk '
        /^[[:space:]]*#/ { next }
        /^deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }
        /^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' | head -1)
  echo "${uri:-http://deb.debian.org/debian}"
}

rootfs_prepare() {
  if [[ -f "$rootfs_marker" && -x "$rootfs_tree/usr/bin/apt-get" ]]; then return 0; fi
  command -v debootstrap >/dev/null || { echo "rootfs: debootstrap is missing" >&2; return 1; }
  echo "rootfs: building a bookworm minbase tree in $rootfs_tree (once)"
  rm -rf "$rootfs_tree" "$rootfs_marker"
  mkdir -p "$rootfs_cache"
  debootstrap --variant=minbase bookworm "$rootfs_tree" "$(rootfs_mirror)" \
    > "$rootfs_cache/debootstrap.log" 2>&1 || {
    tail -20 "$rootfs_cache/debootstrap.log" >&2
    return 1
  }
  touch "$rootfs_marker"
}

# The same tree with every owner shifted up by $1 (uid and gid), as a
# rootless engine stores an image for a user namespace that maps root to a
# subordinate range. Cached beside the tree, rebuilt when incomplete.
# Sets rootfs_shifted.
rootfs_prepare_shifted() {
  local shift=$1
  rootfs_shifted=$rootfs_cache/bookworm-shift$shift
  local marker=$rootfs_shifted.complete
  if [[ -f "$marker" && -x "$rootfs_shifted/usr/bin/apt-get" ]]; then return 0; fi
  rootfs_prepare
  echo "rootfs: copying the tree with owners shifted by $shift (once)"
  rm -rf "$rootfs_shifted" "$marker"
  cp -a "$rootfs_tree" "$rootfs_shifted"
  # chown clears set-id bits: note the modes, shift the owners (one pass
  # per distinct owner pair, there are a handful), restore the modes.
  local modes pair uid gid
  modes=$(cd "$rootfs_shifted" && find . -xdev -perm /6000 ! -type l -printf '%m %p\n')
  (cd "$rootfs_shifted" && find . -xdev -printf '%U:%G\n' | sort -u) | while IFS=: read -r uid gid; do
    (cd "$rootfs_shifted" && find . -xdev -uid "$uid" -gid "$gid" -print0 |
       xargs -0 chown -h "$((uid + shift)):$((gid + shift))")
  done
  while read -r mode path; do
    [[ -n "$path" ]] && chmod "$mode" "$rootfs_shifted/$path"
  done <<< "$modes"
  # Nothing may keep a host owner below the shift.
  if [[ -n "$(find "$rootfs_shifted" -xdev \( ! -uid +$((shift - 1)) -o ! -gid +$((shift - 1)) \) -print -quit)" ]]; then
    echo "rootfs: shifting owners left some behind" >&2
    return 1
  fi
  touch "$marker"
}

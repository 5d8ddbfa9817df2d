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

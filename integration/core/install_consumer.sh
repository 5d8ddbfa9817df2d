#!/usr/bin/env bash
# `cmake --install` yields a package another project can use: install into
# a scratch prefix, build integration/core/consumer against it with
# find_package(lamina), and run it (it mounts and unmounts a filesystem).
# Usage: install_consumer.sh BUILD_DIR
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/lamina-install-XXXXXX)
trap 'umount -l "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -x "$work/prefix/bin/laminafs"
test -f "$work/prefix/include/lamina/core/filesystem.h"
cmake -S "$here/consumer" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
mkdir "$work/mnt"
"$work/build/hellofs" "$work/mnt"
! grep -q " $work/mnt " /proc/mounts
echo "install + find_package: ok"

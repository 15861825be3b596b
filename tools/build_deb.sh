#!/usr/bin/env bash
# Builds the Debian packages (xpbridge, libxpbcodec-dev) from this tree with
# dpkg-buildpackage, in a copy so the tree stays clean, and checks them with
# lintian. The .deb files end up in OUT_DIR (default build/deb).
#   bash tools/build_deb.sh [OUT_DIR]
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$top/build/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The sources as they are (committed or not), without build outputs.
mkdir "$work/xpbridge"
(cd "$top" && tar --exclude=./build --exclude=./.git --exclude='./build-*' -cf - .) |
    tar -xf - -C "$work/xpbridge"
echo "build_deb: dpkg-buildpackage in $work/xpbridge (log: $out/build.log)"
if ! (cd "$work/xpbridge" && dpkg-buildpackage -b -us -uc -j"$(nproc 2>/dev/null || echo 2)") \
    > "$out/build.log" 2>&1; then
    tail -n 40 "$out/build.log" >&2
    echo "build_deb: dpkg-buildpackage failed (whole log: $out/build.log)" >&2
    exit 1
fi
rm -f "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo
cp "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo "$out"/
ls -l "$out"/*.deb
echo "build_deb: lintian"
lintian --fail-on error,warning --info "$out"/*.changes
echo "build_deb: lintian clean"

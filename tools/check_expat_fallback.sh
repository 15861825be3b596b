#!/usr/bin/env bash
# Builds the codec against an expat header without XML_SetReparseDeferralEnabled
# (as Debian 12's stock libexpat1-dev 2.5.0-1+deb12u1 ships it), with -Werror as
# in the main build, and runs the reader and round-trip tests there: proves the
# configure-time detection and the fallback (docs/architecture.md, "expat").
#   bash tools/check_expat_fallback.sh [BUILD_DIR]   (default build/expat-fallback)
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$top/build/expat-fallback}
mkdir -p "$build"
build=$(cd "$build" && pwd) # -I must not depend on the compiler's directory
inc=$build/expat-include
header=${XPB_EXPAT_HEADER:-/usr/include/expat.h}
mkdir -p "$inc"

# The header with the declaration removed: the XMLPARSEAPI(...) line and the
# XML_SetReparseDeferralEnabled(...) line after it.
awk '/^XMLPARSEAPI/ { held = $0; next }
     held != "" { if ($0 !~ /XML_SetReparseDeferralEnabled/) print held; held = "" 
                  if ($0 ~ /XML_SetReparseDeferralEnabled/) next }
     { print }' "$header" > "$inc/expat.h"
cp "$(dirname "$header")/expat_external.h" "$inc/"
if grep -q XML_SetReparseDeferralEnabled "$inc/expat.h"; then
    echo "check_expat_fallback: could not remove the declaration from $header" >&2
    exit 1
fi

# A fresh configure: the detection's result is cached, and a cache from an
# earlier run with another include path would hide what this header does.
rm -f "$build/CMakeCache.txt"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DXPB_WERROR=ON -DXPB_LTO=OFF \
    -DCMAKE_C_FLAGS="-I$inc" >/dev/null
have=$(sed -n 's/^XPB_HAVE_XML_SETREPARSEDEFERRALENABLED:INTERNAL=//p' "$build/CMakeCache.txt")
if [ -n "$have" ] && [ "$have" != 0 ]; then
    echo "check_expat_fallback: configure still found XML_SetReparseDeferralEnabled" \
        "with $inc first on the include path" >&2
    exit 1
fi
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target test_reader test_roundtrip
ctest --test-dir "$build" --output-on-failure -R '^(test_reader|test_roundtrip)$'
echo "check_expat_fallback: codec built and tested without XML_SetReparseDeferralEnabled"

#!/usr/bin/env bash
# The layering check (bridge/README.md): fails when
#  - a file in bridge/ includes a header of a higher layer, or another folder's
#    internal header (only a folder's include/ is public);
#  - <event2/...>, <nng/...>, <openssl/ssl.h>, <ares.h>, <libconfig.h> or
#    <systemd/...> appears outside the files that own that library;
#  - a .c or .h file in bridge/ or tools/ passes 900 lines.
#   bash tools/check_layers.sh            (run by tools/test.sh)
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
max_lines=900
fail=0
bad() { echo "check_layers: $*"; fail=1; }

# bridge/ folders from the bottom; codec/ and the generated records sit below.
layers=(util session io store bus config daemon app)
rank_of() {
    local i
    for i in "${!layers[@]}"; do [ "${layers[$i]}" = "$1" ] && { echo $((i + 1)); return; }; done
    echo -1
}

# Where each public header lives: "header folder".
declare -A owner
for d in "${layers[@]}"; do
    for h in bridge/"$d"/include/*.h; do [ -e "$h" ] && owner[$(basename "$h")]=$d; done
done
for h in codec/xpb_*.h; do owner[$(basename "$h")]=codec; done

# Which files may include which system library (a regex over the path).
declare -A lib_owner=(
    ['event2/']='^bridge/io/'
    ['nng/']='^(bridge/bus/|tools/xpbctl/bus_client\.c$|tools/xpb-load/(bus|req|nng_floor)\.c$)'
    ['openssl/ssl.h']='^(bridge/io/tcp_tls\.c|tools/xpb-load/server\.c|tools/xpb-load/server_internal\.h)$'
    ['ares.h']='^bridge/io/dns\.c$'
    ['libconfig.h']='^bridge/config/config(_nats)?\.c$'
    ['nats/']='^(bridge/bus/bus_nats(_kv)?\.c|bridge/io/loop_nats\.c|tools/xpbctl/nats_client\.c)$'
    ['systemd/']='^bridge/app/notify\.c$'
    ['sqlite3.h']='^(bridge/store/|tools/xpb-archive/|tools/xpb_archive_bench\.c$)'
)

for f in $(git ls-files 'bridge/*.c' 'bridge/*.h'); do
    folder=$(cut -d/ -f2 <<<"$f")
    rank=$(rank_of "$folder")
    [ "$rank" -gt 0 ] || { bad "$f: bridge/$folder is not a layer (${layers[*]})"; continue; }
    while IFS= read -r inc; do
        [ -n "$inc" ] || continue
        base=$(basename "$inc")
        case "$inc" in xpb/v1/*) continue ;; esac
        if [ -e "bridge/$folder/$inc" ] || [ -e "bridge/$folder/include/$inc" ]; then continue; fi
        o=${owner[$base]:-}
        if [ -z "$o" ]; then
            bad "$f includes \"$inc\": not a public header (only bridge/*/include/ and codec/xpb_*.h are)"
        elif [ "$o" != codec ] && [ "$(rank_of "$o")" -ge "$rank" ]; then
            bad "$f includes \"$inc\" of bridge/$o: a lower layer ($folder) may not include a higher one"
        fi
    done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done

for f in $(git ls-files 'bridge/*.[ch]' 'tools/*.[ch]' 'codec/*.[ch]'); do
    for lib in "${!lib_owner[@]}"; do
        if grep -q "^#include <$lib" "$f" && ! grep -Eq "${lib_owner[$lib]}" <<<"$f"; then
            bad "$f includes <$lib...>: only ${lib_owner[$lib]} may"
        fi
    done
done

for f in $(git ls-files 'bridge/*.[ch]' 'tools/*.[ch]'); do
    n=$(wc -l < "$f")
    [ "$n" -le $max_lines ] || bad "$f has $n lines (at most $max_lines: split it by job)"
done

[ $fail -eq 0 ] && echo "check_layers: bridge/ and tools/ keep their layers and sizes"
exit $fail

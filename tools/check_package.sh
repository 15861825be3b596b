#!/usr/bin/env bash
# Checks xpbridge as shipped (issue "Ship it like a real Debian service"):
#  1. builds the .deb packages and runs lintian (tools/build_deb.sh);
#  2. unpacks those packages into one directory and runs the installed
#     xpbridge --version and xpbctl --help;
#  3. builds a ten-line C program against the installed codec, with
#     pkg-config and with find_package(xpbridge), and runs it;
#  4. checks the systemd unit with systemd-analyze verify;
#  5. checks the Prometheus alert rules with promtool;
#  6. loads the tuned profile with tuned's own loader.
#   bash tools/check_package.sh      (run by tools/test.sh; about 2 minutes on 2 cores)
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { printf -- '-- %s\n' "$*"; }

step "Debian packages + lintian"
bash "$top/tools/build_deb.sh" "$top/build/deb"

step "the packages' files, unpacked"
dest=$work/root
# What ships: the .deb files just built, unpacked into one tree (a second
# build and install of the source would test the build, not the packages).
for deb in "$top"/build/deb/*.deb; do
    case $deb in *-dbgsym_*) continue ;; esac
    dpkg-deb -x "$deb" "$dest"
done
for f in usr/sbin/xpbridge usr/bin/xpbctl usr/bin/xpb-archive usr/bin/xpb-gen usr/bin/xpb-bench \
    etc/xpbridge/xpbridge.conf usr/share/man/man8/xpbridge.8 usr/share/man/man5/xpbridge.conf.5 \
    usr/share/man/man1/xpbctl.1 usr/share/man/man1/xpb-archive.1 \
    usr/share/xpbridge/proto/xpb/v1/bus.proto \
    lib/systemd/system/xpbridge.service usr/include/xpbridge/xpb_stanza.h \
    usr/share/bash-completion/completions/xpbctl usr/lib/tuned/xpbridge-latency/tuned.conf; do
    # dh_compress gzips man pages in the package
    [ -e "$dest/$f" ] || [ -e "$dest/$f.gz" ] || { echo "not installed: /$f" >&2; exit 1; }
done
"$dest/usr/sbin/xpbridge" --version
"$dest/usr/bin/xpbctl" --help | head -n 2
"$dest/usr/bin/xpb-archive" --help | head -n 2
"$dest/usr/sbin/xpbridge" --config "$dest/etc/xpbridge/xpbridge.conf" --check-config

step "a program against the installed codec"
libdir=$(cd "$dest/usr" && find . -name xpbcodec.pc -printf '%h\n' | head -n 1)
cat > "$work/convert.c" <<'PROG'
#include <stdio.h>
#include <string.h>
#include "xpb_stanza.h"
/* One stanza, XML -> record -> bytes, with the installed codec alone. */
static int on_stanza(void *ud, const xpb_node *el)
{
    xpb_arena *a = xpb_arena_new(0);
    xpb_stanza *st = NULL;
    xpb_buf out;
    xpb_buf_init(&out, 0);
    int rc = xpb_stanza_from_xml(a, el, &st) || xpb_stanza_pack(&out, st);
    printf("record %zu bytes, body '%s'\n", out.len, st && st->n_body ? st->body[0]->text : "");
    *(int *)ud = rc ? -1 : (int)out.len;
    xpb_buf_free(&out);
    xpb_arena_free(a);
    return rc;
}
int main(void)
{
    const char *xml = "<message to='alice@example.com' type='chat'><body>hi</body></message>";
    xpb_reader_callbacks cb = {.stanza = on_stanza};
    xpb_reader *r;
    int got = 0;
    if (xpb_reader_new(&r, XPB_READER_FRAGMENTS, NULL, &cb, &got) != 0) return 1;
    int rc = xpb_reader_feed(r, xml, strlen(xml));
    xpb_reader_free(r);
    return rc == 0 && got > 0 ? 0 : 1;
}
PROG
pc_dir=$dest/usr/$(cd "$dest/usr" && find . -name xpbcodec.pc -printf '%h\n' | head -n 1)
flags=$(PKG_CONFIG_PATH=$pc_dir PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --cflags --libs xpbcodec)
# shellcheck disable=SC2086
cc -std=c11 -Wall -Werror -o "$work/convert-pc" "$work/convert.c" $flags
"$work/convert-pc"
mkdir -p "$work/cmake-prog"
cp "$work/convert.c" "$work/cmake-prog/"
cat > "$work/cmake-prog/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(convert C)
find_package(xpbridge REQUIRED)
add_executable(convert convert.c)
target_link_libraries(convert PRIVATE xpbridge::xpbcodec)
CM
cmake -S "$work/cmake-prog" -B "$work/cmake-prog/b" -DCMAKE_PREFIX_PATH="$dest/usr" >/dev/null
cmake --build "$work/cmake-prog/b" >/dev/null
"$work/cmake-prog/b/convert"

step "systemd-analyze verify"
# verify resolves ExecStart and Documentation on this machine: point them at
# the DESTDIR's program and man pages, nothing else changes.
sed "s#/usr/sbin/xpbridge#$dest/usr/sbin/xpbridge#g" "$dest/lib/systemd/system/xpbridge.service" \
    > "$work/xpbridge.service"
# verify exits 0 on unknown keys and bad values, which it only prints: any
# output at all fails the check.
if ! out=$(MANPATH=$dest/usr/share/man SYSTEMD_LOG_LEVEL=warning \
    systemd-analyze verify "$work/xpbridge.service" 2>&1) || [ -n "$out" ]; then
    echo "$out" >&2
    echo "systemd-analyze verify: deploy/systemd/xpbridge.service is not clean" >&2
    exit 1
fi
echo "unit verified"
systemd-analyze security --offline=true "$work/xpbridge.service" 2>/dev/null | tail -n 1 || true

step "Prometheus alert rules"
promtool check rules "$top/deploy/prometheus/xpbridge-rules.yml"
promtool test rules "$top/deploy/prometheus/xpbridge-rules.test.yml"

step "the tuned profile, as tuned loads it"
# tuned's loader resolves include=latency-performance from the installed
# tuned and merges the packaged profile over it: the merged [cpu] must ask
# for 0 (the stock 1 us lets a KVM guest's idle cores halt).
/usr/bin/python3 - "$dest/usr/lib/tuned" <<'PY'
import sys
from tuned.profiles.factory import Factory
from tuned.profiles.loader import Loader
from tuned.profiles.locator import Locator
from tuned.profiles.merger import Merger
from tuned.profiles.variables import Variables
from tuned.utils.global_config import GlobalConfig

loader = Loader(Locator(["/usr/lib/tuned", sys.argv[1]]), Factory(), Merger(), GlobalConfig(),
                Variables())
cpu = loader.load(["xpbridge-latency"]).units["cpu"].options
print("xpbridge-latency: [cpu] force_latency = %s, governor = %s"
      % (cpu.get("force_latency"), cpu.get("governor")))
if cpu.get("force_latency") != "0" or cpu.get("governor") != "performance":
    sys.exit("the tuned profile xpbridge-latency does not load as force_latency=0 over "
             "latency-performance")
PY

step "package checks passed"

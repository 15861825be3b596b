#!/usr/bin/env bash
# Builds a man page from a program's --help text (and its commands' --help),
# through tools/help2scd.py and scdoc: the man page cannot drift from --help.
#   man_from_help.sh PROG NAME SECTION OUT [COMMAND ...]
set -euo pipefail
prog=$1 name=$2 section=$3 out=$4
shift 4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$prog" --help > "$work/main.help"
extra=()
for cmd in "$@"; do
    "$prog" "$cmd" --help > "$work/$cmd.help"
    extra+=("command $cmd=$work/$cmd.help")
done
python3 "$here/help2scd.py" "$name" "$section" "$work/main.help" "${extra[@]}" > "$work/page.scd"
scdoc < "$work/page.scd" > "$out.tmp"
mv "$out.tmp" "$out"

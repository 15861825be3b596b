#!/usr/bin/env bash
# Builds a man page from a Markdown document (tools/md2scd.py, then scdoc).
#   man_from_md.sh NAME SECTION SUMMARY FILE.md OUT
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python3 "$here/md2scd.py" "$1" "$2" "$3" "$4" | scdoc > "$5.tmp"
mv "$5.tmp" "$5"

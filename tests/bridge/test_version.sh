#!/usr/bin/env bash
# xpbridge --version names the running version of every library that parses or
# carries untrusted input (issue: operators must tell which update runs).
set -euo pipefail
out=$("$1" --version)
echo "$out"
fail=0
for want in 'xpbridge [0-9]' 'expat_[0-9]+\.[0-9]+' 'XML_NS' 'reparse deferral|no reparse deferral' \
    'protobuf-c [0-9]' 'libevent [0-9]' 'OpenSSL [0-9]' 'c-ares [0-9]' 'NNG [0-9]'; do
    if ! grep -Eq "$want" <<<"$out"; then
        echo "missing from --version: $want" >&2
        fail=1
    fi
done
exit $fail

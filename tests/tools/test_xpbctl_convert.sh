#!/usr/bin/env bash
# End-to-end tests of `xpbctl convert`: stable XML -> pb -> XML -> pb round
# trips over the corpus, JSON output, refused records reported by index with
# the others still converted, malformed XML, usage errors and exit statuses.
#   usage: test_xpbctl_convert.sh PATH/TO/xpbctl CORPUS_DIR
set -euo pipefail

xpbctl=${1:?usage: $0 XPBCTL CORPUS_DIR}
corpus=${2:?usage: $0 XPBCTL CORPUS_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

# run EXPECTED_STATUS OUT ERR ARGS...: runs xpbctl, checks its exit status.
run() {
    local want=$1 out=$2 err=$3
    shift 3
    local got=0
    "$xpbctl" "$@" >"$out" 2>"$err" || got=$?
    if [ "$got" -ne "$want" ]; then
        fail "xpbctl $* exited $got, expected $want; stderr: $(head -c 600 "$err")"
        return 1
    fi
}

# ---- 1. stable round trip over every corpus file -------------------------
n_files=0
for f in "$corpus"/*.xml; do
    name=$(basename "$f" .xml)
    n_files=$((n_files + 1))
    run 0 "$work/$name.1.pb" "$work/err" convert --from xml --to pb "$f" || continue
    run 0 "$work/$name.xml" "$work/err" convert --from pb --to xml "$work/$name.1.pb" || continue
    run 0 "$work/$name.2.pb" "$work/err" convert --from xml --to pb <"$work/$name.xml" || continue
    if cmp -s "$work/$name.1.pb" "$work/$name.2.pb"; then
        pass "stable round trip: $name"
    else
        fail "xml->pb->xml->pb changed the records of $name"
    fi
    [ -s "$work/$name.1.pb" ] || fail "$name: no records written"
done
[ "$n_files" -ge 10 ] || fail "corpus has only $n_files files"

# ---- 2. JSON output has the expected fields ------------------------------
printf '%s' "<message from='juliet@example.com/balcony' to='romeo@example.net' type='chat'><body>Wherefore art thou, Romeo?</body></message>" >"$work/one.xml"
run 0 "$work/one.pb" "$work/err" convert --from xml --to pb "$work/one.xml"
run 0 "$work/one.json" "$work/err" convert --from pb --to json <"$work/one.pb"
grep -q 'KIND_MESSAGE' "$work/one.json" || fail "pb->json lacks KIND_MESSAGE: $(cat "$work/one.json")"
grep -q 'Wherefore art thou, Romeo?' "$work/one.json" || fail "pb->json lacks the body"
grep -q 'TYPE_CHAT' "$work/one.json" || fail "pb->json lacks TYPE_CHAT"
[ "$(wc -l <"$work/one.json")" -eq 1 ] || fail "pb->json: expected one line"
run 0 "$work/one.direct.json" "$work/err" convert --from xml --to json "$work/one.xml"
cmp -s "$work/one.json" "$work/one.direct.json" || fail "xml->json differs from xml->pb->json"
pass "json output"

# ---- 3. a bad record in the middle: reported by index, the rest converted -
cat >"$work/badjid.xml" <<'EOF'
<message to='romeo@example.net' id='m1'><body>first</body></message>
<message to='@example.net' id='m2'><body>bad to</body></message>
<message to='romeo@example.net' id='m3'><body>third</body></message>
EOF
run 0 "$work/badjid.pb" "$work/err" convert --from xml --to pb "$work/badjid.xml"
if run 1 "$work/badjid.out" "$work/badjid.err" convert --from pb --to xml "$work/badjid.pb"; then
    grep -q '^xpbctl: stanza 2: ' "$work/badjid.err" || fail "bad JID: stderr does not name stanza 2: $(cat "$work/badjid.err")"
    grep -q 'to' "$work/badjid.err" || fail "bad JID: reason does not name the field"
    [ "$(grep -c '' "$work/badjid.err")" -eq 1 ] || fail "bad JID: expected exactly one refusal"
    grep -q 'first' "$work/badjid.out" && grep -q 'third' "$work/badjid.out" ||
        fail "bad JID: the good records were not converted"
    grep -q 'bad to' "$work/badjid.out" && fail "bad JID: the refused record was written"
    [ "$(wc -l <"$work/badjid.out")" -eq 2 ] || fail "bad JID: expected 2 output lines"
    pass "refused record in the middle"
fi
# pb -> json refuses it too (records are checked whatever the output).
run 1 "$work/badjid.json" "$work/err" convert --from pb --to json "$work/badjid.pb" &&
    grep -q 'stanza 2' "$work/err" || fail "pb->json did not refuse stanza 2"

# A record whose bytes are not a Stanza, between two good ones.
head -c 0 /dev/null >"$work/garbage.pb"
run 0 "$work/a.pb" "$work/err" convert --from xml --to pb "$work/one.xml"
{ cat "$work/a.pb"; printf '\003\377\377\377'; cat "$work/a.pb"; } >"$work/garbage.pb"
if run 1 "$work/garbage.out" "$work/garbage.err" convert --from pb --to xml "$work/garbage.pb"; then
    grep -q '^xpbctl: stanza 2: ' "$work/garbage.err" || fail "garbage record: $(cat "$work/garbage.err")"
    [ "$(grep -c 'Wherefore' "$work/garbage.out")" -eq 2 ] || fail "garbage record: others not converted"
    pass "undecodable record in the middle"
fi

# A truncated last frame.
{ cat "$work/a.pb" "$work/a.pb"; head -c 5 "$work/a.pb"; } >"$work/trunc.pb"
if run 1 "$work/trunc.out" "$work/trunc.err" convert --from pb --to xml "$work/trunc.pb"; then
    grep -q '^xpbctl: stanza 3: .*truncated' "$work/trunc.err" || fail "truncated frame: $(cat "$work/trunc.err")"
    [ "$(grep -c 'Wherefore' "$work/trunc.out")" -eq 2 ] || fail "truncated frame: others not converted"
    pass "truncated frame"
fi

# ---- 4. malformed XML: error with the index, earlier stanzas written -----
cat >"$work/malformed.xml" <<'EOF'
<message to='romeo@example.net'><body>fine</body></message>
<message to='romeo@example.net'><body>broken</message>
<message to='romeo@example.net'><body>never reached</body></message>
EOF
if run 1 "$work/malformed.out" "$work/malformed.err" convert --from xml --to xml "$work/malformed.xml"; then
    grep -q '^xpbctl: stanza 2: ' "$work/malformed.err" || fail "malformed XML: $(cat "$work/malformed.err")"
    grep -q 'fine' "$work/malformed.out" || fail "malformed XML: the first stanza was not written"
    grep -q 'never reached' "$work/malformed.out" && fail "malformed XML: went on after the error"
    pass "malformed XML"
fi
printf '%s' "<message to='romeo@example.net'><body>ok</body></message><message><body>cut" >"$work/cut.xml"
run 1 "$work/cut.out" "$work/cut.err" convert --from xml --to pb "$work/cut.xml" &&
    grep -q '^xpbctl: stanza 2: ' "$work/cut.err" || fail "XML cut mid-stanza not reported as stanza 2"
printf '%s' "<message><!-- no --></message>" >"$work/comment.xml"
run 1 "$work/c.out" "$work/c.err" convert --from xml --to pb "$work/comment.xml" &&
    grep -q '^xpbctl: stanza 1: ' "$work/c.err" || fail "comment not refused as stanza 1"

# ---- 5. limits ----------------------------------------------------------
big=$(head -c 12000 /dev/zero | tr '\0' 'a')
printf "<message to='romeo@example.net'><body>small</body></message><message><body>%s</body></message>" "$big" >"$work/big.xml"
run 0 "$work/big.pb" "$work/err" convert --from xml --to pb "$work/big.xml"
if run 1 "$work/big.out" "$work/big.err" convert --from xml --to pb --max-stanza-bytes 10000 "$work/big.xml"; then
    grep -q '^xpbctl: stanza 2: .*10000' "$work/big.err" || fail "stanza limit: $(cat "$work/big.err")"
    pass "XML stanza limit"
fi
if run 1 "$work/bigpb.out" "$work/bigpb.err" convert --from pb --to xml --max-stanza-bytes 10000 "$work/big.pb"; then
    grep -q '^xpbctl: stanza 2: .*10000' "$work/bigpb.err" || fail "record limit: $(cat "$work/bigpb.err")"
    grep -q 'small' "$work/bigpb.out" || fail "record limit: first record not converted"
    pass "record size limit"
fi

# ---- 6. usage ----------------------------------------------------------
run 0 "$work/help" "$work/err" --help && grep -q '^SYNOPSIS' "$work/help" || fail "xpbctl --help"
run 0 "$work/help" "$work/err" convert --help &&
    grep -q '^EXIT STATUS' "$work/help" && grep -q -- '--max-stanza-bytes' "$work/help" ||
    fail "xpbctl convert --help"
run 2 /dev/null "$work/err" || fail "no command"
run 2 /dev/null "$work/err" frobnicate || fail "unknown command"
run 2 /dev/null "$work/err" convert --to pb || fail "missing --from"
run 2 /dev/null "$work/err" convert --from yaml --to pb || fail "bad --from"
run 2 /dev/null "$work/err" convert --from json --to pb || fail "json input"
run 2 /dev/null "$work/err" convert --from xml --to pb --max-stanza-bytes 5 || fail "small limit"
run 2 /dev/null "$work/err" convert --from xml --to pb --bogus || fail "unknown option"
run 2 /dev/null "$work/err" convert --from xml --to pb a b || fail "two files"
run 1 /dev/null "$work/err" convert --from xml --to pb "$work/does-not-exist" || fail "missing file"
pass "usage errors"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "all xpbctl convert tests passed"

#!/usr/bin/env bash
# xpb-archive's commands end to end on an archive made by `import`, and the
# bad inputs: each gives one clear sentence, exit status 1, and leaves the
# database as it was (a damaged file, another SQLite database, a newer
# schema, a read-only file, a full disk, a broken export).
#   test_archive_cli.sh XPB_ARCHIVE XPBCTL
set -euo pipefail
archive=$1 xpbctl=$2
work=$(mktemp -d)
mounts=()
cleanup() {
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
fail=0
bad() { echo "test_archive_cli: $*"; fail=1; }

# expect STATUS PHRASE CMD...: the exit status and a phrase on stderr.
expect() {
    local want=$1 phrase=$2
    shift 2
    local rc=0
    "$@" >"$work/out" 2>"$work/err" || rc=$?
    [ "$rc" -eq "$want" ] || bad "$* exited $rc, not $want: $(cat "$work/err")"
    grep -qF -- "$phrase" "$work/err" || bad "$*: no \"$phrase\" in: $(cat "$work/err")"
}

same() { # FILE SUM: the file did not change
    [ "$(sha256sum <"$1")" = "$2" ] || bad "$1 changed"
}

# Events (xpb.v1.Event, length-delimited) around stanza records from XML.
events() { # XML_FILE OUT [REPEAT]
    "$xpbctl" convert --from xml --to pb "$1" >"$work/stanzas.pb"
    python3 - "$work/stanzas.pb" "$2" "${3:-1}" <<'PY'
import sys, time
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)
def field(num, wt, payload):
    return varint(num << 3 | wt) + payload
data = open(sys.argv[1], 'rb').read()
frames, i = [], 0
while i < len(data):
    n, shift = 0, 0
    while True:
        b = data[i]; i += 1
        n |= (b & 0x7f) << shift; shift += 7
        if not b & 0x80:
            break
    frames.append(data[i:i + n]); i += n
out = bytearray()
seq = 0
for r in range(int(sys.argv[3])):
    for st in frames:
        seq += 1
        if r:  # another copy: make the stanza id and body differ (field 4 id, 10 body)
            st = st + field(4, 2, varint(len(f'r{r}-{seq}')) + f'r{r}-{seq}'.encode())
        acc = b'me@example.com'
        ev = (field(1, 0, varint(seq)) + field(2, 0, varint(int(time.time() * 1e6) + seq)) +
              field(3, 2, varint(len(acc)) + acc) + field(10, 2, varint(len(st)) + st))
        out += varint(len(ev)) + ev
open(sys.argv[2], 'wb').write(out)
PY
}

cat >"$work/in.xml" <<'XML'
<message from='alice@example.com/a' to='me@example.com/b' type='chat' id='m1'><body>the zebrafish swims</body><stanza-id xmlns='urn:xmpp:sid:0' by='me@example.com' id='S1'/></message>
<message from='alice@example.com/a' to='me@example.com/b' type='chat' id='m2'><body>a second one</body></message>
<message from='bob@example.com/a' to='me@example.com/b' type='chat' id='m3'><body>hello from bob</body><delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/></message>
<message from='alice@example.com/a' to='me@example.com/b' type='chat' id='m4'><body>a second two</body><replace xmlns='urn:xmpp:message-correct:0' id='m2'/></message>
<message from='alice@example.com/a' to='me@example.com/b' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>
XML
events "$work/in.xml" "$work/ev.pb"
db=$work/a.db

# ---- the commands on a good archive ------------------------------------------
"$archive" import --db "$db" "$work/ev.pb" | grep -qF "imported 3 messages and 1 changes" ||
    bad "import did not store 3 messages and 1 change"
"$archive" import --db "$db" "$work/ev.pb" | grep -qF "imported 0 messages and 0 changes" ||
    bad "a second import stored something again"
[ "$("$archive" search --db "$db" zebrafish | wc -l)" -eq 1 ] || bad "search zebrafish"
"$archive" search --db "$db" --json two | grep -qF '"edited_body":"a second two"' ||
    bad "search does not find the corrected text"
[ -z "$("$archive" search --db "$db" --with bob@example.com zebrafish)" ] || bad "--with"
"$archive" search --db "$db" --order relevance --account me@example.com second | grep -qF "a second two [corrected]" ||
    bad "--order relevance --account"
[ -z "$("$archive" search --db "$db" --account other@example.com second)" ] || bad "--account"
[ "$("$archive" search --db "$db" --until 2021-01-01 hello | wc -l)" -eq 1 ] || bad "--until"
[ -z "$("$archive" search --db "$db" --since 2021-01-01 hello)" ] || bad "--since"
expect 2 "takes a date" "$archive" search --db "$db" --since yesterday x
[ "$("$archive" export --db "$db" --format xml | grep -c '<forwarded')" -eq 4 ] ||
    bad "export xml: not 4 forwarded stanzas"
"$archive" export --db "$db" --format xml | grep -qF "<delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/>" ||
    bad "export xml: bob's delay stamp is not the message's time"
[ "$("$archive" export --db "$db" --format json --since 2021-01-01 | wc -l)" -eq 3 ] ||
    bad "export --since"
"$archive" stats --db "$db" | grep -qE '^ +2  me@example.com  alice@example.com$' ||
    bad "stats: alice's conversation does not count 2"
[ "$("$archive" prune --db "$db" --keep-days 30 | grep -o 'pruned [0-9]*')" = "pruned 1" ] ||
    bad "prune --keep-days 30 did not prune bob's 2020 message"
"$archive" vacuum --db "$db" || bad "vacuum"
expect 2 "--keep-days" "$archive" prune --db "$db"
expect 2 "unknown command" "$archive" frobnicate --db "$db"

# sql: the bodies (only in the records) through the view xpb-archive adds;
# plain sqlite3 reads the same view without them. Writes are refused.
[ "$("$archive" sql --db "$db" "SELECT stanza_id || ' ' || body FROM message WHERE body LIKE '%zebrafish%'")" = "S1 the zebrafish swims" ] ||
    bad "sql: alice's message by its body"
"$archive" sql --db "$db" --json "SELECT id, body, edited_body FROM message WHERE kind = 0 AND edited_body IS NOT NULL" |
    grep -qE '^\{"id":[0-9]+,"body":"a second one","edited_body":"a second two"\}$' || bad "sql --json"
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute('select group_concat(msg_id) from message').fetchone()[0])" "$db" |
    grep -qF "m1,m2,m4" || bad "plain sqlite3 cannot read the view message"
sum=$(sha256sum <"$db")
expect 1 "only queries that write nothing" "$archive" sql --db "$db" "DELETE FROM msg"
expect 1 "one statement only" "$archive" sql --db "$db" "SELECT 1; DELETE FROM msg"
expect 1 "no such column: nosuch" "$archive" sql --db "$db" "SELECT nosuch FROM message"
same "$db" "$sum"

# ---- bad inputs: refused, named, nothing written -------------------------------
printf 'SQLite format 3\0 but then nothing sensible at all %.0s' {1..40} >"$work/garbage.db"
sum=$(sha256sum <"$work/garbage.db")
expect 1 "not an xpb-archive database, or a damaged one" "$archive" stats --db "$work/garbage.db"
expect 1 "not an xpb-archive database" "$archive" import --db "$work/garbage.db" "$work/ev.pb"
same "$work/garbage.db" "$sum"

python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('create table t(x)'); c.commit()" "$work/other.db"
expect 1 "without the archive's schema" "$archive" import --db "$work/other.db" "$work/ev.pb"

cp "$db" "$work/newer.db"
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('pragma user_version=7'); c.commit()" "$work/newer.db"
sum=$(sha256sum <"$work/newer.db")
expect 1 "schema version 7 was written by a newer xpb-archive" "$archive" import --db "$work/newer.db" "$work/ev.pb"
expect 1 "newer xpb-archive" "$archive" search --db "$work/newer.db" zebrafish
same "$work/newer.db" "$sum"

# Schema 2 (text bodies and ids, the first release's layout after schema 1):
# refused with the way out (export with the xpb-archive that wrote it, import).
cp "$db" "$work/older.db"
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('pragma user_version=2'); c.commit()" "$work/older.db"
sum=$(sha256sum <"$work/older.db")
expect 1 "schema version 2 was written by an older xpb-archive (this one reads 3 only; export the archive with that one, then import it)" \
    "$archive" import --db "$work/older.db" "$work/ev.pb"
expect 1 "older xpb-archive" "$archive" sql --db "$work/older.db" "SELECT 1"
same "$work/older.db" "$sum"

expect 1 "no archive there" "$archive" search --db "$work/missing.db" x
[ ! -e "$work/missing.db" ] || bad "search created a database"

# A broken export: cut in the middle of a record. Nothing of it is stored.
head -c 200 "$work/ev.pb" >"$work/cut.pb"
expect 1 "is cut short: nothing imported" "$archive" import --db "$work/fresh.db" "$work/cut.pb"

# Read-only: a read-only bind mount for root (who writes through modes), else modes.
mkdir "$work/ro"
cp "$db" "$work/ro/a.db"
if [ "$(id -u)" -eq 0 ]; then
    if mount --bind "$work/ro" "$work/ro" && mount -o remount,bind,ro "$work/ro"; then
        mounts+=("$work/ro")
    else
        echo "test_archive_cli: cannot make a read-only mount: skipping the read-only case"
    fi
else
    chmod 0444 "$work/ro/a.db"
    chmod 0555 "$work/ro"
fi
if [ "${#mounts[@]}" -gt 0 ] || [ "$(id -u)" -ne 0 ]; then
    sum=$(sha256sum <"$work/ro/a.db")
    expect 1 "read-only" "$archive" import --db "$work/ro/a.db" "$work/ev.pb"
    expect 1 "read-only" "$archive" prune --db "$work/ro/a.db" --keep-days 1
    same "$work/ro/a.db" "$sum"
fi

# A full disk: a 192 KiB tmpfs (root), else a file size limit; the import is
# refused whole and the archive keeps what it had.
for i in $(seq 1 300); do
    printf "<message from='carol@example.com/a' to='me@example.com' type='chat' id='big%d'><body>%d %s</body></message>\n" \
        "$i" "$i" "$(head -c 1500 /dev/zero | tr '\0' 'x')"
done >"$work/big.xml"
events "$work/big.xml" "$work/big.pb"
mkdir "$work/small"
full_db=$work/small/a.db
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=192k tmpfs "$work/small"; then
    mounts+=("$work/small")
    limit=()
else
    limit=(bash -c 'ulimit -f 192; exec "$@"' _)
fi
"$archive" import --db "$full_db" "$work/ev.pb" >/dev/null
expect 1 "nothing imported" "${limit[@]}" "$archive" import --db "$full_db" "$work/big.pb"
grep -qE "disk is full|write failed" "$work/err" || bad "the full disk is not named: $(cat "$work/err")"
[ "$("$archive" stats --db "$full_db" --json | grep -o '"messages":[0-9]*' | tail -n 1)" = '"messages":3' ] ||
    bad "after a full disk the archive does not hold exactly what it had"

[ $fail -eq 0 ] && echo "test_archive_cli: commands and bad inputs behave"
exit $fail

#!/usr/bin/env bash
# The live demo of the README: installs what is missing (Debian 12), builds,
# starts a throw-away Prosody on 127.0.0.1 and xpbridge for bot@xpb.test, then
# lets a person (alice, slixmpp: tools/demo_person.py) and a backend (xpbctl)
# talk through the bridge while `xpbctl tail --sizes` shows the records.
# Everything it starts is stopped on exit; everything it writes is in one
# temporary directory, removed on exit.
#   bash tools/demo.sh              # narrated, with short pauses
#   DEMO_FAST=1 bash tools/demo.sh  # no pauses
#   DEMO_KEEP=1 bash tools/demo.sh  # keep the temporary directory (logs)
#   bash tools/demo.sh --cluster    # 3 NATS nodes, 2 bridges sharing 6 accounts,
#                                   # one bridge killed (tools/demo_cluster.sh)
set -euo pipefail
CLUSTER=''
case "${1:-}" in
--cluster) CLUSTER=1 ;;
'') ;;
*) echo "usage: bash tools/demo.sh [--cluster]" >&2; exit 2 ;;
esac
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"

DOMAIN=xpb.test
BOT=bot@$DOMAIN
ALICE=alice@$DOMAIN
PY=/usr/bin/python3

# ---- presentation -------------------------------------------------------------------
if [ -t 1 ]; then B=$'\e[1m' D=$'\e[2m' C=$'\e[36m' G=$'\e[32m' Y=$'\e[33m' R=$'\e[31m' N=$'\e[0m'
else B='' D='' C='' G='' Y='' R='' N=''; fi
step_no=0
step() { step_no=$((step_no + 1)); printf '\n%s── %d. %s%s\n' "$B" "$step_no" "$*" "$N"; }
say() { printf '%s\n' "$*" | fold -s -w 88 | sed 's/^/   /'; }
pause() { [ -n "${DEMO_FAST:-}" ] || sleep "${1:-1.2}"; }
die() { printf '%sdemo: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }
show_cmd() {  # the command as a reader would type it; continuation lines indented
    local l p='$ '
    while IFS= read -r l; do printf '   %s%s%s%s\n' "$C" "$p" "$l" "$N"; p='    '; done <<<"$*"
}

# ---- cleanup: stop by PID what we started, remove the temp dir -------------------------
pids=()
tmp=''
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    trap '' PIPE
    if [ -n "${alice_fd:-}" ]; then
        { echo quit >&"$alice_fd"; exec {alice_fd}>&-; } 2>/dev/null || true
    fi
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        p=${pids[i]}
        kill -TERM "$p" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ -n "$tmp" ]; then
        if [ -n "${DEMO_KEEP:-}" ] || [ "$rc" -eq 1 ]; then
            printf '%s(logs kept in %s)%s\n' "$D" "$tmp" "$N" >&2
        else
            rm -rf "$tmp"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'printf "\ninterrupted: stopping what the demo started\n" >&2; exit 130' INT
trap 'exit 143' TERM

tmp=$(mktemp -d /tmp/xpb-demo-XXXXXX)
chmod 700 "$tmp"

# Wait until FILE has a line matching PATTERN (a process that should be
# writing it must stay alive); print the lines not shown yet, with PREFIX.
declare -A shown
relay() {  # relay FILE PREFIX PATTERN [TIMEOUT_S] [PID] [ONLY_LINES_MATCHING]
    local file=$1 prefix=$2 pattern=$3 timeout=${4:-15} pid=${5:-} only=${6:-} n new
    local deadline=$((SECONDS + timeout))
    until grep -q -- "$pattern" "$file" 2>/dev/null; do
        [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && die "$(basename "$file") ended early"
        [ $SECONDS -ge $deadline ] && die "waited ${timeout}s for \"$pattern\" in $file"
        sleep 0.05
    done
    sleep 0.1  # let lines written together be shown together
    n=${shown[$file]:-0}
    new=$(tail -n +$((n + 1)) "$file")  # read once: the writer may be adding lines
    shown[$file]=$((n + $(printf '%s\n' "$new" | wc -l)))
    printf '%s\n' "$new" | grep -E -- "${only:-.}" | sed "s/^/   $prefix/" || true
}

# ---- 0. install and build ---------------------------------------------------------------
printf '%sxpbridge live demo%s — a person, the bridge and a backend, on this machine only.\n' "$B" "$N"
step "Installing what is missing and building"
. tools/deps.sh
xpb_install_deps
xpb_upgrade_parsers
say "cmake release build in build/release (log: $tmp/build.log) ..."
if ! { cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
       cmake --build build/release -j "$(nproc 2>/dev/null || echo 2)" --target xpbridge xpbctl
     } >"$tmp/build.log" 2>&1; then
    tail -n 30 "$tmp/build.log" >&2
    die "the build failed"
fi
XPBRIDGE=$top/build/release/bridge/xpbridge
XPBCTL_BIN=$top/build/release/tools/xpbctl
say "built $(basename "$XPBRIDGE") and $(basename "$XPBCTL_BIN")."

# ---- 1. a local XMPP server ---------------------------------------------------------------
step "A local XMPP server: Prosody on 127.0.0.1, accounts $BOT and $ALICE"
port=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$tmp/prosody/data/${DOMAIN//./%2e}/accounts"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$DOMAIN" \
    -addext "subjectAltName=DNS:$DOMAIN" -keyout "$tmp/prosody/cert.key" \
    -out "$tmp/prosody/cert.crt" >/dev/null 2>&1 || die "openssl could not make a certificate"
CA=$tmp/prosody/cert.crt
users="bot alice"
[ -z "$CLUSTER" ] || users="$users u1 u2 u3 u4 u5 u6"
for u in $users; do  # internal_plain storage: one small Lua file per account
    printf 'return {\n\t["password"] = "%s-demo-pw";\n};\n' "$u" \
        >"$tmp/prosody/data/${DOMAIN//./%2e}/accounts/$u.dat"
done
cat >"$tmp/prosody/prosody.cfg.lua" <<EOF
-- Throw-away Prosody for tools/demo.sh: loopback only, no s2s, no HTTP.
run_as_root = true
daemonize = false
pidfile = "$tmp/prosody/prosody.pid"
data_path = "$tmp/prosody/data"
certificates = "$tmp/prosody/none"
plugin_paths = { }
log = { info = "$tmp/prosody/prosody.log" }
interfaces = { "127.0.0.1" }
c2s_interfaces = { "127.0.0.1" }
c2s_ports = { $port }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "version"; "smacks"; "posix" }
modules_disabled = { "s2s"; "s2s_auth_certs"; "dialback"; "http"; "offline" }
authentication = "internal_plain"
c2s_require_encryption = true
ssl = { certificate = "$tmp/prosody/cert.crt"; key = "$tmp/prosody/cert.key" }
VirtualHost "$DOMAIN"
EOF
prosody -F --config "$tmp/prosody/prosody.cfg.lua" </dev/null >"$tmp/prosody/stdout.log" 2>&1 &
pids+=($!)
prosody_pid=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$prosody_pid" 2>/dev/null || { cat "$tmp/prosody/stdout.log" >&2; die "Prosody did not start"; }
    sleep 0.1
done
say "Prosody $(dpkg-query -W -f='${Version}' prosody 2>/dev/null | cut -d- -f1) listens on 127.0.0.1:$port for domain $DOMAIN, with a"
say "self-signed certificate made just now ($CA), which the bridge and alice trust."
pause

if [ -n "$CLUSTER" ]; then
    . "$top/tools/demo_cluster.sh"
    exit 0
fi

# ---- 2. the bridge ---------------------------------------------------------------------------
step "The bridge: xpbridge keeps $BOT online for the backend"
EV=ipc://$tmp/events
RQ=ipc://$tmp/requests
printf 'bot-demo-pw\n' >"$tmp/bot.pass"
chmod 600 "$tmp/bot.pass"
show_cmd "xpbridge --jid $BOT --password-file bot.pass --host 127.0.0.1 --port $port \\
    --ca-file cert.crt --events $EV \\
    --requests $RQ"
"$XPBRIDGE" --jid "$BOT" --password-file "$tmp/bot.pass" --host 127.0.0.1 --port "$port" \
    --ca-file "$CA" --events "$EV" --requests "$RQ" --metrics 0 --roster \
    --log-file "$tmp/xpbridge.log" --state-dir "$tmp/state" </dev/null >/dev/null 2>"$tmp/xpbridge.stderr" &
pids+=($!)
bridge_pid=$!
relay "$tmp/xpbridge.log" "${D}xpbridge│${N} " "session $BOT online as" 20 "$bridge_pid" \
    'ready|online as'
say "Every xpbctl command below also gets --events/--requests with these two URLs."
xpbctl() { "$XPBCTL_BIN" "$1" --requests "$RQ" "${@:2}"; }
pause

# ---- 3. the backend listens --------------------------------------------------------------------
step "The backend subscribes to the bridge's events"
show_cmd "xpbctl tail --sizes &"
"$XPBCTL_BIN" tail --sizes --events "$EV" </dev/null >"$tmp/tail.log" 2>&1 &
pids+=($!)
tail_pid=$!
say "Each event will be shown as a line; received stanzas end with the size of their"
say "Protobuf record against their size as XML on the wire."
sleep 0.5  # PUB/SUB: the subscription must be in place before the first event

# ---- 4. alice comes online and writes -----------------------------------------------------------
step "A person, alice (slixmpp), comes online and writes to $BOT"
mkfifo "$tmp/alice.in"
"$PY" "$top/tools/demo_person.py" --jid "$ALICE" --password alice-demo-pw --port "$port" \
    --ca-file "$CA" --ready-file "$tmp/alice.jid" <"$tmp/alice.in" >"$tmp/alice.log" 2>&1 &
pids+=($!)
alice_pid=$!
exec {alice_fd}>"$tmp/alice.in"
ALICE_P="${G}alice   │${N} "
TAIL_P="${Y}backend │${N} "
relay "$tmp/alice.log" "$ALICE_P" 'online as' 20 "$alice_pid"
ALICE_FULL=$(cat "$tmp/alice.jid")
pause 0.6
echo "say $BOT Hi bot! Is the build green?" >&"$alice_fd"
relay "$tmp/alice.log" "$ALICE_P" 'sends to' 10 "$alice_pid"
relay "$tmp/tail.log" "$TAIL_P" 'Is the build green' 10 "$tail_pid"
say "The backend received the message as a record; it never parsed any XML."
pause 2

# ---- 5. the backend answers ----------------------------------------------------------------------
step "The backend answers with xpbctl send"
show_cmd "xpbctl send --account $BOT --to $ALICE_FULL --thread build-42 'Yes: 312 tests passed.'"
sent_id=$(xpbctl send --account "$BOT" --to "$ALICE_FULL" --thread build-42 'Yes: 312 tests passed.')
say "${D}sent with id${N} $sent_id"
relay "$tmp/alice.log" "$ALICE_P" 'received a chat message' 10 "$alice_pid"
relay "$tmp/tail.log" "$TAIL_P" "delivery acked id=$sent_id" 10 "$tail_pid"
say "The server acknowledged it (stream management), so the backend gets a delivery event."
pause 2

# ---- 6. iq round trips ------------------------------------------------------------------------------
step "An iq round trip: the backend pings alice, then asks the server what it supports"
show_cmd "xpbctl iq --account $BOT --to $ALICE_FULL --ping"
xpbctl iq --account "$BOT" --to "$ALICE_FULL" --ping | sed 's/^/   ← /'
pause 1
show_cmd "xpbctl iq --account $BOT --to $DOMAIN --disco-info"
xpbctl iq --account "$BOT" --to "$DOMAIN" --disco-info >"$tmp/disco.xml"
"$PY" - "$tmp/disco.xml" <<'EOF'
import sys, xml.dom.minidom
for line in open(sys.argv[1]):
    pretty = xml.dom.minidom.parseString(line).toprettyxml(indent='  ')
    for l in pretty.splitlines()[1:]:
        print('   ← ' + l)
EOF
relay "$tmp/tail.log" "$TAIL_P" 'disco#info' 10 "$tail_pid" ' iq '
say "The responses also reach subscribers as events, like every stanza the bridge receives."
pause 2

# ---- 7. presence ------------------------------------------------------------------------------------
step "Presence: alice subscribes to the bot, the backend approves, then changes its presence"
echo "subscribe $BOT" >&"$alice_fd"
relay "$tmp/alice.log" "$ALICE_P" 'asks to see' 10 "$alice_pid"
relay "$tmp/tail.log" "$TAIL_P" 'subscribe' 10 "$tail_pid"
pause 1
show_cmd "xpbctl presence --account $BOT --to $ALICE --type subscribed"
xpbctl presence --account "$BOT" --to "$ALICE" --type subscribed | sed 's/^/   /'
relay "$tmp/alice.log" "$ALICE_P" "sees $BOT.* as" 10 "$alice_pid"
pause 1
show_cmd "xpbctl presence --account $BOT --show away --status 'Out for lunch, back at 2'"
xpbctl presence --account "$BOT" --show away --status 'Out for lunch, back at 2' | sed 's/^/   /'
relay "$tmp/alice.log" "$ALICE_P" 'as away' 10 "$alice_pid"
pause 2

# ---- 8. wrap up ---------------------------------------------------------------------------------------
step "What the bridge did"
show_cmd "xpbctl sessions"
xpbctl sessions | sed 's/^/   /'
step "Stopping everything this demo started"
echo quit >&"$alice_fd"
exec {alice_fd}>&-
alice_fd=''
for _ in $(seq 30); do kill -0 "$alice_pid" 2>/dev/null || break; sleep 0.1; done
say "alice logged out; xpbridge (SIGTERM: clean shutdown), the tail and Prosody stop now,"
say "and $tmp is removed. To run the bridge against your own server, see"
say "\"Point it at your own server\" in README.md."

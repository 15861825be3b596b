# Sourced by tools/demo.sh --cluster after Prosody is up (accounts u1..u6):
# three nats-server nodes with JetStream on 127.0.0.1, two bridges that share
# the six accounts by leases (docs/scaling.md), kill -9 of one bridge, and its
# accounts coming back on the other. Uses demo.sh's step/say/show_cmd/die,
# pids (stopped on exit) and $tmp.
command -v nats-server >/dev/null || die "nats-server is not installed (apt-get install nats-server)"
free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

step "A NATS cluster: three nats-server nodes with JetStream on 127.0.0.1"
cp=() rp=()
for i in 0 1 2; do cp+=("$(free_port)"); rp+=("$(free_port)"); done
for i in 0 1 2; do
    routes=""
    for j in 0 1 2; do [ "$j" = "$i" ] || routes="${routes:+$routes,}nats://127.0.0.1:${rp[$j]}"; done
    nats-server -js -a 127.0.0.1 -p "${cp[$i]}" -sd "$tmp/nats$i" --server_name "n$i" \
        --cluster_name demo --cluster "nats://127.0.0.1:${rp[$i]}" --routes "$routes" \
        </dev/null >"$tmp/nats$i.log" 2>&1 &
    pids+=($!)
done
show_cmd "nats-server -js -p ${cp[0]} -sd nats0 --cluster nats://127.0.0.1:${rp[0]} --routes ...   # and n1, n2"
servers="\"nats://127.0.0.1:${cp[0]}\", \"nats://127.0.0.1:${cp[1]}\", \"nats://127.0.0.1:${cp[2]}\""
for i in 0 1 2; do relay "$tmp/nats$i.log" "n$i: " "Server is ready" 20 "" "Server is ready"; done
sleep 2  # JetStream elects its meta leader
say "Events go to stream XPB_EVENTS (3 replicas); account ownership to KV bucket xpb_owners."
pause

step "Two bridges, one account list: u1..u6@$DOMAIN, shared by leases"
accounts=""
for u in u1 u2 u3 u4 u5 u6; do
    printf '%s-demo-pw\n' "$u" >"$tmp/$u.pass"
    chmod 600 "$tmp/$u.pass"
    accounts="$accounts${accounts:+, }{ jid = \"$u@$DOMAIN\"; password_file = \"$tmp/$u.pass\"; host = \"127.0.0.1\"; port = $port; ca_file = \"$CA\"; stream_management = false; }"
done
bpid=()
for b in a b; do
    cat >"$tmp/bridge-$b.conf" <<EOC
bus = { backend = "nats"; };
metrics = { listen = "0"; };
nats = { servers = [ $servers ]; bridge_id = "bridge-$b"; replicas = 3; lease_ttl_s = 10; };
accounts = ( $accounts );
EOC
    "$XPBRIDGE" --config "$tmp/bridge-$b.conf" --log-file "$tmp/bridge-$b.log" \
        </dev/null >/dev/null 2>"$tmp/bridge-$b.stderr" &
    pids+=($!)
    bpid+=($!)
done
show_cmd "cat bridge-a.conf
bus = { backend = \"nats\"; };
nats = { servers = [ ...three nodes... ]; bridge_id = \"bridge-a\"; replicas = 3; lease_ttl_s = 10; };
accounts = ( { jid = \"u1@$DOMAIN\"; ... }, ... u6 );"
show_cmd "xpbridge --config bridge-a.conf &  xpbridge --config bridge-b.conf &"
online() { grep -c ' online as ' "$tmp/bridge-$1.log" 2>/dev/null || true; }
owned() { grep -o 'leases: [^ ]* claimed' "$tmp/bridge-$1.log" 2>/dev/null | cut -d' ' -f2 | tr '\n' ' '; }
deadline=$((SECONDS + 40))
until [ $(($(online a) + $(online b))) -ge 6 ]; do
    [ $SECONDS -lt $deadline ] || die "the six accounts did not come online (logs: $tmp)"
    sleep 0.2
done
say "bridge-a holds: $(owned a)"
say "bridge-b holds: $(owned b)"
say "(NATS delivers a request for an account to the bridge subscribed to xpb.req.<its token>.)"
pause

step "A backend talks to whichever bridge holds the account"
show_cmd "xpbctl --nats nats://127.0.0.1:${cp[1]} status --json"
"$XPBCTL_BIN" --nats "nats://127.0.0.1:${cp[1]}" status --json | sed 's/^/   ← /'
first=$(owned a | cut -d' ' -f1)
show_cmd "xpbctl --nats nats://127.0.0.1:${cp[2]} iq --account $first --to $DOMAIN --ping"
"$XPBCTL_BIN" --nats "nats://127.0.0.1:${cp[2]}" iq --account "$first" --to "$DOMAIN" --ping |
    sed 's/^/   ← /'
pause

step "kill -9 bridge-a: its claims lapse after the ttl (10 s), bridge-b takes the accounts"
show_cmd "kill -9 ${bpid[0]}"
kill -KILL "${bpid[0]}"
wait "${bpid[0]}" 2>/dev/null || true  # reaped here: no "Killed" line from the shell
t0=$SECONDS
before=$(online b)
moved=$(owned a | wc -w)
deadline=$((SECONDS + 30))
until [ $(($(online b) - before)) -ge "$moved" ]; do
    [ $SECONDS -lt $deadline ] || die "bridge-b did not take the accounts over (logs: $tmp)"
    sleep 0.2
done
say "After $((SECONDS - t0)) s bridge-b holds all six: $(owned b)"
say "No account was online twice: bridge-b could create each key only after bridge-a's lapsed."
show_cmd "xpbctl --nats nats://127.0.0.1:${cp[0]} status --json"
"$XPBCTL_BIN" --nats "nats://127.0.0.1:${cp[0]}" status --json | sed 's/^/   ← /'
printf '\n%sDone.%s Everything stops now (PIDs); docs/scaling.md explains the design.\n' "$G" "$N"

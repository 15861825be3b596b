#!/usr/bin/env bash
# The bus hop through NATS JetStream against NNG, in one xpb-bus-bench run:
# starts one nats-server (R=1) and a 3-node cluster (R=3) on 127.0.0.1 and
# free ports with their own store directories under a temporary directory,
# runs the benchmark, stops the servers by PID and removes the directory.
#   tools/nats_bench.sh [BUILD_DIR] [xpb-bus-bench options...]
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$top/build/release}
shift || true
bench=$build/tools/xpb-bus-bench
command -v nats-server >/dev/null || { echo "nats_bench: nats-server is not installed" >&2; exit 77; }
work=$(mktemp -d /tmp/xpb-nats-bench-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { # http port
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$1/healthz" 2>/dev/null | grep -q '"ok"' && return 0
        sleep 0.2
    done
    echo "nats_bench: a nats-server did not get ready" >&2; exit 1
}
p1=$(free_port) h1=$(free_port)
nats-server -js -a 127.0.0.1 -p "$p1" -m "$h1" -sd "$work/single" --server_name single \
    >"$work/single.log" 2>&1 &
pids+=($!)
c=() r=() h=()
for i in 0 1 2; do c+=("$(free_port)"); r+=("$(free_port)"); h+=("$(free_port)"); done
for i in 0 1 2; do
    routes=""
    for j in 0 1 2; do [ "$j" = "$i" ] || routes="${routes:+$routes,}nats://127.0.0.1:${r[$j]}"; done
    nats-server -js -a 127.0.0.1 -p "${c[$i]}" -m "${h[$i]}" -sd "$work/n$i" --server_name "n$i" \
        --cluster_name bench --cluster "nats://127.0.0.1:${r[$i]}" --routes "$routes" \
        >"$work/n$i.log" 2>&1 &
    pids+=($!)
done
wait_ready "$h1"
for i in 0 1 2; do wait_ready "${h[$i]}"; done
"$bench" "$@" --nats-r1 "nats://127.0.0.1:$p1" \
    --nats-r3 "nats://127.0.0.1:${c[0]},nats://127.0.0.1:${c[1]},nats://127.0.0.1:${c[2]}"

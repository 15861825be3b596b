#!/usr/bin/env bash
# Smoke test for xpb-load against the real xpbridge: a tiny run must complete
# every scenario (the tool exits 1 when any event, send, session or scrape is
# missing) and print JSON whose figures are numbers; a bridge that delivers
# nothing must make it fail. It checks that the tool works, never how fast.
#   bash tests/tools/test_xpb_load_smoke.sh path/to/xpb-load path/to/xpbridge
set -euo pipefail
load=${1:?usage: test_xpb_load_smoke.sh path/to/xpb-load path/to/xpbridge}
bridge=${2:?usage: test_xpb_load_smoke.sh path/to/xpb-load path/to/xpbridge}
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

# Not "--help | grep -q": grep stops reading at the first match and the tool,
# still writing, dies of SIGPIPE, which pipefail turns into a failure.
"$load" --help >"$out"
grep -q -- '--latency-count' "$out"
if "$load" --runs 0 >/dev/null 2>&1; then
    echo "FAIL: --runs 0 was accepted" >&2
    exit 1
fi

tiny=(--messages 300 --sends 100 --idle 5 --latency-count 50 --latency-rate 2000 --runs 1)
if ! timeout 120 "$load" --xpbridge "$bridge" "${tiny[@]}" --json >"$out" 2>"$err"; then
    cat "$err" >&2
    echo "FAIL: xpb-load did not complete against $bridge" >&2
    exit 1
fi

/usr/bin/python3 - "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
m = d["median"]
need = ["inbound_1_account_per_s", "inbound_with_idle_per_s", "outbound_16_in_flight_per_s",
        "outbound_63_in_flight_per_s", "outbound_send_batch_per_s", "outbound_16_queue_full", "latency_p50_us",
        "latency_p99_us", "rss_1_account_kib", "rss_with_idle_kib", "accounts_online_s",
        "metrics_scrape_ms", "libstrophe_inbound_per_s", "libstrophe_outbound_per_s",
        "libstrophe_memory_per_idle_session_kib", "libstrophe_idle_online_s",
        "latency_in_bridge_p50_us", "nng_pub_sub_alone_p50_us", "inbound_1_account_xpb_load_cpu_pct",
        "thread_wake_same_core_p50_us", "outbound_send_batch_bridge_cpu_us_per_stanza"]
for k in need:
    v = m.get(k)
    assert isinstance(v, (int, float)) and not isinstance(v, bool), f"{k}: {v!r} is not a number"
for k in ["inbound_1_account_per_s", "outbound_16_in_flight_per_s", "outbound_send_batch_per_s",
          "libstrophe_inbound_per_s", "outbound_send_batch_bridge_cpu_us_per_stanza"]:
    assert m[k] > 0, f"{k} is {m[k]}"
assert m["latency_p50_us"] <= m["latency_p99_us"], "p50 above p99"
# The bridge's share ends where it publishes: before the subscriber has it.
assert m["latency_in_bridge_p50_us"] <= m["latency_p50_us"], "the bridge's share above the hop"
assert m["events_missing_by_seq"] == 0, "events missing by seq"
assert len(d["each_run"]) == 1 and isinstance(d["goals"], dict)
PY

# --busy: the first flood split over several accounts, all of it delivered.
# --loops-ratio: the same flood on loops = 0 and on loops = 2, both delivered.
if ! timeout 120 "$load" --xpbridge "$bridge" "${tiny[@]}" --busy 3 --loops 2 --loops-ratio \
        --no-peer --json >"$out" 2>"$err"; then
    cat "$err" >&2
    echo "FAIL: xpb-load --busy 3 --loops-ratio did not complete" >&2
    exit 1
fi
/usr/bin/python3 - "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
m = d["median"]
assert d["busy"] == 3 and m["inbound_1_account_per_s"] > 0, d
for k in ["inbound_busy_loops_0_per_s", "inbound_busy_loops_n_per_s", "inbound_loops_ratio"]:
    assert isinstance(m.get(k), (int, float)) and m[k] > 0, f"{k}: {m.get(k)!r}"
assert m["loops_n"] == 2, m["loops_n"]
PY
if "$load" --busy 400 --messages 300 >/dev/null 2>&1; then
    echo "FAIL: --busy above its bound was accepted" >&2
    exit 1
fi

# A "bridge" that exits at once delivers nothing: the tool must say so and fail.
if timeout 60 "$load" --xpbridge /bin/true "${tiny[@]}" --no-peer >/dev/null 2>"$err"; then
    echo "FAIL: xpb-load succeeded with a bridge that delivers nothing" >&2
    exit 1
fi
grep -q "exited" "$err" || { cat "$err" >&2; echo "FAIL: no reason given" >&2; exit 1; }
echo "xpb-load smoke: ok"

#!/usr/bin/env bash
# Smoke test for xpb-bench: a tiny run must succeed and print one JSON object
# whose headline keys are numbers. Structure only; speeds are never asserted.
#   bash tests/tools/test_bench_smoke.sh path/to/xpb-bench
set -euo pipefail
bench=${1:?usage: test_bench_smoke.sh path/to/xpb-bench}
out=$(mktemp)
plots=$(mktemp -d)
trap 'rm -rf "$out" "$plots"' EXIT

"$bench" --help | grep -q -- '--min-time'
if "$bench" --count 0 >/dev/null 2>&1; then
    echo "FAIL: --count 0 was accepted" >&2
    exit 1
fi

# PATH without gnuplot: --plot must still write the data and script.
PATH=/nonexistent "$bench" --count 300 --min-time 0.01 --json --plot "$plots" >"$out"

/usr/bin/python3 - "$out" <<'EOF'
import json, math, sys
d = json.load(open(sys.argv[1]))
keys = ["size_ratio_pb_xml", "size_ratio_pbz_xmlz", "xml_to_pb_vs_expat",
        "xml_to_pb_vs_libstrophe", "pb_to_xml_stanzas_per_s", "allocs_per_stanza",
        "xml_to_pb_stanzas_per_s", "expat_stanzas_per_s", "libstrophe_stanzas_per_s",
        "xml_bytes", "pb_bytes", "generic_bytes", "json_bytes", "xml_zsync_bytes",
        "pb_zsync_bytes", "xml_zstream_bytes", "pb_zstream_bytes"]
for k in keys:
    v = d.get(k)
    assert isinstance(v, (int, float)) and not isinstance(v, bool), f"{k}: {v!r} is not a number"
    assert math.isfinite(v), f"{k} is not finite"
assert d["stanzas"] == 300, d["stanzas"]
assert d["xml_bytes"] > 0 and d["pb_bytes"] > 0
assert 0 < d["size_ratio_pb_xml"] < 2
assert d["allocs_per_stanza"] >= 0, "allocation counter did not count"
assert isinstance(d["per_kind"], dict) and len(d["per_kind"]) >= 3, d["per_kind"].keys()
assert sum(k["count"] for k in d["per_kind"].values()) == 300
for name, g in d["goals"].items():
    assert isinstance(g["met"], bool) and isinstance(g["value"], (int, float)), name
print("json ok:", len(d), "keys")
EOF

test -s "$plots/sizes_by_kind.dat"
test -s "$plots/sizes_by_kind.gp"

# CSV: the header of the size table and a total row.
"$bench" --count 50 --min-time 0.001 --csv >"$out"
head -n1 "$out" | grep -q '^kind,count,xml,pb,generic,json'
grep -q '^"total",50,' "$out"
echo "test_bench_smoke: ok"

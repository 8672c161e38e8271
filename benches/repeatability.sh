#!/usr/bin/env bash
# Repeatability: two quick profiles of this machine back to back; for how many
# benchmarks do the 95% CIs of the two medians overlap? (Target: at least 90%.)
# Also runs `flopcal regress` between them, which must find no regression.
#
#   bash benches/repeatability.sh [extra profile flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
BIN=target/release/flopcal
# KEEP=dir keeps the two result files there for a closer look.
if [ -n "${KEEP:-}" ]; then DIR=$KEEP; mkdir -p "$DIR"; else DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT; fi
"$BIN" profile --quick --no-peak --format json "$@" > "$DIR/a.json"
"$BIN" profile --quick --no-peak --format json "$@" > "$DIR/b.json"
python3 - "$DIR/a.json" "$DIR/b.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
sa = {x["id"]: x["summary"] for x in a["benchmarks"] if x.get("summary")}
sb = {x["id"]: x["summary"] for x in b["benchmarks"] if x.get("summary")}
ids = sorted(set(sa) & set(sb))
overlap = [i for i in ids if sa[i]["ci95_low_s"] <= sb[i]["ci95_high_s"] and sb[i]["ci95_low_s"] <= sa[i]["ci95_high_s"]]
for i in ids:
    if i not in overlap:
        r = sb[i]["median_s"] / sa[i]["median_s"]
        print(f"  CIs disjoint: {i} (second/first median {r:.3f})")
for name, f in (("first", a), ("second", b)):
    c = f.get("contention")
    if c:
        print(f"{name}: {c['contended_rounds']} contended rounds, {c['retried_rounds']} retried, waited {c['waited_s']:.1f} s, probe best {c['best_probe_s']*1e6:.1f} us")
print(f"CIs overlap for {len(overlap)}/{len(ids)} benchmarks ({100*len(overlap)/max(len(ids),1):.0f}%)")
PY
"$BIN" regress "$DIR/a.json" "$DIR/b.json" > "$DIR/regress.txt" && echo "regress: no regression" || { echo "regress exit $?"; tail -5 "$DIR/regress.txt"; }

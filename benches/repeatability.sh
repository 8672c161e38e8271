#!/usr/bin/env bash
# Repeatability: PAIRS (default 5) pairs of quick profiles of this machine back to
# back. Two figures, reported together because one without the other means nothing:
#   agreement  — how often the second run's median lies inside the first run's 95%
#                prediction interval (pi95_*, the interval that claims to hold another
#                run's median) and vice versa; target ≥ 90%;
#   width      — the median relative width (high − low) / median of those intervals,
#                overall and for compute-bound GEMMs (matmuls of ≥ 50 FLOP/byte);
#                target ≤ 5% for the GEMMs on a quiet machine. Agreement bought with
#                wide intervals is no agreement.
# The sampling CIs (ci95_*) are summarised the same way, and `flopcal regress` runs on
# every pair (it must find no regression). Last, the correlation of each kernel
# round's median with the steal, other processes' CPU time and probe reading that
# round recorded: which signal explains the slow rounds.
#
#   PAIRS=5 bash benches/repeatability.sh [extra profile flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
BIN=target/release/flopcal
PAIRS=${PAIRS:-5}
# KEEP=dir keeps the result files there for a closer look.
if [ -n "${KEEP:-}" ]; then DIR=$KEEP; mkdir -p "$DIR"; else DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT; fi
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)"
regressions=0
for p in $(seq 1 "$PAIRS"); do
  for side in a b; do
    "$BIN" profile --quick --no-peak --format json "$@" > "$DIR/$p$side.json"
  done
  if ! "$BIN" regress "$DIR/${p}a.json" "$DIR/${p}b.json" > "$DIR/regress$p.txt"; then
    regressions=$((regressions + 1))
    echo "pair $p: regress flagged a regression:"; tail -3 "$DIR/regress$p.txt"
  fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)"
python3 - "$DIR" "$PAIRS" <<'PY'
import json, statistics, sys
d, pairs = sys.argv[1], int(sys.argv[2])
def load(p):
    f = json.load(open(p))
    return {b["id"]: b for b in f["benchmarks"] if b.get("summary")}
def interval(s, kind):
    lo, hi = s.get(f"{kind}95_low_s"), s.get(f"{kind}95_high_s")
    return None if lo is None or hi is None else (lo, hi)
def gemm(b):
    return b["kernel"] == "matmul" and b["flops_per_iter"] >= 50 * b["bytes_per_iter"]
for kind, label in (("pi", "prediction interval (next run's median)"), ("ci", "sampling CI (this run's median)")):
    hits = total = 0
    widths, gemm_widths, misses = [], [], []
    for p in range(1, pairs + 1):
        a, b = load(f"{d}/{p}a.json"), load(f"{d}/{p}b.json")
        for i in sorted(set(a) & set(b)):
            for x, y in ((a[i], b[i]), (b[i], a[i])):
                iv = interval(x["summary"], kind)
                if iv is None:
                    continue
                med = x["summary"]["median_s"]
                w = (iv[1] - iv[0]) / med
                widths.append(w)
                if gemm(x):
                    gemm_widths.append(w)
                if kind == "pi":
                    ok = iv[0] <= y["summary"]["median_s"] <= iv[1]
                else:  # two sampling CIs agree when they overlap
                    jv = interval(y["summary"], kind)
                    ok = jv is not None and iv[0] <= jv[1] and jv[0] <= iv[1]
                hits += ok
                total += 1
                if not ok:
                    misses.append((p, i, y["summary"]["median_s"] / med))
    med = lambda v: 100 * statistics.median(v) if v else float("nan")
    print(f"{label}: agreement {hits}/{total} ({100 * hits / max(total, 1):.0f}%), "
          f"median relative width {med(widths):.1f}% (compute-bound GEMMs {med(gemm_widths):.1f}%, n={len(gemm_widths)})")
    for p, i, r in misses[:8]:
        print(f"  pair {p}: {i} outside (other/this median {r:.3f})")
# Which signal explains the slow rounds: over every kernel round of every run, the
# correlation of the round's log median (less its kernel's mean over the run) with
# that round's steal share, other processes' share and probe reading (log).
def corr(x, y):
    n = len(x)
    if n < 3:
        return float("nan")
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / (sxx * syy) ** 0.5 if sxx > 0 and syy > 0 else float("nan")
import math
dev, sig = [], {"steal": [], "other processes": [], "probe": []}
steal_by_run = []
for p in range(1, pairs + 1):
    for side in "ab":
        f = json.load(open(f"{d}/{p}{side}.json"))
        run_steal = []
        for b in f["benchmarks"]:
            sizes, xs = b.get("round_sizes") or [], b["samples_s"]
            reads, probes = b.get("round_readings") or [], b.get("round_probe_s") or []
            if len(sizes) < 2 or sum(sizes) != len(xs) or len(reads) != len(sizes):
                continue
            meds, i = [], 0
            for n in sizes:
                meds.append(math.log(statistics.median(xs[i:i + n])))
                i += n
            m = sum(meds) / len(meds)
            for k, r in enumerate(reads):
                if r.get("steal_frac") is None or r.get("foreign_frac") is None:
                    continue
                run_steal.append(r["steal_frac"])
                dev.append(meds[k] - m)
                sig["steal"].append(r["steal_frac"])
                sig["other processes"].append(r["foreign_frac"])
                sig["probe"].append(math.log(probes[k]) if k < len(probes) else float("nan"))
        steal_by_run.append((f"{p}{side}", statistics.mean(run_steal) if run_steal else float("nan"),
                             max(run_steal) if run_steal else float("nan")))
for name, v in sig.items():
    ok = [(a, b) for a, b in zip(dev, v) if not math.isnan(b)]
    r = corr([a for a, _ in ok], [b for _, b in ok])
    print(f"round medians vs {name}: r = {r:.2f} (r² {r * r:.2f}, {len(ok)} kernel rounds)")
for run, mean, top in steal_by_run:
    print(f"  run {run}: steal mean {100 * mean:.1f}% of CPU, max round {100 * top:.1f}%")
PY
echo "regress: $regressions of $PAIRS pairs flagged a regression"

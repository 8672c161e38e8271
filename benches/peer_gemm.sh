#!/usr/bin/env bash
# Peer comparison: f32 GEMM 2048³ through flopcal (candle + gemm x86-v4) against
# numpy/OpenBLAS, measured in the same run, interleaved to cancel drift on a noisy
# shared machine. Prints the per-round ratios and their median.
#
#   bash benches/peer_gemm.sh            # 3 rounds
#   ROUNDS=5 N=4096 bash benches/peer_gemm.sh
#
# Needs python3 with numpy (installed with pip into a venv under target/ if absent).
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset for the numpy command only: some
# machines set them for old OpenBLAS builds and they halve a current one's speed.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2048}
ROUNDS=${ROUNDS:-3}
PY=python3
if ! $PY -c 'import numpy' 2>/dev/null; then
  VENV=target/peer-venv
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy threadpoolctl
  PY="$VENV/bin/python"
fi
cargo build --release -q
BIN=target/release/flopcal

numpy_gflops() {
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" - "$N" <<'PY'
import sys, time, statistics
import numpy as np
n = int(sys.argv[1])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
for _ in range(3):
    a @ b
times = []
for _ in range(15):
    t = time.perf_counter(); a @ b; times.append(time.perf_counter() - t)
print(2 * n**3 / statistics.median(times) / 1e9)
try:
    from threadpoolctl import threadpool_info
    info = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads")) for i in threadpool_info()]
    print("numpy backend:", info, file=sys.stderr)
except Exception:
    pass
PY
}

flopcal_gflops() {
  "$BIN" profile --filter matmul/square --squares "$N" --dtype f32 --min-samples 15 \
    --target-ci 0.02 --format json --quick \
  | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["benchmarks"][0]["summary"]["flops_per_s"]/1e9)'
}

ratios=()
for r in $(seq 1 "$ROUNDS"); do
  np=$(numpy_gflops)
  fc=$(flopcal_gflops)
  ratio=$("$PY" -c "print(f'{$fc/$np:.3f}')")
  ratios+=("$ratio")
  printf 'round %d: numpy/OpenBLAS %.1f GFLOP/s, flopcal/candle %.1f GFLOP/s, ratio %s\n' "$r" "$np" "$fc" "$ratio"
done
"$PY" -c "import statistics,sys; r=[float(x) for x in sys.argv[1:]]; print(f'median ratio flopcal/numpy over {len(r)} rounds: {statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f})')" "${ratios[@]}"

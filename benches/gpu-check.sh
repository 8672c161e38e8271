#!/usr/bin/env bash
# One-shot check on a GPU machine (not run in CI: CI has no GPU): build the CUDA +
# MPI binary, run a quick GPU profile, a fleet profile with one rank per GPU, and
# `comm` over NCCL on every GPU present. Result files go to results/gpu-check/.
# Fits in 10 minutes on a 16-core host with 1-8 GPUs.
#
# Needs: the CUDA toolkit (nvcc on PATH, or CUDA_HOME) and driver, NCCL
# (libnccl.so.2, e.g. `pip install nvidia-nccl-cu13` and its lib on LD_LIBRARY_PATH),
# Open MPI (apt-get install libopenmpi-dev openmpi-bin libclang-dev).
#
#   bash benches/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=results/gpu-check
mkdir -p "$out"
ngpu=$(nvidia-smi -L | grep -c '^GPU ' || true)
[ "$ngpu" -ge 1 ] || { echo "gpu-check: no GPU visible to nvidia-smi" >&2; exit 2; }
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)}"
mpi=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)

echo "== build (cuda, mpi) for sm_$CUDA_COMPUTE_CAP, $ngpu GPU(s)"
timeout 240 cargo build --release --features cuda,mpi
bin=target/release/flopcal

echo "== quick profile on cuda:0"
timeout 120 "$bin" profile --device cuda --quick --budget 90 --out "$out/profile-cuda.json"

echo "== fleet profile, one rank per GPU"
timeout 120 "${mpi[@]}" -np "$ngpu" sh -c \
  'CUDA_VISIBLE_DEVICES=$OMPI_COMM_WORLD_LOCAL_RANK exec '"$bin"' profile --device cuda --quick --budget 60 --filter matmul --no-peak --out '"$out/fleet-cuda.json"

echo "== comm over NCCL, $ngpu rank(s)"
timeout 150 "${mpi[@]}" -np "$ngpu" "$bin" comm --backend nccl --max-bytes 1G \
  --time-per-size 0.02 --out "$out/comm-nccl.json"
"$bin" report "$out/profile-cuda.json" "$out/comm-nccl.json" "$out/fleet-cuda.json" --out "$out/report.html"
echo "gpu-check: results in $out"

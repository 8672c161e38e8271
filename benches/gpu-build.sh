#!/usr/bin/env bash
# Build the CUDA binary HERE, on a machine without a GPU, for a GPU machine that has
# the NVIDIA driver and CUDA 13 libraries (in its Python's nvidia-* wheels) but no Rust.
#
#   bash benches/gpu-build.sh        # then carry target/gpu/ and run benches/gpu-check.sh there
#
# Writes target/gpu/flopcal (stripped, `--features cuda` or FLOPCAL_GPU_FEATURES, e.g.
# cuda,mpi for `comm --backend nccl`, which then needs Open MPI there too; kernels for
# sm_90 unless CUDA_COMPUTE_CAP says otherwise), target/gpu/flopcal.cap (the compute capability it
# was built for; gpu-check.sh refuses a GPU of another one) and target/gpu/flopcal.build
# (how it was built). Nothing else travels: the binary links libcuda.so.1 (the driver's)
# and libcublas/libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13 by soname, and
# gpu-check.sh finds those in the GPU machine's `python3 -c 'import nvidia'` folders.
#
# The toolkit comes from PyPI wheels (.ci/cuda-toolkit, shared with CI's compile
# check). No driver here, so the link step uses stub libcuda.so / libnccl.so made from
# cudarc's own list of functions, in target/gpu-build/stubs: they satisfy the linker and
# are never shipped. Exit 3 when the toolkit cannot be installed on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
cap="${CUDA_COMPUTE_CAP:-90}"
case "$cap" in
  [1-9][0-9] | [1-9][0-9][0-9]) ;;
  *) echo "gpu-build: CUDA_COMPUTE_CAP=$cap: expected digits like 90 (sm_90)" >&2; exit 2 ;;
esac
features="${FLOPCAL_GPU_FEATURES:-cuda}"
[[ ",$features," == *",cuda,"* ]] || { echo "gpu-build: FLOPCAL_GPU_FEATURES=$features: must include cuda" >&2; exit 2; }
build=target/gpu-build
out=target/gpu
stubs="$build/stubs"

rc=0
CU=$(bash .ci/cuda-toolkit) || rc=$?
[ "$rc" = 0 ] || exit "$rc"
echo "gpu-build: CUDA toolkit $("$CU/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') at $CU"

# Driver and NCCL link stubs, one empty function per symbol cudarc can call.
cargo fetch --locked -q
cudarc_ver=$(awk '/^name = "cudarc"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
cudarc_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$cudarc_ver" 2>/dev/null | head -n 1)
[ -n "$cudarc_src" ] || { echo "gpu-build: cudarc $cudarc_ver sources not found after cargo fetch" >&2; exit 1; }
mkdir -p "$stubs"
stub() { # stub LIB SONAME BINDINGS PREFIX-REGEX
  local c="$stubs/$1.c"
  grep -o -E "^pub unsafe fn $4[A-Za-z0-9_]*\(" "$3" | sed -E 's/^pub unsafe fn ([A-Za-z0-9_]+)\(/void \1(void) {}/' \
    | sort -u >"$c"
  [ -s "$c" ] || { echo "gpu-build: no functions found for the $1 stub in $3" >&2; exit 1; }
  cc -shared -fPIC -o "$stubs/$1.so" -Wl,-soname,"$2" "$c"
}
stub libcuda libcuda.so.1 "$cudarc_src/src/driver/sys/mod.rs" 'cu[A-Z]'
stub libnccl libnccl.so.2 "$cudarc_src/src/nccl/sys/mod.rs" 'p?nccl'

echo "gpu-build: cargo build --release --features $features for sm_$cap (CARGO_TARGET_DIR=$build)"
t1=$(date +%s)
# LIBRARY_PATH: the linker (cc) looks there for -lcuda / -lnccl; CUDA_HOME gives
# cudarc the toolkit's lib/ for the others and candle's kernels their nvcc.
# cudaforge (candle-kernels' nvcc driver) uses half the cores unless told.
PATH="$CU/bin:$PATH" CUDA_HOME="$CU" CUDA_PATH="$CU" CUDA_ROOT="$CU" CUDA_COMPUTE_CAP="$cap" \
  CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}" LIBRARY_PATH="$stubs${LIBRARY_PATH:+:$LIBRARY_PATH}" CARGO_TARGET_DIR="$build" \
  nice -n 10 cargo build --locked --release --features "$features" --bin flopcal
t2=$(date +%s)

# Nothing of this machine may be needed there: no stub, no path into the venv.
bin="$build/release/flopcal"
needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
if readelf -d "$bin" | grep -q -E '\((RPATH|RUNPATH)\)'; then
  echo "gpu-build: $bin has an RPATH/RUNPATH; it must find its libraries through LD_LIBRARY_PATH" >&2
  exit 1
fi
case " $needed " in
  *" libcuda.so.1 "*) ;;
  *) echo "gpu-build: $bin does not link libcuda.so.1 (NEEDED: $needed)" >&2; exit 1 ;;
esac

# Atomic hand-over: a half-written binary or a binary with the wrong .cap never
# sits in target/gpu/ looking complete.
mkdir -p "$out"
tmp=$(mktemp -d "$out/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
strip -o "$tmp/flopcal" "$bin"
echo "$cap" >"$tmp/flopcal.cap"
size=$(stat -c %s "$tmp/flopcal")
{
  echo "built_at: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "git_commit: $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)"
  echo "features: $features"
  echo "compute_cap: $cap"
  echo "cuda_toolkit: $("$CU/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  echo "needed: $needed"
  echo "size_bytes: $size"
  echo "build_seconds: $((t2 - t1))"
} >"$tmp/flopcal.build"
rm -f "$out/flopcal.cap" # the binary and its cap change together
mv -f "$tmp/flopcal" "$out/flopcal"
mv -f "$tmp/flopcal.build" "$out/flopcal.build"
mv -f "$tmp/flopcal.cap" "$out/flopcal.cap"

total=$(du -cb "$out"/flopcal "$out"/flopcal.cap "$out"/flopcal.build | tail -n 1 | cut -f1)
limit=$((64 * 1024 * 1024))
awk -v b="$out/flopcal" -v s="$size" -v d="$out" -v t="$total" 'BEGIN {
  printf "gpu-build: %s: %.1f MiB stripped (carry %s: %.1f MiB of the 64 MiB limit)\n", b, s / 1048576, d, t / 1048576 }'
echo "gpu-build: needs there: $needed"
echo "gpu-build: cargo build took $((t2 - t1)) s, all steps $(($(date +%s) - t0)) s"
if [ "$total" -gt "$limit" ]; then
  echo "gpu-build: $out is over the 64 MiB that travels to the GPU machine" >&2
  exit 1
fi

#!/usr/bin/env bash
# The GPU check, run ON the GPU machine. It builds nothing: build the binary first on
# any Linux x86-64 machine with Rust (`bash benches/gpu-build.sh`, writes target/gpu/)
# and bring target/gpu/ along with the repository. Finishes in under 8 minutes.
#
#   bash benches/gpu-check.sh             # results in $OUT if set, else results/gpu-check/
#   bash benches/gpu-check.sh --dry-run   # check the preconditions, print the plan, run nothing
#                                         # (or FLOPCAL_GPU_CHECK_DRY_RUN=1)
#
# Needs there: an NVIDIA GPU of the compute capability the binary was built for
# (target/gpu/flopcal.cap) with its driver (nvidia-smi, libcuda.so.1), and a `python3`
# with PyTorch and the nvidia-* CUDA 13 wheels (cuBLAS, cuRAND, NVRTC): the binary finds
# those libraries in that python3's nvidia/*/lib folders (added to LD_LIBRARY_PATH).
# A missing precondition: one line on stderr, exit 2, nothing written.
#
# Runs, each under its own time limit:
#   1. flopcal peak                     -> peak.json: CPU ceilings and the GPU's best f16/bf16/f32
#                                          GEMM (4096³, 8192³) beside the datasheet figure
#   2. flopcal profile --device cuda    -> profile-cuda.json (+ .csv): the quick BERT-base suite in
#                                          bf16 and f16, plus square GEMMs 4096³ and 8192³
#   3. benches/torch_matmul_peer.py     -> peer-torch.json: torch.matmul on every GEMM of (2),
#                                          flopcal/torch per shape
#   4. flopcal validate --device cuda   -> validate.json: one real f32 training step of a
#                                          GEMM-dominated config against the prediction
#   5. flopcal comm --backend nccl      -> comm-nccl.json, only with more than one GPU
# and writes gpu-check.log (everything printed) and gpu-check.json (each step's status,
# time and file; "complete": true only when every step finished). Every result file is
# written whole or not at all.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
dry=0
[ "${FLOPCAL_GPU_CHECK_DRY_RUN:-0}" = 1 ] && dry=1
for a in "$@"; do
  case "$a" in
    --dry-run) dry=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu-check: unknown argument \`$a\` (expected --dry-run or --help)" >&2; exit 2 ;;
  esac
done
fail() { echo "gpu-check: $*" >&2; exit 2; }

dir=target/gpu
bin=$dir/flopcal
out="${OUT:-results/gpu-check}"
[[ "$out" != *[[:space:]]* ]] || fail "the output folder \`$out\` contains a space; set OUT to a path without one"
# Seconds the whole check may take, and the limit of each step (they sum to less).
deadline=${FLOPCAL_GPU_CHECK_SECONDS:-470}

# --- preconditions: each failure is one line and exit 2, before anything is written.
[ -x "$bin" ] || fail "no $bin here: build it with \`bash benches/gpu-build.sh\` on a machine with Rust and bring target/gpu/ along"
[ -s "$dir/flopcal.cap" ] || fail "no $dir/flopcal.cap (the compute capability $bin was built for): rebuild with \`bash benches/gpu-build.sh\`"
built_cap=$(tr -dc '0-9' <"$dir/flopcal.cap")
features=$(sed -n 's/^features: //p' "$dir/flopcal.build" 2>/dev/null)
needed=$(sed -n 's/^needed: //p' "$dir/flopcal.build" 2>/dev/null)
# What a `--features cuda` build links, where flopcal.build does not say.
[ -n "$needed" ] || needed="libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13"

command -v nvidia-smi >/dev/null 2>&1 || fail "no GPU: nvidia-smi is not on PATH (no NVIDIA driver on this machine)"
smi=$(nvidia-smi --query-gpu=index,name,compute_cap,driver_version --format=csv,noheader 2>&1) \
  || fail "no GPU: nvidia-smi failed: $(grep -m1 . <<<"$smi")"
smi=$(grep -E '^[0-9]+,' <<<"$smi")
ngpu=$(grep -c . <<<"$smi")
[ "$ngpu" -ge 1 ] || fail "no GPU: nvidia-smi lists no device"
while IFS=, read -r idx name cap driver; do
  name=$(sed 's/^ *//' <<<"$name")
  c=$(tr -dc '0-9' <<<"$cap")
  [ "$c" = "$built_cap" ] || fail "$bin was built for sm_$built_cap but GPU $idx ($name) is sm_$c: rebuild with \`CUDA_COMPUTE_CAP=$c bash benches/gpu-build.sh\`"
done <<<"$smi"
gpu_name=$(head -n 1 <<<"$smi" | cut -d, -f2 | sed 's/^ *//')
driver=$(head -n 1 <<<"$smi" | cut -d, -f4 | tr -d ' ')

command -v python3 >/dev/null 2>&1 || fail "no python3 on PATH: it locates the CUDA libraries and runs the PyTorch peer check"
penv=$(timeout 120 python3 benches/gpu_env.py 2>&1) || fail "python3 benches/gpu_env.py failed: $(tail -n 1 <<<"$penv")"
get() { sed -n "s/^$1=//p" <<<"$penv" | head -n 1; }
libdirs=$(get libdirs)
missing=()
for lib in $needed; do
  case "$lib" in
    libcuda.so.* | libc.so.* | libm.so.* | libgcc_s.so.* | libstdc++.so.* | ld-linux* | libdl.so.* | libpthread.so.* | librt.so.* | libutil.so.*) continue ;;
  esac
  found=0
  IFS=: read -r -a dirs <<<"$libdirs"
  for d in "${dirs[@]}"; do [ -e "$d/$lib" ] && found=1 && break; done
  [ "$found" = 1 ] || missing+=("$lib")
done
[ ${#missing[@]} = 0 ] || fail "CUDA libraries missing: ${missing[*]} not in python3's nvidia/*/lib folders (${libdirs:-none}; pip install nvidia-cublas nvidia-curand nvidia-cuda-nvrtc nvidia-cuda-runtime)"
torch=$(get torch)
[ -n "$torch" ] || fail "python3 has no torch ($(get torch_error)): the PyTorch peer check needs it"
[ "$(get cuda_available)" = 1 ] || fail "torch $torch sees no CUDA device"
export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
version=$("$bin" --version 2>&1) || fail "$bin does not start here: $(grep -m1 . <<<"$version")"

# --- the plan
steps=()
declare -A cmd limit file
add() { steps+=("$1"); limit[$1]=$2; file[$1]=$3; cmd[$1]=$4; }
add peak 60 peak.json \
  "$bin peak --duration 0.5 --widest-only --no-reference --out $out/peak.json"
add profile 150 profile-cuda.json \
  "$bin profile --device cuda --quick --dtype bf16,f16 --squares 4096,8192 --square-dtype bf16,f16 --budget 100 --out $out/profile-cuda.json"
add peer 90 peer-torch.json \
  "python3 benches/torch_matmul_peer.py --profile $out/profile-cuda.json --out $out/peer-torch.json"
add validate 100 validate.json \
  "$bin validate --device cuda --quick --model base-short --batch 32 --seq 128 --bound 0.10 --format json"
comm_skip=""
if [ "$ngpu" -lt 2 ]; then
  comm_skip="one GPU visible; comm --backend nccl needs at least two"
elif [[ ",$features," != *",mpi,"* ]]; then
  comm_skip="$bin was built without the mpi feature (FLOPCAL_GPU_FEATURES=cuda,mpi bash benches/gpu-build.sh)"
elif ! command -v mpirun >/dev/null 2>&1; then
  comm_skip="no mpirun here"
else
  mpi="mpirun --oversubscribe"
  [ "$(id -u)" = 0 ] && mpi="$mpi --allow-run-as-root"
  add comm 50 comm-nccl.json \
    "$mpi -np $ngpu $bin comm --backend nccl --max-bytes 256M --time-per-size 0.02 --out $out/comm-nccl.json"
fi

describe() {
  echo "  binary:  $bin ($version; built for sm_$built_cap; features ${features:-unknown})"
  echo "  GPUs:    $ngpu x $gpu_name (driver $driver)"
  echo "  python3: $(get python), torch $torch (CUDA $(get torch_cuda)), $(get cuda_devices) device(s)"
  echo "  LD_LIBRARY_PATH: $LD_LIBRARY_PATH"
  local i=1
  for s in "${steps[@]}"; do
    if [ "$s" = validate ]; then
      echo "  $i. [<= ${limit[$s]} s] ${cmd[$s]} > $out/${file[$s]}"
    else
      echo "  $i. [<= ${limit[$s]} s] ${cmd[$s]}"
    fi
    i=$((i + 1))
  done
  [ -z "$comm_skip" ] || echo "  -. comm --backend nccl: skipped ($comm_skip)"
}

if [ "$dry" = 1 ]; then
  echo "gpu-check: dry run: preconditions hold; would run, writing to $out/:"
  describe
  exit 0
fi

# --- the run
mkdir -p "$out" || fail "cannot create $out"
# Earlier results here must not pass for this run's.
rm -f "$out"/{peak.json,profile-cuda.json,profile-cuda.csv,validate.json,peer-torch.json,comm-nccl.json,gpu-check.json,gpu-check.log}

run() {
echo "gpu-check: $(date -u +%Y-%m-%dT%H:%M:%SZ), writing to $out/"
describe
nvidia-smi
status=()
for s in "${steps[@]}"; do
  left=$((deadline - SECONDS))
  t=${limit[$s]}
  [ "$t" -le "$left" ] || t=$left
  if [ "$t" -lt 10 ]; then
    echo "== $s: skipped, the check's ${deadline} s are spent"
    status+=("$s skipped 0 0")
    continue
  fi
  echo "== $s (limit $t s): ${cmd[$s]}"
  t0=$SECONDS
  if [ "$s" = validate ]; then
    # Its JSON goes to stdout: keep it only when the run ends (exit 1 = outside --bound).
    timeout "$t" ${cmd[$s]} >"$out/.validate.tmp"
    rc=$?
    if [ "$rc" -le 1 ] && [ -s "$out/.validate.tmp" ]; then
      mv "$out/.validate.tmp" "$out/validate.json"
      cat "$out/validate.json"
    else
      rm -f "$out/.validate.tmp"
    fi
  else
    timeout "$t" ${cmd[$s]}
    rc=$?
  fi
  secs=$((SECONDS - t0))
  [ "$rc" = 124 ] && echo "== $s: stopped at its $t s limit"
  f="$out/${file[$s]}"
  if [ -s "$f" ] && { [ "$rc" = 0 ] || { [ "$s" = validate ] && [ "$rc" = 1 ]; }; }; then
    st=ok
  elif [ -s "$f" ] && grep -q '"partial": *true' "$f"; then
    st=partial # flopcal's own file of an interrupted profile, marked so inside
  else
    st=failed
    rm -f "$f" "${f%.json}.csv"
  fi
  echo "== $s: $st (exit $rc, $secs s)"
  status+=("$s $st $rc $secs")
done

# --- summary: gpu-check.json and the figures that matter, last in the log
python3 - "$out" "$SECONDS" "$ngpu" "$gpu_name" "$driver" "$built_cap" "$version" "$torch" "$comm_skip" "${status[@]}" <<'EOF'
import json, os, sys, tempfile
out, secs, ngpu, gpu, driver, cap, version, torch, comm_skip = sys.argv[1:10]
steps = []
for s in sys.argv[10:]:
    name, st, rc, t = s.split()
    steps.append({"step": name, "status": st, "exit": int(rc), "seconds": int(t)})
if comm_skip:
    steps.append({"step": "comm", "status": "skipped", "reason": comm_skip})
files = {"peak": "peak.json", "profile": "profile-cuda.json", "validate": "validate.json",
         "peer": "peer-torch.json", "comm": "comm-nccl.json"}
for s in steps:
    if s["status"] in ("ok", "partial"):
        s["file"] = files[s["step"]]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
print("== gpu-check summary")
figures = {}
peak = load("peak.json") or {}
for g in peak.get("peak", peak).get("gpu", []):
    spec = g.get("spec_flops_per_s")
    figures[f"peak_{g['dtype']}_tflops"] = g["flops_per_s"] / 1e12
    print(f"  peak {g['dtype']:>4} GEMM {g['size']}^3: {g['flops_per_s'] / 1e12:7.1f} TFLOP/s"
          + (f"  ({g['flops_per_s'] / spec:.0%} of the datasheet's {spec / 1e12:.0f})" if spec else ""))
peer = load("peer-torch.json")
for r in (peer or {}).get("rows", []):
    if r["group"] == "square":
        figures[f"flopcal_over_torch_{r['dtype']}_{r['m']}"] = r["ratio"]
        print(f"  {r['dtype']:>4} GEMM {r['m']}^3: flopcal {r['flopcal_flops_per_s'] / 1e12:6.1f}, "
              f"torch {r['torch_flops_per_s'] / 1e12:6.1f} TFLOP/s, flopcal/torch {r['ratio']:.2f}")
v = load("validate.json")
if v:
    figures["validate_ratio"] = v.get("ratio")
    print(f"  validate: predicted/measured step {v.get('ratio', float('nan')):.3f} "
          f"(bound +-{v.get('bound', float('nan')):.0%}, within: {v.get('within_bound')})")
# Complete: every step that was to run finished (comm skipped for a reason is not one of them).
complete = all(s["status"] == "ok" for s in steps if "reason" not in s)
summary = {"schema": "flopcal-gpu-check/1", "complete": complete, "seconds": int(secs),
           "gpus": int(ngpu), "gpu": gpu, "driver": driver, "built_for_sm": cap,
           "flopcal": version, "torch": torch, "steps": steps, "figures": figures}
fd, tmp = tempfile.mkstemp(prefix=".gpu-check-", dir=out)
with os.fdopen(fd, "w") as f:
    json.dump(summary, f, indent=1)
    f.write("\n")
os.replace(tmp, os.path.join(out, "gpu-check.json"))
print(f"gpu-check: {'complete' if complete else 'INCOMPLETE'} in {secs} s; files in {out}/")
sys.exit(0 if complete else 1)
EOF
}

run 2>&1 | tee "$out/gpu-check.log"
exit "${PIPESTATUS[0]}"

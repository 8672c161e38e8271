"""PyTorch peer check for flopcal's GEMMs on a CUDA GPU.

Reads a flopcal profile (`flopcal profile --device cuda --out FILE`), times torch.matmul on
every matmul kernel in it (same shape, dtype and operand layout), and prints flopcal/torch per
shape: 1.0 means candle (flopcal's backend) runs that GEMM as fast as PyTorch does.

Timing follows mamf-finder (Stas Bekman, ml-engineering, compute/accelerator/benchmarks):
allocate random operands once, warm up, then time every repetition on its own with a pair of
CUDA events, and report the median (and the best) repetition. Operands are random normal,
never zeros (zeros run faster and hide wrong results).

torch's matmul flags are set to candle's defaults so both run the same arithmetic: no TF32
for f32, and no reduced-precision reductions for bf16/f16 (torch allows those by default,
candle does not: candle_core::cuda::gemm_reduced_precision_* are false).

  python3 benches/torch_matmul_peer.py --profile profile-cuda.json --out peer-torch.json
  python3 benches/torch_matmul_peer.py --profile results/x.json --list   # shapes only, no torch
"""

import argparse
import json
import os
import re
import sys
import tempfile

# Operand layouts of flopcal's suite (src/suite.rs, kernels/src/gemm.rs Matmul::linear):
# (trans_a, trans_b) per label; A is stored [k, m] when trans_a, B [n, k] when trans_b.
LAYOUTS = {
    "fwd": (False, False),
    "dgrad": (False, True),
    "wgrad": (True, False),
    "scores.fwd": (False, True),
    "scores.dgrad_q": (False, False),
    "scores.dgrad_k": (True, False),
    "pv.fwd": (False, False),
    "pv.dgrad_p": (False, True),
    "pv.dgrad_v": (True, False),
    "square": (False, False),
}


def layout_of(label):
    """(trans_a, trans_b) of a matmul label, or None when the label is unknown."""
    if label in LAYOUTS:
        return LAYOUTS[label]
    suffix = label.rsplit(".", 1)[-1]
    if suffix in ("fwd", "dgrad", "wgrad") and not label.startswith(("scores.", "pv.")):
        return LAYOUTS[suffix]
    return None


def gemms(profile):
    """The measured matmul kernels of a flopcal result file, as dicts."""
    out = []
    for b in profile.get("benchmarks", []):
        if b.get("kernel") != "matmul" or b.get("status") != "ok":
            continue
        shape = b.get("shape") or {}
        summ = b.get("summary") or {}
        if not all(k in shape for k in ("m", "n", "k")) or not summ.get("median_s"):
            continue
        lay = layout_of(b.get("label", ""))
        out.append(
            {
                "id": b["id"],
                "group": b.get("group"),
                "dtype": b["dtype"],
                "batch": int(shape.get("b", 1)),
                "m": int(shape["m"]),
                "n": int(shape["n"]),
                "k": int(shape["k"]),
                "trans_a": None if lay is None else lay[0],
                "trans_b": None if lay is None else lay[1],
                "flops": float(b["flops_per_iter"]),
                "flopcal_median_s": float(summ["median_s"]),
                "flopcal_flops_per_s": float(b["flops_per_iter"]) / float(summ["median_s"]),
            }
        )
    return out


def time_torch(torch, g, dev, min_reps, max_reps, target_s):
    dt = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[g["dtype"]]
    bt = (g["batch"],) if g["batch"] > 1 else ()
    ta, tb = bool(g["trans_a"]), bool(g["trans_b"])
    a = torch.randn(bt + ((g["k"], g["m"]) if ta else (g["m"], g["k"])), device=dev, dtype=dt)
    b = torch.randn(bt + ((g["n"], g["k"]) if tb else (g["k"], g["n"])), device=dev, dtype=dt)
    a = a.transpose(-1, -2) if ta else a
    b = b.transpose(-1, -2) if tb else b
    c = torch.matmul(a, b)  # first call: cuBLAS handle, heuristics
    torch.cuda.synchronize()
    # Warm-up: at least 10 calls and 50 ms, so clocks and caches settle.
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    n = 0
    while True:
        for _ in range(10):
            torch.matmul(a, b, out=c)
        n += 10
        end.record()
        torch.cuda.synchronize()
        warm_s = start.elapsed_time(end) / 1e3
        if warm_s >= 0.05 or n >= 1000:
            break
    per_call = warm_s / n
    reps = int(min(max_reps, max(min_reps, target_s / max(per_call, 1e-7))))
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for s, e in ev:
        s.record()
        torch.matmul(a, b, out=c)
        e.record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) / 1e3 for s, e in ev)
    if not torch.isfinite(c.float()).all():
        raise RuntimeError(f"{g['id']}: torch.matmul produced non-finite values")
    med = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
    return {"torch_median_s": med, "torch_min_s": times[0], "torch_reps": reps}


def write_atomic(path, obj):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".peer-", dir=d)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", required=True, help="flopcal profile result file (JSON)")
    ap.add_argument("--out", help="write the peer table here (JSON, atomically)")
    ap.add_argument("--list", action="store_true", help="print the GEMMs that would be timed; needs no torch")
    ap.add_argument("--min-reps", type=int, default=10)
    ap.add_argument("--max-reps", type=int, default=200)
    ap.add_argument("--time-per-shape", type=float, default=0.15, help="seconds of timed repetitions per shape")
    args = ap.parse_args()
    try:
        with open(args.profile) as f:
            profile = json.load(f)
    except (OSError, ValueError) as e:
        print(f"torch_matmul_peer: cannot read {args.profile}: {e}", file=sys.stderr)
        return 2
    rows = gemms(profile)
    if not rows:
        print(f"torch_matmul_peer: {args.profile} holds no measured matmul kernel", file=sys.stderr)
        return 2
    unknown = [r["id"] for r in rows if r["trans_a"] is None]
    if unknown:
        print(f"torch_matmul_peer: unknown operand layout for {', '.join(unknown)}", file=sys.stderr)
        return 2
    if args.list:
        for r in rows:
            print(f"{r['id']}  batch={r['batch']} trans_a={r['trans_a']} trans_b={r['trans_b']}")
        return 0

    import torch

    if not torch.cuda.is_available():
        print("torch_matmul_peer: torch sees no CUDA device", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    dev = torch.device("cuda:0")
    torch.manual_seed(0)
    print(f"{'kernel':<44} {'flopcal':>10} {'torch':>10} {'flopcal/torch':>13}")
    print(f"{'':<44} {'TFLOP/s':>10} {'TFLOP/s':>10}")
    for r in rows:
        r.update(time_torch(torch, r, dev, args.min_reps, args.max_reps, args.time_per_shape))
        r["torch_flops_per_s"] = r["flops"] / r["torch_median_s"]
        r["ratio"] = r["flopcal_flops_per_s"] / r["torch_flops_per_s"]
        print(
            f"{r['id']:<44} {r['flopcal_flops_per_s'] / 1e12:>10.1f} "
            f"{r['torch_flops_per_s'] / 1e12:>10.1f} {r['ratio']:>13.2f}"
        )
    result = {
        "schema": "flopcal-torch-peer/1",
        "profile": os.path.basename(args.profile),
        "profile_run_id": profile.get("run_id"),
        "device_name": torch.cuda.get_device_name(0),
        "torch_version": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torch_settings": {
            "allow_tf32": False,
            "allow_bf16_reduced_precision_reduction": False,
            "allow_fp16_reduced_precision_reduction": False,
        },
        "method": "mamf-finder style: random normal operands, >= 10 calls and 50 ms of warm-up, "
        "then each repetition timed alone with CUDA events; torch_median_s is the median "
        "repetition; ratio = flopcal FLOP/s (its median) / torch FLOP/s (its median)",
        "rows": rows,
    }
    if args.out:
        write_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

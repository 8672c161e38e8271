#!/usr/bin/env python3
"""NVIDIA's published mixture-of-experts rows through `flopcal estimate`, as a user runs it.

The calibration does not fit on these rows (`flopcal calibrate` lists them among the rows
not used), so every figure this prints is out of sample: the rows set no parameter.

For each MoE row on a system with a catalog row (DGX-H100, DGX-B200) whose architecture
the block model has (Mixtral, Qwen3-MoE: grouped-query attention, SwiGLU experts), it
writes the architecture from the shapes table as a Hugging Face config, runs

    flopcal estimate --hf-config CFG --hardware H --devices N --batch GBS --seq S
        --tp .. --pp .. --cp .. --ep .. --microbatch .. [--virtual-stages ..]
        --dtype bf16|fp8 --framework megatron --steps 1 --format json

and compares the predicted tokens/s per GPU with the published one.

Usage: python3 benches/moe_via_estimate.py target/release/flopcal [DATA_DIR]
DATA_DIR defaults to the copy embedded in the model crate (model/src/catalog/nvidia).
"""

import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def shapes(path):
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not row["experts"] or int(row["experts"]) == 0:
                continue
            kind = row["attention_kind"]
            # As the calibration reads the table: sliding windows (GPT-OSS) and
            # multi-head latent attention (DeepSeek-V3) are beyond the block model.
            if not (kind in ("MHA", "GQA") or kind.startswith("GQA (q-proj")):
                continue
            for name in row["names_in_tables"].split(";"):
                # With and without a trailing annotation, as the calibration reads it.
                out[name.strip()] = row
                out[name.split(" (")[0].strip()] = row
    return out


def hf_config(row):
    family = "mixtral" if row["model_key"].startswith("Mixtral") else "qwen3_moe"
    cfg = {
        "model_type": family,
        "hidden_size": int(row["hidden"]),
        "num_hidden_layers": int(row["layers"]),
        "num_attention_heads": int(row["heads"]),
        "num_key_value_heads": int(row["kv_heads"]),
        "head_dim": int(row["head_dim"]),
        "vocab_size": int(row["vocab"]),
        "num_experts_per_tok": int(row["top_k"]),
        "tie_word_embeddings": False,
        "max_position_embeddings": 4096,
    }
    if family == "mixtral":
        cfg["num_local_experts"] = int(row["experts"])
        cfg["intermediate_size"] = int(row["ffn"])
    else:
        cfg["num_experts"] = int(row["experts"])
        cfg["moe_intermediate_size"] = int(row["ffn"])
        cfg["intermediate_size"] = int(row["ffn"])
    return cfg


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    flopcal = sys.argv[1]
    data = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        HERE, "..", "model", "src", "catalog", "nvidia")
    arch = shapes(os.path.join(data, "megatron-shapes.csv"))
    hardware = {"DGX-H100": "h100-sxm", "DGX-B200": "b200"}
    tmp = tempfile.mkdtemp()
    rows = []
    with open(os.path.join(data, "megatron-perf.csv"), newline="") as f:
        for r in csv.DictReader(f):
            hw = hardware.get(r["system"])
            shape = arch.get(r["model"].strip())
            prec = r["precision"].lower()
            dtype = "bf16" if prec.startswith("bf16") else (
                "fp8" if prec.startswith(("fp8", "mxfp8")) else None)
            if not (hw and shape and dtype and r["tokens_per_s_per_gpu"]):
                continue
            path = os.path.join(tmp, shape["model_key"] + ".json")
            with open(path, "w") as out:
                json.dump(hf_config(shape), out)
            args = [flopcal, "estimate", "--hf-config", path, "--hardware", hw,
                    "--devices", r["gpus"], "--batch", r["gbs"], "--seq", r["seq"],
                    "--steps", "1", "--dtype", dtype, "--format", "json"]
            for flag, col in [("--tp", "tp"), ("--pp", "pp"), ("--cp", "cp"),
                              ("--ep", "ep"), ("--microbatch", "mbs")]:
                if r[col].isdigit():
                    args += [flag, r[col]]
            if r["vp"].isdigit():
                args += ["--virtual-stages", r["vp"]]
            fw = "fsdp" if r["framework"] == "nemo-automodel" else "megatron"
            args += ["--framework", fw]
            if r["fsdp"].isdigit() and int(r["fsdp"]) > 1:
                args += ["--zero", "3"]
            label = f'{r["release"]} {r["system"]} {prec} {r["model"]} x{r["gpus"]}'
            p = subprocess.run(args, capture_output=True, text=True)
            if p.returncode != 0:
                rows.append((label, None, float(r["tokens_per_s_per_gpu"]),
                             p.stderr.strip().splitlines()[-1]))
                continue
            est = json.loads(p.stdout)
            tps = est["tokens_per_s"] / int(r["gpus"])
            rows.append((label, tps, float(r["tokens_per_s_per_gpu"]), ""))
    errs = []
    for label, got, want, why in rows:
        if got is None:
            print(f"{label:60s} refused: {why}")
            continue
        e = got / want - 1
        errs.append(e)
        print(f"{label:60s} predicted {got:8.0f}  published {want:8.0f}  {100 * e:+6.1f}%")
    if errs:
        a = sorted(abs(e) for e in errs)
        print(f"{len(errs)} rows: median |error| {100 * statistics.median(a):.1f}%, "
              f"within ±20%: {sum(x <= 0.2 for x in a)}/{len(a)}, "
              f"median error {100 * statistics.median(errs):+.1f}%, "
              f"median |ln| {statistics.median(abs(math.log1p(e)) for e in errs):.3f}")


if __name__ == "__main__":
    main()

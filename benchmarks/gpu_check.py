"""One short check for a machine with a CUDA GPU: does the engine give the same fractures in fp16 as
in fp32 there, how long does a CT take, how much GPU memory does it hold, and does running out of
memory fall back to smaller batches before the CPU?

    python benchmarks/gpu_check.py [--real CT.nii.gz] [--size 512] [--out DIR]

Two phantoms (generated here, seeds 9101/9102) and a real CT (LIDC-IDRI-0314 from
../shared/data/real when present), each segmented with the shipped model in fp32 and fp16 on the
GPU (plus once on the CPU for the time ratio when --cpu). Prints one line per CT and writes
gpu_check.json into --out. Exit code 2 without a CUDA GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "data" / "real" / "LIDC-IDRI-0314.nii.gz"


def phantom(seed: int, size: int):
    from RibFracSegLib.phantom.dataset import sample_params
    from RibFracSegLib.phantom.generate import generate_phantom
    return generate_phantom(sample_params(seed, size=size, fov="thorax", n_fractures=6)).image


def timed_run(image, ckpt, precision: str, device: str = "cuda", **kw):
    import torch
    from RibFracSegLib.inference import segment_ct
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    result = segment_ct(image, ckpt, device=device, precision=precision, return_probability=True, **kw)
    if device == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
    return result, time.perf_counter() - t, peak


def out_of_memory_path() -> dict:
    """Cap the GPU memory this process may use, ask for a batch that cannot fit, check the work stays
    on the GPU in smaller batches and gives the probabilities of a one-patch-at-a-time run."""
    import torch
    from RibFracSegLib.inference import predict_probability
    from RibFracSegLib.networks import build_network
    torch.manual_seed(0)
    model = build_network("fracnet_unet").cuda().eval()
    hu = np.full((128, 192, 192), 40.0, np.float32)
    hu[:, 60:130, 60:130] = 700.0
    run = dict(patch_size=(64, 64, 64), hu_window=(-200.0, 1000.0), precision="fp32", device=torch.device("cuda"))
    reference, _ = predict_probability(hu, model, batch_size=1, **run)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, 3 * 2**30 / total))  # ~3 GiB: one 64-patch batch OOMs
    try:
        prob, stats = predict_probability(hu, model, batch_size=64, **run)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    return {"device_after": stats.device, "max_abs_diff_vs_batch_1": float(np.abs(prob - reference).max()),
            "ok": stats.device.startswith("cuda") and float(np.abs(prob - reference).max()) < 1e-4}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", default=str(REAL))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cpu", action="store_true", help="also time each CT on the CPU (slow)")
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    import SimpleITK as sitk
    import torch
    from RibFracSegLib.checkpoint import load_checkpoint
    from RibFracSegLib.precision import compare_results
    from RibFracSegLib.shipped import shipped_model
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing checked")
        return 2
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    ckpt = load_checkpoint(shipped_model("fracture_ct"))
    cases = [(f"phantom-{s}", phantom(s, args.size)) for s in (9101, 9102)]
    if Path(args.real).exists():
        cases.append((Path(args.real).name.split(".")[0], sitk.ReadImage(args.real)))
    report = {"gpu": torch.cuda.get_device_name(0), "cases": []}
    for name, image in cases:
        fp32, s32, m32 = timed_run(image, ckpt, "fp32")
        fp16, s16, m16 = timed_run(image, ckpt, "fp16", ribs=fp32.ribs, find_ribs=False)
        same = compare_results(name, "fp16", fp32, fp16)
        row = {"case": name, "fp32_s": s32, "fp16_s": s16, "fp16_network_s": fp16.timings_s["network"],
               "ribs_s": fp32.timings_s["ribs"], "peak_gpu_mb_fp32": m32, "peak_gpu_mb_fp16": m16,
               "same_fractures": same.same, "detections": same.count_fp32, "matched": same.matched,
               "min_iou": same.min_iou, "max_confidence_diff": same.max_confidence_diff,
               "max_probability_diff": same.max_probability_diff}
        if args.cpu:
            row["cpu_s"] = timed_run(image, ckpt, "auto", device="cpu", ribs=fp32.ribs, find_ribs=False)[1]
        report["cases"].append(row)
        print(json.dumps(row), flush=True)
    report["out_of_memory"] = out_of_memory_path()
    print("out of memory path:", json.dumps(report["out_of_memory"]), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_check.json").write_text(json.dumps(report, indent=1))
    ok = all(c["same_fractures"] for c in report["cases"]) and report["out_of_memory"]["ok"]
    print("fp16 gives the same fractures, OOM path stays on the GPU" if ok else "CHECK FAILED: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

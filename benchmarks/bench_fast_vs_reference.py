"""Does the fast path give the same fractures? The shipped model as users run it (precision "auto" =
the checkpoint's calibrated verdict, patches skipped by ribs or bone) against the reference: fp32,
every patch computed. Held-out phantoms (2-3 mm slices, PIR/ASL/RAI/ILP storage, and 0.6-2.5 mm
ones from the seed-2024 set) and a real CT with simulated fractures.

Prints per CT: detections, matched with IoU >= 0.9, worst confidence difference, patches computed,
seconds; then the FROC of both runs over the phantoms (RibFrac evaluator).

    python benchmarks/bench_fast_vs_reference.py [--threads 2] [--cases RibFrac2001 ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / ".cache" / "fast_vs_reference"
DEFAULT_CASES = ["RibFrac2001", "RibFrac2002", "RibFrac2003", "RibFrac2004", "RibFrac1005", "RibFrac1006",
                 "RibFrac3141"]


def main() -> None:
    import torch

    from bench_default_checkpoint import ensure_heldout
    from detector_sets import SIM_COPIES, SIM_FRACTURES, joined, permuted_phantoms, simulated_0314
    from RibFracSegLib.checkpoint import load_checkpoint
    from RibFracSegLib.evaluation import evaluate_dirs
    from RibFracSegLib.export import write_case_tables
    from RibFracSegLib.inference import segment_ct
    from RibFracSegLib.io import read_ct
    from RibFracSegLib.precision import compare_results
    from RibFracSegLib.shipped import shipped_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", nargs="*", default=DEFAULT_CASES)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(shipped_model("fracture_ct"))
    print(f"shipped model: {ckpt.arch} {ckpt.hparams}, calibrated precision {ckpt.inference.get('precision', {})}")
    sources = [ensure_heldout(ROOT / ".cache" / "heldout_6", 6, 2024), permuted_phantoms(ROOT / ".cache" / "heldout_perm"),
               simulated_0314(ROOT / ".cache" / f"sim_0314_k{SIM_COPIES}x{SIM_FRACTURES}")]
    found = {p.name.replace("-image.nii.gz", ""): p for src in sources for p in src.glob("*-image.nii.gz")}
    phantoms = [c for c in args.cases if not c.startswith("RibFrac314")]
    gt = joined(OUT / "gt", sources[:2], only=set(phantoms))  # the phantoms compared, for the evaluator
    runs = {"reference": dict(precision="fp32", skip_empty=False), "fast": dict(precision="auto")}
    folders = {name: OUT / "pred" / name for name in runs}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
    same_all = True
    for case in args.cases:
        image = read_ct(found[case])
        results, seconds = {}, {}
        for name, kw in runs.items():
            t = time.perf_counter()
            results[name] = segment_ct(image, ckpt, return_probability=True,
                                       ribs=results["reference"].ribs if name == "fast" else None, **kw)
            seconds[name] = time.perf_counter() - t
            if case in phantoms:
                sitk.WriteImage(results[name].instances, str(folders[name] / f"{case}.nii.gz"), True)
                write_case_tables(case, results[name].detections, folders[name])
        c = compare_results(case, results["fast"].device, results["reference"], results["fast"])
        same_all &= c.same
        ref, fast = results["reference"], results["fast"]
        print(f"{case}: {c.count_fp32} -> {c.count_other} detections, {c.matched} matched (IoU >= 0.9, worst "
              f"{c.min_iou:.3f}), worst confidence diff {c.max_confidence_diff:.4f}, max probability diff "
              f"{c.max_probability_diff:.3f} | reference {ref.device}, {ref.patches_total - ref.patches_skipped} "
              f"patches, {seconds['reference']:.1f} s | fast {fast.device}, "
              f"{fast.patches_total - fast.patches_skipped} patches by {fast.skip_rule}, {seconds['fast']:.1f} s "
              f"(ribs {fast.timings_s.get('ribs', 0):.1f} s reused) | {'same' if c.same else 'DIFFERENT'}", flush=True)
    if phantoms:
        for name, folder in folders.items():
            report = evaluate_dirs(folder, gt)
            print(f"\n{name} on {len(phantoms)} phantoms: FROC {report.froc:.4f}\n{report.summary()}")
    print("\nevery CT gave the same fractures" if same_all else "\nSOME CT GAVE OTHER FRACTURES")


if __name__ == "__main__":
    main()

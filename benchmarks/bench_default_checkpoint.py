"""Benchmark of a fracture checkpoint (default: the embedded one) the way a user would judge it.

1. Generates 20 fresh held-out phantoms (data-set seed 2024, never used in training) with the
   realistic parameter sampler: 512² matrices, pixel 0.6-1.0 mm, slices 0.625-2.5 mm, the three
   fields of view, LPS/RAS/LPI/oblique storage, 0-10 fractures. Cached in .cache/heldout.
2. Segments each with the library's cohort runner (`segment_case`, as `ribfracseg segment`) at
   the checkpoint's default threshold into a RibFrac submission, and scores it with the RibFrac-exact evaluator (FROC, recall at key FP levels).
3. Counts detections on the real LIDC-IDRI-0001 chest CT (no known fractures: every detection is a
   false positive) at the default threshold.

    python benchmarks/bench_default_checkpoint.py [--checkpoint PATH] [--n 20] [--threads 1] [--workers N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

HELDOUT_SEED = 2024  # data-set seed of the held-out phantoms; training used 101/102, validation 103


def ensure_heldout(folder: Path, n: int, seed: int) -> Path:
    """Generate the held-out set once (realistic sampler, test split); reuse it when complete."""
    from RibFracSegLib.phantom import GENERATOR_VERSION
    from RibFracSegLib.phantom.dataset import write_dataset

    stamp = folder / "heldout.json"
    wanted = {"n": n, "seed": seed, "generator": GENERATOR_VERSION}  # another generator: the set is made again
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return folder
    t = time.perf_counter()
    write_dataset(folder, n, seed, split="test", first_id=1001, overrides={"slice_profile": True},
                  on_case=lambda pid, case: print(f"  generated {pid}: {case.image.GetSize()} "
                                                  f"{tuple(round(s, 2) for s in case.image.GetSpacing())} mm, "
                                                  f"{case.params.fov}, {case.params.orientation}, "
                                                  f"{len(case.fractures)} fractures", flush=True))
    stamp.write_text(json.dumps(wanted))
    print(f"held-out phantoms generated in {time.perf_counter() - t:.0f} s")
    return folder


def segment_folder(gt_dir: Path, pred_dir: Path, checkpoint: str, limit: int | None, stamp: str,
                   workers: int = 0) -> list[dict]:
    """Segment every case into a RibFrac submission with the library's cohort runner (the same
    per-case pipeline as `ribfracseg segment`). Cases already done for this checkpoint are kept, so
    a run can be interrupted and restarted; --workers runs cases in parallel on a local Dask cluster."""
    from RibFracSegLib.cases import labelled_cases
    from RibFracSegLib.cohort import run_cases
    from RibFracSegLib.options import SegmentOptions

    pred_dir.mkdir(parents=True, exist_ok=True)
    stamp_file = pred_dir / "checkpoint.sha256"
    if not stamp_file.is_file() or stamp_file.read_text() != stamp:
        for old in pred_dir.iterdir():
            if old.is_file():
                old.unlink()
        stamp_file.write_text(stamp)
    images = [c.image for c in labelled_cases(gt_dir)[:limit]]
    reports = run_cases(images, pred_dir, SegmentOptions(checkpoint=checkpoint), workers=workers,
                        on_report=lambda r: print(f"  {r.case}: {r.status}, {r.n_fractures} detections "
                                                  f"{r.error or ''}", flush=True))
    timings = []
    for report in reports:
        if report.status == "failed":
            raise SystemExit(f"{report.case} failed: {report.error}")
        summary = json.loads(Path(report.outputs["summary"]).read_text())
        timings.append({"case": report.case, "seconds": summary["timings_s"]["total"],
                        "detections": len(summary["detections"])})
    return timings


def lidc_false_positives(checkpoint) -> dict:
    from real_data import lidc_path

    from RibFracSegLib.options import SegmentOptions
    from RibFracSegLib.pipeline import segment_case

    report = segment_case(lidc_path(), None, SegmentOptions(), checkpoint=checkpoint)  # in memory
    if report.result is None:
        raise SystemExit(f"LIDC CT failed: {report.error}")
    result = report.result
    return {"detections": len(result.detections), "seconds": round(result.timings_s["total"], 1),
            "confidences": [round(d.confidence, 3) for d in result.detections],
            "centers_ras": [tuple(round(v, 1) for v in d.center_ras) for d in result.detections]}


def main() -> None:
    import torch

    from RibFracSegLib.shipped import shipped_model
    from RibFracSegLib.checkpoint import load_checkpoint
    from RibFracSegLib.evaluation import evaluate_dirs
    from RibFracSegLib.evaluation.plot import save_froc_png

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(shipped_model("fracture")))
    parser.add_argument("--n", type=int, default=20, help="held-out phantoms (default 20)")
    parser.add_argument("--seed", type=int, default=HELDOUT_SEED)
    parser.add_argument("--data", default=str(ROOT / ".cache" / "heldout"))
    parser.add_argument("--pred", default=str(ROOT / ".cache" / "heldout_pred"))
    parser.add_argument("--limit", type=int, help="segment only the first N cases (quick look; not the figure)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    parser.add_argument("--plot", help="write the FROC curve PNG here")
    parser.add_argument("--skip-lidc", action="store_true")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--workers", type=int, default=0, help="cases in parallel on a local Dask cluster")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    gt_dir = ensure_heldout(Path(args.data), args.n, args.seed)
    if args.generate_only:
        return
    ckpt = load_checkpoint(args.checkpoint)
    print(f"checkpoint {args.checkpoint}: {ckpt.arch} {ckpt.hparams}, threshold {ckpt.thresholds.get('probability')}")
    pred_dir = Path(args.pred)
    sha = hashlib.sha256(Path(args.checkpoint).read_bytes()).hexdigest()
    timings = segment_folder(gt_dir, pred_dir, args.checkpoint, args.limit, sha, args.workers)
    if args.limit:  # evaluate only the segmented cases: link their truth into a temporary folder
        sub = pred_dir.parent / (pred_dir.name + "_gt")
        sub.mkdir(exist_ok=True)
        for old in sub.iterdir():
            old.unlink()
        for t in timings:
            (sub / f"{t['case']}-label.nii.gz").symlink_to(gt_dir / f"{t['case']}-label.nii.gz")
        (sub / "info.csv").symlink_to(gt_dir / "ribfrac-test-info.csv")
        gt_dir = sub
    report = evaluate_dirs(pred_dir, gt_dir)
    print(f"\nHeld-out phantoms (data-set seed {args.seed}, {report.n_scans} scans, {report.n_gt} fractures):")
    print(report.summary())
    print(f"segment_ct seconds per scan: mean {sum(t['seconds'] for t in timings) / len(timings):.0f}, "
          f"max {max(t['seconds'] for t in timings):.0f}")
    if args.plot:
        print(f"FROC plot: {save_froc_png(report, args.plot, title=f'FROC, {report.n_scans} held-out phantoms')}")
    if not args.skip_lidc:
        fp = lidc_false_positives(ckpt)
        print(f"\nReal LIDC-IDRI-0001 chest CT (no known fractures): {fp['detections']} false positives per scan "
              f"at the default threshold ({fp['seconds']} s); confidences {fp['confidences']}")


if __name__ == "__main__":
    main()

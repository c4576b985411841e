"""The on-rib filter, with and without: FROC on held-out phantoms and false positives per real CT.

One network pass per CT: `segment_ct` runs with the filter off (ribs still found), then the
detections that do not touch the ribs grown by the margin are removed for the "on" column, so both
columns come from the same probabilities.

    python benchmarks/bench_on_rib.py [--n 10] [--margin 5]

Held-out phantoms: the first N of bench_default_checkpoint.py's set (data-set seed 2024; case i
depends on the seed and i alone), generated once into .cache/heldout_<N>.
The real CTs have no known fracture: every detection on them is a false positive.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_default_checkpoint import HELDOUT_SEED, ensure_heldout  # noqa: E402
from real_data import lidc_path  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"


def both_results(image, ckpt, margin_mm: float):
    """(result without the filter, result with it) from one pass of the network."""
    import SimpleITK as sitk

    from RibFracSegLib import defaults
    from RibFracSegLib.detections import FractureResult
    from RibFracSegLib.inference import segment_ct
    from RibFracSegLib.orientation import canonical_volume
    from RibFracSegLib.ribs.assign import near_ribs

    off = segment_ct(image, ckpt, on_rib=False)
    volume = canonical_volume(off.instances)
    labels = np.asarray(volume.array)
    trusted = off.ribs is not None and len(off.ribs.ribs) >= defaults.ON_RIB_MIN_RIBS  # the pipeline's rule
    near = near_ribs(off.ribs, volume, margin_mm) if trusted else None
    if near is None:
        return off, off
    touching = set(np.unique(labels[near & (labels > 0)]).tolist())
    kept = [d for d in off.detections if d.id in touching]
    relabel = np.zeros(int(labels.max()) + 1, np.uint16)
    for new, d in enumerate(kept, start=1):
        relabel[d.id] = new
    instances = sitk.GetImageFromArray(relabel[sitk.GetArrayViewFromImage(off.instances)])
    instances.CopyInformation(off.instances)
    on = FractureResult(detections=[replace(d, id=i) for i, d in enumerate(kept, start=1)], instances=instances,
                        timings_s=off.timings_s, ribs=off.ribs)
    return off, on


def main() -> None:
    import torch

    from RibFracSegLib import defaults
    from RibFracSegLib.shipped import shipped_model
    from RibFracSegLib.checkpoint import load_checkpoint
    from RibFracSegLib.evaluation import evaluate_dirs
    from RibFracSegLib.export import write_submission
    from RibFracSegLib.io import read_ct
    from RibFracSegLib.cases import labelled_cases as find_cases

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(shipped_model("fracture_ct")))
    parser.add_argument("--n", type=int, default=10, help="held-out phantoms (the first N of the 20)")
    parser.add_argument("--margin", type=float, default=defaults.ON_RIB_MARGIN_MM, help="on-rib margin, mm")
    parser.add_argument("--out", default=str(ROOT / ".cache" / "bench_on_rib"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    gt_all = ensure_heldout(ROOT / ".cache" / f"heldout_{args.n}", args.n, HELDOUT_SEED)
    out = Path(args.out)
    gt = out / "gt"
    gt.mkdir(parents=True, exist_ok=True)
    for old in gt.iterdir():
        old.unlink()
    (gt / "info.csv").symlink_to(gt_all / "ribfrac-test-info.csv")
    for files in find_cases(gt_all)[: args.n]:
        (gt / f"{files.public_id}-label.nii.gz").symlink_to(files.label)
        t = time.perf_counter()
        off, on = both_results(read_ct(files.image), ckpt, args.margin)
        for name, result in (("off", off), ("on", on)):
            write_submission(result, files.public_id, out / name)
        print(f"  {files.public_id}: {len(off.detections)} -> {len(on.detections)} detections, "
              f"{len(off.ribs.ribs) if off.ribs else 0} ribs, {time.perf_counter() - t:.0f} s", flush=True)
    for name in ("off", "on"):
        report = evaluate_dirs(out / name, gt)
        print(f"\non-rib filter {name} (margin {args.margin} mm), {report.n_scans} held-out phantoms, "
              f"{report.n_gt} fractures:\n{report.summary()}")
    print("\nReal CTs (no known fracture): false positives per scan, filter off -> on")
    for label, path in (("LIDC-IDRI-0001", lidc_path()), ("LIDC-IDRI-0314", REAL / "LIDC-IDRI-0314.nii.gz"),
                        ("CRLM-CT-1004", REAL / "CRLM-CT-1004.nii.gz")):
        off, on = both_results(read_ct(path), ckpt, args.margin)
        ribs = len(off.ribs.ribs) if off.ribs else 0
        applied = "" if ribs >= defaults.ON_RIB_MIN_RIBS else f" (only {ribs} ribs found: the filter is not applied)"
        print(f"  {label}: {len(off.detections)} -> {len(on.detections)}{applied}")


if __name__ == "__main__":
    main()

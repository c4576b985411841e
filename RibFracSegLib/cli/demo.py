"""`ribfracseg demo`: the main job on the embedded defaults, checked against known truth.

A fresh synthetic CT (chest and upper abdomen, so both ribs and L3 are in view) is generated,
segmented with the shipped fracture model, and every truth fracture is listed with the detection
that found it (RibFrac IoU rule) or as missed; false positives are listed too. With the shipped L3
model, L3 as `ribfracseg l3` finds it (the vertebral count checked against the MIP network, with its
source and review flag) and body composition are reported against the phantom's L3 truth.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, help="phantom seed (default: a new one each run, printed)")
    p.add_argument("--out", default="ribfracseg-demo", help="folder for the CT, truth and results")
    p.add_argument("--checkpoint", help="fracture checkpoint (default: the embedded one)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--size", type=int, default=512, help="in-plane matrix of the phantom (default 512)")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import SimpleITK as sitk

    from RibFracSegLib import defaults
    from RibFracSegLib.errors import CheckpointError, InputError
    from RibFracSegLib.evaluation.matching import match_case
    from RibFracSegLib.inference import segment_ct
    from RibFracSegLib.phantom import generate_phantom
    from RibFracSegLib.phantom.dataset import write_case
    from RibFracSegLib.progress import tqdm_progress
    from RibFracSegLib.shipped import shipped_model

    checkpoint = Path(args.checkpoint or shipped_model("fracture"))
    if not checkpoint.exists():
        raise CheckpointError(f"no fracture checkpoint at {checkpoint}. Give --checkpoint FILE, or train one "
                              "with `ribfracseg train`.")
    if not defaults.PHANTOM_MIN_SIZE <= args.size <= defaults.PHANTOM_MAX_SIZE:
        raise InputError(f"--size {args.size}: the phantom's in-plane matrix must be {defaults.PHANTOM_MIN_SIZE}-"
                         f"{defaults.PHANTOM_MAX_SIZE} voxels (default 512).")
    seed = args.seed if args.seed is not None else int(time.time_ns() % 2**31)
    params = demo_params(seed, args.size)
    t0 = time.perf_counter()
    case = generate_phantom(params)
    out = Path(args.out)
    write_case(out, "RibFracDemo", case)
    print(f"phantom seed {seed}: {'x'.join(map(str, params.shape))} voxels at "
          f"{'x'.join(f'{s:.2f}' for s in params.spacing)} mm, stored {params.orientation}, "
          f"{len(case.fractures)} fractures ({time.perf_counter() - t0:.1f} s) -> {out}/RibFracDemo-*.nii.gz")

    with tqdm_progress("segment", "patch", leave=True) as progress:
        result = segment_ct(case.image, checkpoint, device=args.device, progress=progress)
    sitk.WriteImage(result.instances, str(out / "RibFracDemo-prediction.nii.gz"), useCompression=True)
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings_s.items())
    print(f"segmented on {result.device}: {stages}; {result.patches_skipped} of {result.patches_total} patches "
          f"skipped (rule: {result.skip_rule})")

    gt = sitk.GetArrayFromImage(case.fracture_labels).transpose(2, 1, 0)
    pred = sitk.GetArrayFromImage(result.instances).transpose(2, 1, 0)
    match = match_case("demo", gt, pred, [(f.label_id, f.code) for f in case.fractures],
                       [(d.id, d.confidence, d.label_code) for d in result.detections])
    by_id = {d.id: d for d in result.detections}
    hits = {}
    for row in match.rows:
        if row.max_iou > 0.2 and row.hit_label not in hits:
            hits[row.hit_label] = row
    print(f"\n{'truth':>5} {'type':>14} {'rib':>4}  {'found by':>8} {'IoU':>5} {'conf':>5} {'offset mm':>9}  "
          f"{'typed as':<18}  found on")
    for f in case.fractures:
        row = hits.get(f.label_id)
        if row is None:
            print(f"{f.label_id:>5} {f.kind:>14} {f.rib:>4}  {'missed':>8}")
            continue
        d = by_id[row.pred_label]
        print(found_line(f, d, row.max_iou, float(np.linalg.norm(np.subtract(d.center_ras, f.center_ras)))))
    false = [r for r in match.rows if r.max_iou <= 0.2]
    for r in false:
        print(false_positive_line(by_id[r.pred_label]))
    print(f"\nfound {len(hits)} of {len(case.fractures)} fractures with {len(false)} false positives "
          f"(the checkpoint's own thresholds; see its model card for operating points)")
    _demo_l3(case, out)
    return 0


def found_line(f, d, iou: float, offset_mm: float) -> str:
    """A truth fracture's row: its type and rib, the detection that found it and the type it was given."""
    from RibFracSegLib.detections import detection_type_text
    from RibFracSegLib.ribs.assign import rib_phrase

    return (f"{f.label_id:>5} {f.kind:>14} {f.rib:>4}  {d.id:>8} {iou:5.2f} {d.confidence:5.2f} {offset_mm:9.1f}"
            f"  {detection_type_text(d):<18}  {rib_phrase(d.rib, d.rib_region)}")


def false_positive_line(d) -> str:
    from RibFracSegLib.detections import fracture_text
    from RibFracSegLib.ribs.assign import rib_phrase

    return (f"false positive {d.id}: confidence {d.confidence:.2f}, {fracture_text(d)}, "
            f"{d.volume_mm3:.0f} mm³ at RAS ({', '.join(f'{v:.0f}' for v in d.center_ras)}), "
            f"{rib_phrase(d.rib, d.rib_region)}")


def demo_params(seed: int, size: int = 512):
    """The demo's phantom: chest and upper abdomen (ribs and L3 in view), six fractures, the storage
    order, slices and grid drawn from `seed` (benchmarks/bench_demo_l3.py measures L3 on the same)."""
    from RibFracSegLib.phantom.dataset import sample_params

    return sample_params(seed, size=size, fov="thorax_abdomen", n_fractures=6, slice_profile=True)


def l3_line(l3, truth) -> str:
    """The checked L3 (`l3.check.locate_l3_checked`, as `ribfracseg l3`): where, from which source,
    whether to review it and why, and its distance to the truth's body centre along the superior axis."""
    flag = f"; REVIEW: {l3.review_reason}" if l3.review else (f"; {l3.review_reason}" if l3.review_reason else "")
    if not l3.in_view:
        return (f"L3: not in view (source {l3.source}, count from {l3.count_anchor}{flag}); truth: "
                f"{'in view' if truth else 'not in view'}")
    err = f", {abs(l3.z_mm - truth.center_lps[2]):.1f} mm from the truth" if truth else ", truth: not in view"
    return (f"L3: slice {l3.slice_index} (z {l3.z_mm:.1f} mm{err}); source {l3.source}, count from "
            f"{l3.count_anchor}, network confidence {l3.confidence:.2f}{flag}")


def _demo_l3(case, out: Path) -> None:
    from RibFracSegLib.shipped import shipped_model

    if not shipped_model("l3").exists():
        return
    from RibFracSegLib.l3 import body_composition
    from RibFracSegLib.l3.check import locate_l3_checked

    l3 = locate_l3_checked(case.image)
    print(l3_line(l3, case.l3))
    if not l3.in_view:
        return
    comp = body_composition(case.image, l3)
    print(f"body composition at L3: muscle {comp.muscle_cm2:.1f} cm², subcutaneous fat {comp.sat_cm2:.1f} cm², "
          f"visceral fat {comp.vat_cm2:.1f} cm²")

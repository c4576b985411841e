"""L3 locator and body composition on held-out phantoms: error in mm, "not in view", time per CT.

    python benchmarks/bench_l3.py [--n 20] [--seed 90000] [--checkpoint RibFracSegLib/models/l3_default.pt] [--real]

Phantoms use seeds never used in training (train 1000+, validation 5000+), varied spacing,
orientation and field of view (a third thorax-only: L3 must be reported "not in view"). The time is
locate_l3 + body_composition on an in-memory CT (phantom generation and file IO not included).
Body composition is compared with the phantom's tissue classes on the true L3 slice.
--real adds the real LIDC-IDRI-0001 chest CT (benchmarks/real_data.py), whose last slices cut through
L3, compared with the TotalSegmentator L3 label shipped with it.
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk
import torch

from RibFracSegLib import defaults
from RibFracSegLib.orientation import canonical_image
from RibFracSegLib.l3 import body_composition, locate_l3
from RibFracSegLib.l3.dataset import phantom_params
from RibFracSegLib.l3.decoding import point_to_row
from RibFracSegLib.l3.evaluation import error_stats
from RibFracSegLib.phantom import Tissue, generate_phantom
from RibFracSegLib.phantom.dataset import sample_params
from RibFracSegLib.shipped import shipped_model


def tissue_truth(case) -> dict[str, float]:
    """Phantom areas (cm^2) on the true L3 slice: muscle, FAT (subcutaneous + intermuscular), visceral fat."""
    tissue = canonical_image(case.tissue)
    k = int(round(tissue.TransformPhysicalPointToContinuousIndex(case.l3.center_lps)[2]))
    t = sitk.GetArrayViewFromImage(tissue)[k]
    px = float(np.prod(tissue.GetSpacing()[:2])) / 100
    return {"muscle": (t == Tissue.MUSCLE).sum() * px, "sat+imat": (t == Tissue.FAT).sum() * px,
            "vat": (t == Tissue.VISCERAL_FAT).sum() * px}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=90000)
    parser.add_argument("--checkpoint", default=str(shipped_model("l3")))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--real", action="store_true", help="also the real LIDC chest CT (downloaded once)")
    parser.add_argument("--real-only", action="store_true", help="only the real LIDC chest CT")
    parser.add_argument("--realistic", action="store_true",
                        help="clinical grids (512 matrix, 0.6-1.0 mm pixels, 0.625-2.5 mm slices) from "
                             "phantom.dataset.sample_params instead of the training distribution's coarse grids")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.real_only:
        return real_chest_ct(args.checkpoint)
    fovs = [defaults.PHANTOM_FIELDS_OF_VIEW[i % 3] for i in range(args.n)]
    errors, point_errors, times, not_in_view, thorax = [], [], [], 0, 0
    comp_err = {"muscle": [], "sat+imat": [], "vat": []}
    locate_l3(generate_phantom(phantom_params(args.seed - 1, "abdomen_pelvis")).image, args.checkpoint)  # warm-up
    print(f"{'case':<28}{'spacing mm':>18}{'orient':>8}{'truth':>8}{'pred':>8}{'err mm':>8}{'conf':>6}{'s':>6}")
    for i, fov in enumerate(fovs):
        params = (sample_params(args.seed + i, fov=fov, n_fractures=0) if args.realistic
                  else phantom_params(args.seed + i, fov))
        case = generate_phantom(params)
        t0 = time.perf_counter()
        l3 = locate_l3(case.image, args.checkpoint)
        comp = body_composition(case.image, l3) if l3.in_view else None
        times.append(time.perf_counter() - t0)
        truth = None if case.l3 is None else point_to_row(l3.projections, case.l3.center_lps)
        err = None if truth is None else abs(l3.row_mm - truth)
        if truth is None:
            thorax += 1
            not_in_view += not l3.in_view
        else:
            errors.append(err if l3.in_view else float("inf"))
            point_errors.append(float(np.linalg.norm(np.subtract(l3.center_lps, case.l3.center_lps))))
            ref = tissue_truth(case)
            at_truth = body_composition(case.image, SimpleNamespace(center_lps=case.l3.center_lps, slice_index=0,
                                                                    projections=None))
            got = {"muscle": at_truth.muscle_cm2, "sat+imat": at_truth.sat_cm2 + at_truth.imat_cm2,
                   "vat": at_truth.vat_cm2}
            for k in comp_err:
                comp_err[k].append(100 * (got[k] - ref[k]) / ref[k])
        sp = "x".join(f"{v:.1f}" for v in params.spacing)
        print(f"{f'{params.seed}-{fov}':<28}{sp:>18}{params.orientation:>8}"
              f"{'-' if truth is None else f'{truth:.1f}':>8}{l3.row_mm if l3.in_view else float('nan'):>8.1f}"
              f"{'-' if err is None else f'{err:.1f}':>8}{l3.confidence:>6.2f}{times[-1]:>6.2f}")
    s = error_stats(errors)
    print(f"\nL3 error on {s['n']} phantoms with L3: median {s['median']:.2f} mm, mean {s['mean']:.2f} mm, "
          f"std {s['std']:.2f} mm, within 5 mm {s['within_5mm']:.0%}, within 10 mm {s['within_10mm']:.0%}")
    print(f"L3 point (vertebral body centre) 3-D distance to truth: median {np.median(point_errors):.2f} mm, "
          f"max {np.max(point_errors):.2f} mm")
    print(f"thorax-only phantoms reported 'not in view': {not_in_view} of {thorax}")
    print(f"locate_l3 + body_composition per CT: mean {np.mean(times):.2f} s, max {np.max(times):.2f} s "
          f"({args.threads} threads)")
    for k, v in comp_err.items():
        print(f"body composition at true L3, {k}: signed error median {np.median(v):+.1f} %, "
              f"mean |error| {np.mean(np.abs(v)):.1f} %")
    if args.real:
        real_chest_ct(args.checkpoint)


def real_chest_ct(checkpoint: str) -> None:
    """The real LIDC chest CT: its bottom cuts through L3; compare with TotalSegmentator's L3 label (a
    model's prediction, not manual truth) - the centroid of the visible part of L3."""
    import csv

    from real_data import lidc_path

    from RibFracSegLib.io import read_ct

    image = read_ct(lidc_path())
    t0 = time.perf_counter()
    l3 = locate_l3(image, checkpoint)
    seconds = time.perf_counter() - t0
    with open(lidc_path("structures.csv"), newline="") as fh:
        label = next(int(r["id"]) for r in csv.DictReader(fh) if r["structure"] == "vertebrae_L3")
    mask = sitk.ReadImage(str(lidc_path("mask.nii.gz")))
    k, j, i = np.nonzero(sitk.GetArrayViewFromImage(mask) == label)
    centre = mask.TransformContinuousIndexToPhysicalPoint((float(i.mean()), float(j.mean()), float(k.mean())))
    z_lo, z_hi = (mask.TransformIndexToPhysicalPoint((0, 0, int(v)))[2] for v in (k.min(), k.max()))
    print(f"real LIDC-IDRI-0001 chest CT {image.GetSize()}: in view {l3.in_view} (confidence {l3.confidence:.2f}), "
          f"L3 z {l3.z_mm:.1f} mm; TotalSegmentator L3 label z {min(z_lo, z_hi):.1f}..{max(z_lo, z_hi):.1f} mm "
          f"(cut by the CT's edge), visible-part centroid z {centre[2]:.1f} mm; point-to-centroid distance "
          f"{np.linalg.norm(np.subtract(l3.center_lps, centre)):.1f} mm; {seconds:.2f} s")


if __name__ == "__main__":
    main()

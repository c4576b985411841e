"""Displaced fractures simulated into real ribs: does the rib step keep each broken rib whole?

    python benchmarks/bench_rib_break.py [--n 6] [--seed 0] [--method auto|grow|trace]

Displaced fractures (RibFrac code 1: a gap across the rib, the far piece shifted) are built into
LIDC-IDRI-0001's ribs with `simulate.simulate_case` (sites on its TotalSegmentator ribs), then the
rib step runs on the result. Per fracture it prints the gap and shift, and whether the broken rib is
one region with one centreline across the break: the rib of that number has voxels within 5 mm on
both sides of the break (head side and far side) and its centreline passes within 5 mm of the break.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ribs import ts_truth  # noqa: E402
from real_data import lidc_path  # noqa: E402

DISPLACED = 1  # RibFrac code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6, help="fractures to build (default 6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", default="auto", choices=["auto", "grow", "trace"])
    args = parser.parse_args()

    import SimpleITK as sitk

    from RibFracSegLib.io import read_ct
    from RibFracSegLib.ribs import segment_ribs
    from RibFracSegLib.ribs.centrelines import ribs_from_label_map
    from RibFracSegLib.simulate.case import simulate_case

    image = read_ct(str(lidc_path("cxr.nii.gz")))
    truth = sitk.GetImageFromArray(ts_truth(lidc_path("mask.nii.gz")))
    truth.CopyInformation(image)
    case = simulate_case(image, ribs_from_label_map(truth), args.n, np.random.default_rng(args.seed), kinds=[DISPLACED])
    ribs = segment_ribs(case.image, method=args.method)
    labels = sitk.GetArrayViewFromImage(ribs.labels)
    m = np.array(image.GetDirection(), float).reshape(3, 3) @ np.diag(image.GetSpacing())
    origin = np.array(image.GetOrigin(), float)
    kept = 0
    print(f"rib step ({args.method}): numbering {ribs.numbering}; {len(ribs.ribs)} ribs; notes: {ribs.notes}")
    for built in case.fractures:
        spec = built.spec
        centre = np.array(built.center_lps)
        normal = np.array(spec.normals[0], float)
        rib = ribs.by_name(spec.rib)
        sides = [False, False]
        line_ok = False
        if rib is not None:
            kji = np.argwhere(labels == rib.label)
            pts = origin + kji[:, ::-1] @ m.T
            near = np.linalg.norm(pts - centre, axis=1) < 15.0
            along = (pts[near] - centre) @ normal
            sides = [bool(np.any((along < -2.0) & (along > -8.0))), bool(np.any((along > 2.0) & (along < 8.0)))]
            line_ok = bool(len(rib.centreline_lps)) and float(
                np.linalg.norm(rib.centreline_lps - centre, axis=1).min()) < 5.0
        whole = all(sides) and line_ok
        kept += whole
        shift = float(np.linalg.norm(spec.shift_lps))
        print(f"  {spec.rib} at {spec.breaks_mm[0]:.0f} mm from the head: gap {spec.gap_mm:.1f} mm, shift {shift:.1f} mm"
              f" -> {'one region, one centreline' if whole else 'BROKEN'} (head side {sides[0]}, far side {sides[1]},"
              f" centreline through the break {line_ok})")
    print(f"broken ribs kept whole: {kept} of {len(case.fractures)}")


if __name__ == "__main__":
    main()

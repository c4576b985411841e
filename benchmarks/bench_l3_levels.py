"""Vertebral count + L3 check (spine.vertebral_levels, l3.check) on phantoms and the real CTs.

    python benchmarks/bench_l3_levels.py [--n 8] [--size 320] [--seed 91000] [--out bench-out/levels] [--no-real]

Phantoms: held-out seeds (training used 1000+/5000+), realistic grids from phantom.dataset.sample_params
with 1.25-5 mm slices and every storage order, fields of view cycling thorax+abdomen, abdomen+pelvis and
thorax (L3 must be 'not in view'). Per phantom: each true vertebra named right, wrong or left unnamed,
and the L3 error (superior distance between the checked L3 and the true body centre).
Real: LIDC-IDRI-0001 named vs its TotalSegmentator vertebra labels (benchmarks/real_data.py; each
label's body = its anterior 40 % by antero-posterior position, whose mean height must fall inside
the body we name),
CRLM-CT-1004 (upper abdomen, 5 mm) L3 with a picture, LIDC-IDRI-0314 (chest) 'not in view'.
Times: the rib step, the count and the network per CT, printed with the machine's load (`uptime`):
run on an idle machine for figures to quote.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from RibFracSegLib.l3 import locate_l3
from RibFracSegLib.l3.check import check_l3
from RibFracSegLib.phantom import generate_phantom
from RibFracSegLib.phantom.dataset import sample_params
from RibFracSegLib.ribs import segment_ribs
from RibFracSegLib.spine import vertebral_levels
from RibFracSegLib.spine.picture import save_spine_png

REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "real"
FOVS = ("thorax_abdomen", "abdomen_pelvis", "thorax")
SLICES = (2.5, 5.0, 1.25, 3.0)
TS_NAMES = {29: "L3", 30: "L2", 31: "L1", **{32 + i: f"T{12 - i}" for i in range(12)}, 44: "C7", 45: "C6", 46: "C5"}


def run_ct(image: sitk.Image) -> tuple:
    """(L3Check, seconds: ribs, count, network)."""
    t0 = time.perf_counter()
    ribs = segment_ribs(image)
    t1 = time.perf_counter()
    levels = vertebral_levels(image, ribs)
    t2 = time.perf_counter()
    network = locate_l3(image)
    t3 = time.perf_counter()
    return check_l3(image, network, levels), (t1 - t0, t2 - t1, t3 - t2)


def containing(levels, z: float):
    return next((v for v in levels.vertebrae if v.z_bottom_mm < z <= v.z_top_mm), None)


def phantoms(args) -> None:
    print(f"{'case':<24}{'grid':>22}{'orient':>8}{'anchor':>10}{'right':>6}{'wrong':>6}{'unnamed':>8}"
          f"{'L3 err mm':>10}{'source':>15}{'review':>7}{'ribs s':>7}{'count s':>8}{'net s':>6}")
    errors, thorax_ok, thorax_n, totals, times = [], 0, 0, np.zeros(3, int), []
    for i in range(args.n):
        fov = FOVS[i % 3]
        params = sample_params(args.seed + i, size=args.size, fov=fov, n_fractures=0, slice_mm=SLICES[i % 4])
        case = generate_phantom(params)
        check, secs = run_ct(case.image)
        times.append(secs)
        right = wrong = unnamed = 0
        for truth in case.vertebrae:
            found = containing(check.levels, truth.center_lps[2])
            name = found.name if found else None
            right += name == truth.name
            wrong += name is not None and name != truth.name
            unnamed += name is None
        totals += (right, wrong, unnamed)
        if case.l3 is None:
            thorax_n += 1
            thorax_ok += not check.in_view
            err = "-" if not check.in_view else "in view!"
        else:
            e = abs(check.z_mm - case.l3.center_lps[2]) if check.in_view else float("inf")
            errors.append(e)
            err = f"{e:.1f}"
        grid = "x".join(f"{v:.2f}" for v in params.spacing)
        print(f"{f'{args.seed + i}-{fov}':<24}{grid:>22}{params.orientation:>8}{check.count_anchor:>10}{right:>6}"
              f"{wrong:>6}{unnamed:>8}{err:>10}{check.source:>15}{str(check.review):>7}"
              f"{secs[0]:>7.1f}{secs[1]:>8.1f}{secs[2]:>6.1f}")
    t = np.array(times)
    print(f"\nphantoms: vertebrae named right {totals[0]}, wrong {totals[1]}, unnamed {totals[2]}")
    if errors:
        print(f"phantoms with L3: median L3 error {np.median(errors):.2f} mm, max {np.max(errors):.2f} mm "
              f"(n={len(errors)}; inf = reported not in view)")
    print(f"thorax-only phantoms 'not in view': {thorax_ok} of {thorax_n}")
    print(f"per CT: ribs {t[:, 0].mean():.1f} s, count {t[:, 1].mean():.1f} s, network {t[:, 2].mean():.1f} s")


def lidc_0001(out: Path) -> None:
    from real_data import lidc_path

    from RibFracSegLib.io import read_ct

    image = read_ct(lidc_path("cxr.nii.gz"))
    check, secs = run_ct(image)
    mask = sitk.ReadImage(str(lidc_path("mask.nii.gz")))
    arr = sitk.GetArrayViewFromImage(mask)
    rows = []
    for label, name in sorted(TS_NAMES.items(), key=lambda kv: -kv[0]):
        k, j, i = np.nonzero(arr == label)
        if k.size == 0:
            continue
        # the body: the label's anterior part (arch and spinous process hang lower than the body)
        points = np.array([mask.TransformIndexToPhysicalPoint((int(a), int(b), int(c)))
                           for a, b, c in zip(i[::7], j[::7], k[::7])])
        body = points[points[:, 1] <= np.percentile(points[:, 1], 40)]
        z = float(body[:, 2].mean())
        found = containing(check.levels, z)
        rows.append((name, z, found.name if found else None))
    right = sum(n == f for n, _, f in rows)
    print(f"\nLIDC-IDRI-0001 (2.5 mm): count from {check.count_anchor}; TotalSegmentator vertebrae named right "
          f"{right} of {len(rows)}: " + ", ".join(f"{n}->{f or '?'}" for n, _, f in rows))
    print(f"  L3: {_l3_line(check)}; ribs {secs[0]:.1f} s, count {secs[1]:.1f} s, network {secs[2]:.1f} s")
    _picture(image, check, out / "LIDC-IDRI-0001.spine.png")


def _l3_line(check) -> str:
    where = f"z {check.z_mm:.1f} mm, slice {check.slice_index}" if check.in_view else "not in view"
    return (f"{where} (source {check.source}; count {check.count_z_mm}, network "
            f"{check.network_z_mm} conf {check.network.confidence:.2f}; review {check.review}"
            + (f": {check.review_reason}" if check.review_reason else "") + ")")


def _picture(image, check, path: Path) -> None:
    lines = {"L3 count": (check.count_z_mm, (0, 255, 0))} if check.count_z_mm is not None else {}
    lines["network" + ("" if check.network.in_view else " (not in view)")] = (check.network.z_mm, (255, 140, 0))
    save_spine_png(image, check.levels, path, lines)
    print(f"  picture: {path}")


def real_file(name: str, out: Path) -> None:
    from RibFracSegLib.io import read_ct

    image = read_ct(REAL / f"{name}.nii.gz")
    check, secs = run_ct(image)
    named = [v.name or "?" for v in check.levels.vertebrae]
    print(f"\n{name}: bodies bottom->top {', '.join(named)} (count from {check.count_anchor})"
          + (f"; notes: {'; '.join(check.notes)}" if check.notes else ""))
    print(f"  L3: {_l3_line(check)}; ribs {secs[0]:.1f} s, count {secs[1]:.1f} s, network {secs[2]:.1f} s")
    _picture(image, check, out / f"{name}.spine.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--seed", type=int, default=91000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-out/levels"))
    parser.add_argument("--no-real", action="store_true")
    parser.add_argument("--real-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()} "
          f"({os.cpu_count()} CPUs, {args.threads} threads)")
    if not args.real_only:
        phantoms(args)
    if not args.no_real:
        lidc_0001(args.out)
        real_file("CRLM-CT-1004", args.out)
        real_file("LIDC-IDRI-0314", args.out)


if __name__ == "__main__":
    main()

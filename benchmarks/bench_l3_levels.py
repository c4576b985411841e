"""Vertebral count + L3 check (l3.check.locate_l3_checked: rib heads, vertebral count, MIP network) on
phantoms and the real CTs, with every figure issue 11's "Done means" asks for.

    python benchmarks/bench_l3_levels.py [--n 8] [--size 320] [--seed 91000] [--out bench-out/levels] [--no-real]

Phantoms: held-out seeds (training used 1000+/5000+), realistic grids from phantom.dataset.sample_params
with 1.25-5 mm slices and every storage order, fields of view cycling thorax+abdomen, abdomen+pelvis and
thorax (L3 must be 'not in view'), then the pelvis set: abdomen+pelvis and lumbar+pelvis (from L2 down,
no rib in view: L3 can only come from the sacrum's count) in each storage order. Per phantom: each true
vertebra named right, wrong or left unnamed, the L3 error (superior distance between the checked L3 and
the true body centre), and the sacrum: its top's error (found - true S1 endplate centre, superior mm),
'missed', or 'false!' when it is found but not in view ('-').
Real: LIDC-IDRI-0001 named vs its TotalSegmentator vertebra labels (benchmarks/real_data.py; each
label's body = its anterior 40 % by antero-posterior position, whose mean height must fall inside
the body we name),
3Dircadb1.1-abdomen (T10-L4, 1.6 mm, contrast) named against the lead's reading (READINGS), CRLM-CT-1004
(upper abdomen, 5 mm) L3 with a picture, the chests LIDC-IDRI-0314, -0006, CPTAC-LSCC and Lung-PET-CT-Dx
(5 mm DICOM folder) 'not in view'; a picture each under --out.
MR: a synthetic MR volume must be refused by the reader with a clear error.
Times: seconds per CT of `locate_l3_checked` (the image in memory; the read is printed apart), the
way `ribfracseg l3` runs it, printed with the machine's load (`uptime`): run alone for figures to quote.
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

from RibFracSegLib.l3.check import locate_l3_checked
from RibFracSegLib.defaults import PHANTOM_ORIENTATIONS
from RibFracSegLib.phantom import generate_phantom
from RibFracSegLib.phantom.dataset import sample_params
from RibFracSegLib.spine.picture import save_spine_png

REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "real"
FOVS = ("thorax_abdomen", "abdomen_pelvis", "thorax")
PELVIS_FOVS = ("abdomen_pelvis", "lumbar_pelvis")  # the pelvis set: each in every storage order
SLICES = (2.5, 5.0, 1.25, 3.0)
TS_NAMES = {29: "L3", 30: "L2", 31: "L1", **{32 + i: f"T{12 - i}" for i in range(12)}, 44: "C7", 45: "C6", 46: "C5"}


SECONDS: list[float] = []  # per CT, every CT of the run
# The lead's reading of 3Dircadb1.1 (sagittal and posterior coronal MIP, out/l3/ircad_*.png): discs at
# z 19, 51, 89, 126, 160 and 189 mm; the lowest rib pair's heads on the body 126-160 (T12), whose
# transverse processes are stubs, the long ones below it lumbar; the iliac crests beside the cut body at the
# bottom (L4): superior z (LPS, mm) of each body's centre.
READINGS = {"3Dircadb1.1-abdomen": {"L4": 9.5, "L3": 35.0, "L2": 70.0, "L1": 107.5, "T12": 143.0, "T11": 174.5,
                                    "T10": 197.0}}


def run_ct(image: sitk.Image) -> tuple:
    """(L3Check, seconds of locate_l3_checked)."""
    t0 = time.perf_counter()
    check = locate_l3_checked(image)
    SECONDS.append(time.perf_counter() - t0)
    return check, SECONDS[-1]


def containing(levels, z: float):
    return next((v for v in levels.vertebrae if v.z_bottom_mm < z <= v.z_top_mm), None)


def phantom_cases(args):
    """(label, params): the cycle of fields of view, then the pelvis set in every storage order."""
    for i in range(args.n):
        fov = FOVS[i % 3]
        yield f"{args.seed + i}-{fov}", sample_params(args.seed + i, size=args.size, fov=fov, n_fractures=0,
                                                      slice_mm=SLICES[i % 4])
    if args.no_pelvis_set:
        return
    for k, (orientation, fov) in enumerate((o, f) for o in PHANTOM_ORIENTATIONS for f in PELVIS_FOVS):
        seed = args.seed + 500 + k
        yield f"{seed}-{fov}", sample_params(seed, size=args.size, fov=fov, n_fractures=0, orientation=orientation,
                                             slice_mm=SLICES[(k + 1) % 4])


def sacrum_cell(levels, case) -> tuple[str, float | None]:
    """The sacrum column: top's error in mm (found - truth), 'missed', 'false!' or '-'; and the error."""
    truth = case.sacrum_top_lps
    found = levels.sacrum_top_mm
    if truth is None:
        return ("false!" if found is not None else "-"), None
    if found is None:
        return "missed", None
    return f"{found - truth[2]:+.1f}", found - truth[2]


def phantoms(args) -> None:
    print(f"{'case':<24}{'grid':>22}{'orient':>8}{'anchor':>10}{'right':>6}{'wrong':>6}{'unnamed':>8}"
          f"{'L3 err mm':>10}{'source':>15}{'review':>7}{'sacrum':>8}{'s/CT':>6}")
    errors, thorax_ok, thorax_n, totals = [], 0, 0, np.zeros(3, int)
    pelvis_errors, sacrum_err, sacrum_n, sacrum_missed, sacrum_false = [], [], 0, 0, 0
    below_ribs = []  # lumbar+pelvis: (L3 named from the sacrum's count, L3 error)
    for label, params in phantom_cases(args):
        fov = params.fov
        case = generate_phantom(params)
        check, secs = run_ct(case.image)
        right = wrong = unnamed = 0
        for truth in case.vertebrae:
            found = containing(check.levels, truth.center_lps[2])
            name = found.name if found else None
            right += name == truth.name
            wrong += name is not None and name != truth.name
            unnamed += name is None
        totals += (right, wrong, unnamed)
        cell, s_err = sacrum_cell(check.levels, case)
        sacrum_n += case.sacrum_top_lps is not None
        sacrum_missed += cell == "missed"
        sacrum_false += cell == "false!"
        if s_err is not None:
            sacrum_err.append(abs(s_err))
        if case.l3 is None:
            thorax_n += 1
            thorax_ok += not check.in_view
            err = "-" if not check.in_view else "in view!"
        else:
            e = abs(check.z_mm - case.l3.center_lps[2]) if check.in_view else float("inf")
            errors.append(e)
            if case.sacrum_top_lps is not None:
                pelvis_errors.append(e)
            if fov == "lumbar_pelvis":
                below_ribs.append((check.count_anchor == "sacrum" and "count" in check.source, e))
            err = f"{e:.1f}"
        grid = "x".join(f"{v:.2f}" for v in params.spacing)
        print(f"{label:<24}{grid:>22}{params.orientation:>8}{check.count_anchor:>10}{right:>6}"
              f"{wrong:>6}{unnamed:>8}{err:>10}{check.source:>15}{str(check.review):>7}{cell:>8}{secs:>6.1f}")
    print(f"\nphantoms: vertebrae named right {totals[0]}, wrong {totals[1]}, unnamed {totals[2]}")
    if errors:
        print(f"phantoms with L3: median L3 error {np.median(errors):.2f} mm, max {np.max(errors):.2f} mm "
              f"(n={len(errors)}; inf = reported not in view)")
    if pelvis_errors:
        print(f"phantoms with the sacrum in view: median L3 error {np.median(pelvis_errors):.2f} mm, "
              f"max {np.max(pelvis_errors):.2f} mm (n={len(pelvis_errors)})")
    print(f"sacrum: found on {sacrum_n - sacrum_missed} of {sacrum_n} phantoms with it in view"
          + (f" (|error| median {np.median(sacrum_err):.1f} mm, max {np.max(sacrum_err):.1f} mm)" if sacrum_err else "")
          + f"; found where not in view: {sacrum_false}")
    if below_ribs:
        print(f"lumbar+pelvis (no rib in view): L3 from the sacrum's count on {sum(s for s, _ in below_ribs)} of "
              f"{len(below_ribs)}, median L3 error {np.median([e for _, e in below_ribs]):.2f} mm")
    print(f"thorax-only phantoms 'not in view': {thorax_ok} of {thorax_n}")


def lidc_0001(out: Path) -> None:
    from real_data import lidc_path

    from RibFracSegLib.io import read_ct

    t0 = time.perf_counter()
    image = read_ct(lidc_path("cxr.nii.gz"))
    read_s = time.perf_counter() - t0
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
        rows.append((name, z, found.name if found else None, k.size, np.unique(k).size))
    right = sum(n == f for n, _, f, _, _ in rows)
    print(f"\nLIDC-IDRI-0001 (2.5 mm): count from {check.count_anchor}; TotalSegmentator vertebrae named right "
          f"{right} of {len(rows)}: " + ", ".join(f"{n}->{f or '?'}" for n, _, f, _, _ in rows))
    small = [f"{n} ({v} voxels on {s} slice{'s' if s > 1 else ''}, body part at z {z:.1f} mm)"
             for n, z, _, v, s in rows if v < 1000]
    if small:  # a label the CT's edge cuts to a sliver: say so beside the count
        print(f"  labels cut to a sliver by the CT's edge: {', '.join(small)}; the CT ends at z "
              f"{check.levels.fov_mm[1]:.2f} mm")
    print(f"  L3: {_l3_line(check)}; {secs:.2f} s (read {read_s:.2f} s)")
    if check.notes:
        print(f"  notes: {'; '.join(check.notes)}")
    _picture(image, check, out / "LIDC-IDRI-0001.spine.png")


def _l3_line(check) -> str:
    where = f"z {check.z_mm:.1f} mm, slice {check.slice_index}" if check.in_view else "not in view"
    return (f"{where} (source {check.source}; count {check.count_z_mm}, network "
            f"{check.network_z_mm} conf {check.network.confidence:.2f}; review {check.review}"
            + (f": {check.review_reason}" if check.review_reason else "") + ")")


def _picture(image, check, path: Path, reading: dict | None = None) -> None:
    lines = {"L3 count": (check.count_z_mm, (0, 255, 0))} if check.count_z_mm is not None else {}
    lines["network" + ("" if check.network.in_view else " (not in view)")] = (check.network.z_mm, (255, 140, 0))
    save_spine_png(image, check.levels, path, lines, reading)
    print(f"  picture: {path}")


def real_file(name: str, out: Path) -> None:
    from RibFracSegLib.io import read_ct

    t0 = time.perf_counter()
    image = read_ct(REAL / name if (REAL / name).is_dir() else REAL / f"{name}.nii.gz")
    read_s = time.perf_counter() - t0
    check, secs = run_ct(image)
    named = [v.name or "?" for v in check.levels.vertebrae]
    print(f"\n{name}: bodies bottom->top {', '.join(named)} (count from {check.count_anchor})"
          + (f"; notes: {'; '.join(check.notes)}" if check.notes else ""))
    reading = READINGS.get(name)
    if reading:
        said = {n: getattr(containing(check.levels, z), "name", None) for n, z in reading.items()}
        print(f"  against the reading: {sum(n == f for n, f in said.items())} of {len(said)} named as read, "
              f"{sum(f is not None and n != f for n, f in said.items())} wrong: "
              + ", ".join(f"{n}->{f or '?'}" for n, f in said.items()))
        if check.in_view and "L3" in reading:
            print(f"  L3 {check.z_mm - reading['L3']:+.1f} mm from the read L3 body centre")
    print(f"  L3: {_l3_line(check)}; {secs:.2f} s (read {read_s:.2f} s)")
    _picture(image, check, out / f"{name}.spine.png", reading)


def mr_refused(out: Path) -> None:
    """A T1-like MR volume (no air below -500, intensities 0-2000): the reader must refuse it."""
    from RibFracSegLib.errors import InputError
    from RibFracSegLib.io import read_ct

    mr = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 2000, (40, 64, 64)).astype(np.uint16))
    mr.SetSpacing((1.0, 1.0, 2.0))
    out.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(mr, str(out / "mr-t1.nii.gz"))
    try:
        read_ct(out / "mr-t1.nii.gz")
        print("\nMR volume: NOT refused")
    except InputError as err:
        print(f"\nMR volume: refused: {err}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--seed", type=int, default=91000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-out/levels"))
    parser.add_argument("--no-real", action="store_true")
    parser.add_argument("--real-only", action="store_true")
    parser.add_argument("--no-pelvis-set", action="store_true", help="only the --n cycle (no pelvis set)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from RibFracSegLib.l3.locator import load_locator

    load_locator(None)  # the shipped model loaded once, as `ribfracseg l3` does, before any CT is timed
    print(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()} "
          f"({os.cpu_count()} CPUs, {args.threads} threads)")
    if not args.real_only:
        phantoms(args)
    if not args.no_real:
        lidc_0001(args.out)
        for name in ("3Dircadb1.1-abdomen", "CRLM-CT-1004", "LIDC-IDRI-0314", "LIDC-IDRI-0006",
                     "CPTAC-LSCC-C3N-00247", "Lung-PET-CT-Dx-A0001"):
            real_file(name, args.out)
    mr_refused(args.out)
    t = np.array(SECONDS)
    print(f"\ntime per CT (locate_l3_checked, {len(t)} CTs): median {np.median(t):.2f} s, max {t.max():.2f} s")


if __name__ == "__main__":
    main()

"""Ribs on real CTs: Dice and numbering against TotalSegmentator on LIDC-IDRI-0001, ribs found and
numbered on LIDC-IDRI-0314 and CRLM-CT-1004, seconds and peak memory per CT, QC pictures.

    python benchmarks/bench_ribs.py [--out out/bench_ribs]

Each CT runs in its own process so peak RSS is that CT's alone. TotalSegmentator's labels are model
output, not manual truth (../shared/reference/real-data.md). Run on a quiet machine for the times.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import lidc_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "data" / "real"
TS_LEFT, TS_RIGHT = 92, 104  # TotalSegmentator v2: rib_left_1 = 92 .. rib_right_12 = 115


def one_case(ct: str, out: str) -> None:
    """Child process: segment, write outputs, print one JSON line with time and peak memory."""
    import SimpleITK as sitk

    from RibFracSegLib.io import read_ct, write_image
    from RibFracSegLib.ribs import segment_ribs
    from RibFracSegLib.ribs.picture import write_rib_picture

    image = read_ct(ct)
    t0 = time.perf_counter()
    ribs = segment_ribs(image)
    seconds = time.perf_counter() - t0
    name = Path(ct).name.split(".")[0]
    write_image(ribs.labels, Path(out) / f"{name}-ribs.nii.gz")
    write_rib_picture(image, ribs, Path(out) / f"{name}-ribs.png")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"name": name, "size": image.GetSize(), "seconds": round(seconds, 2), "peak_mb": round(peak_mb),
                      "numbering": ribs.numbering, "notes": ribs.notes, "timings": ribs.timings_s,
                      "found": {s: sum(r.side == s for r in ribs.ribs) for s in "LR"},
                      "numbered": sorted(r.name for r in ribs.ribs if r.number)}))
    del sitk


def dice_against_totalsegmentator(ours_path: Path, ts_path: Path) -> dict:
    import SimpleITK as sitk

    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(ours_path)))
    ts_raw = sitk.GetArrayFromImage(sitk.ReadImage(str(ts_path)))
    truth = np.zeros_like(ours)
    for k in range(12):
        truth[ts_raw == TS_LEFT + k] = k + 1
        truth[ts_raw == TS_RIGHT + k] = 13 + k
    dice = {}
    for value in range(1, 25):
        a, b = ours == value, truth == value
        dice[value] = 2.0 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))
    # numbered as TotalSegmentator: our rib with this number overlaps that TS rib more than any other
    agree = 0
    for value in range(1, 25):
        under = truth[ours == value]
        under = under[under > 0]
        agree += bool(under.size and np.bincount(under).argmax() == value)
    a, b = ours > 0, truth > 0
    binary = 2.0 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))
    return {"dice": dice, "mean": float(np.mean(list(dice.values()))), "numbered_as_ts": agree,
            "binary_dice": binary, "recall": np.count_nonzero(a & b) / max(1, np.count_nonzero(b)),
            "precision": np.count_nonzero(a & b) / max(1, np.count_nonzero(a))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "out" / "bench_ribs"))
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        one_case(args.case, args.out)
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    cases = [lidc_path("cxr.nii.gz"), REAL / "LIDC-IDRI-0314.nii.gz", REAL / "CRLM-CT-1004.nii.gz"]
    names = ["LIDC-IDRI-0001", "LIDC-IDRI-0314", "CRLM-CT-1004"]
    for name, ct in zip(names, cases):
        line = subprocess.run([sys.executable, __file__, "--case", str(ct), "--out", args.out],
                              check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        record = json.loads(line)
        print(f"{name}: {record['size']} {record['seconds']:.1f} s, peak RSS {record['peak_mb']} MB; "
              f"found L {record['found']['L']} R {record['found']['R']}; anchor {record['numbering']}; "
              f"numbered {len(record['numbered'])}: {' '.join(record['numbered'])}")
        for note in record["notes"]:
            print(f"    note: {note}")
        if name == "LIDC-IDRI-0001":
            d = dice_against_totalsegmentator(Path(args.out) / f"{Path(ct).name.split('.')[0]}-ribs.nii.gz",
                                              lidc_path("mask.nii.gz"))
            per_rib = " ".join(f"{'L' if v <= 12 else 'R'}{(v - 1) % 12 + 1}:{x:.2f}" for v, x in d["dice"].items())
            print(f"    Dice vs TotalSegmentator per rib: {per_rib}")
            print(f"    mean Dice {d['mean']:.3f}; numbered as TotalSegmentator {d['numbered_as_ts']}/24; "
                  f"all-rib Dice {d['binary_dice']:.3f} (recall {d['recall']:.3f}, precision {d['precision']:.3f})")
    print(f"pictures: {args.out}/*-ribs.png")


if __name__ == "__main__":
    main()

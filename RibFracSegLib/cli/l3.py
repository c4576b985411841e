"""`ribfracseg l3 CT [CT ...] --out DIR [--height M]`: L3 slice and body composition for each CT.

Writes per CT <name>.l3.json, <name>.l3-slice.png (tissue overlay) and <name>.l3-mips.png (the
MIPs with the L3 line), and one l3.csv over the batch. A CT that fails is reported and skipped;
the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

CSV_FIELDS = ["name", "in_view", "confidence", "slice_index", "z_mm", "r_mm", "a_mm", "s_mm", "muscle_cm2",
              "sat_cm2", "vat_cm2", "imat_cm2", "smi_cm2_per_m2", "height_m", "error"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cts", nargs="+", metavar="CT", help="CT files (NIfTI/NRRD/MHA) or DICOM series folders")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--height", type=float, default=None, help="patient height in metres (for SMI); "
                        "with several CTs, the same height for all - prefer --heights")
    parser.add_argument("--heights", type=Path, default=None,
                        help="CSV with columns name,height_m (name = CT file name without extension)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="L3 checkpoint (default: the shipped one)")
    parser.add_argument("--no-png", action="store_true", help="skip the PNG pictures")


def case_name(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_heights(path: Path | None) -> dict[str, float]:
    if path is None:
        return {}
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"name", "height_m"} <= set(rows[0]):
        raise SystemExit(f"{path}: expected columns name,height_m; found {', '.join(rows[0])}")
    return {r["name"]: float(r["height_m"]) for r in rows if r["height_m"]}


def process(path: Path, out: Path, height: float | None, checkpoint, png: bool) -> dict:
    """One CT -> files written and the CSV row."""
    from RibFracSegLib.io import read_ct, write_text
    from RibFracSegLib.l3 import body_composition, locate_l3, save_mip_png, save_overlay_png

    name = case_name(path)
    image = read_ct(path)
    l3 = locate_l3(image, checkpoint)
    result = {"name": name, "input": str(path), "l3": l3.as_dict(), "body_composition": None}
    row = {"name": name, "in_view": l3.in_view, "confidence": round(l3.confidence, 4),
           "slice_index": l3.slice_index, "z_mm": round(l3.z_mm, 2), "height_m": height,
           **dict(zip(("r_mm", "a_mm", "s_mm"), (round(v, 2) for v in l3.center_ras)))}
    if l3.in_view:
        comp = body_composition(image, l3, height_m=height)
        result["body_composition"] = comp.as_dict()
        row.update({k: v for k, v in comp.as_dict().items() if k in CSV_FIELDS})
        if png:
            save_overlay_png(comp, out / f"{name}.l3-slice.png")
    else:
        result["note"] = "L3 not in view (confidence below the checkpoint's threshold); no body composition"
    if png:
        save_mip_png(l3.projections, l3, out / f"{name}.l3-mips.png")
    write_text(json.dumps(result, indent=2) + "\n", out / f"{name}.l3.json")
    return row


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from RibFracSegLib.io import InputError, write_text

    heights = read_heights(args.heights)
    rows, failed = [], 0
    for path in tqdm([Path(p) for p in args.cts], desc="L3", unit="CT"):
        height = heights.get(case_name(path), args.height)
        try:
            rows.append(process(path, args.out, height, args.checkpoint, not args.no_png))
        except (InputError, ValueError, FileNotFoundError) as err:
            failed += 1
            rows.append({"name": case_name(path), "error": str(err)})
            tqdm.write(f"{path}: {err}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(buf.getvalue(), args.out / "l3.csv")
    print(f"{len(rows) - failed} of {len(rows)} CTs done; results in {args.out}")
    return 1 if failed else 0

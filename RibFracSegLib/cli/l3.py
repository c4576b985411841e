"""`ribfracseg l3 CT [CT ...] --out DIR [--height M]`: L3 slice and body composition for each CT.

L3 comes from the vertebral count (spine.vertebral_levels, named from the ribs or the sacrum) checked
against the MIP network (l3.check); a disagreement of more than half a vertebra is flagged for review
with the reason in the JSON and the CSV. Writes per CT <name>.l3.json, <name>.l3-slice.png (tissue
overlay), <name>.l3-mips.png (the MIPs with the network's line) and <name>.l3-spine.png (the count),
and one l3.csv over the batch. A CT that fails is reported and skipped;
the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from RibFracSegLib.l3.check import CSV_FIELDS as CHECK_FIELDS

CSV_FIELDS = ["name", "in_view", "confidence", "slice_index", "z_mm", "r_mm", "a_mm", "s_mm", *CHECK_FIELDS,
              "muscle_cm2", "sat_cm2", "vat_cm2", "imat_cm2", "smi_cm2_per_m2", "height_m", "error"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cts", nargs="+", metavar="CT",
                        help="CT file, DICOM series folder, folder of CT files, or a .txt list of paths")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--height", type=float, default=None, help="patient height in metres (for SMI); "
                        "with several CTs, the same height for all - prefer --heights")
    parser.add_argument("--heights", type=Path, default=None,
                        help="CSV with columns name,height_m (name = the case id: file name without extension "
                        "and without a -image tag, as `segment` names it)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="L3 checkpoint (default: the shipped one)")
    parser.add_argument("--no-png", action="store_true", help="skip the PNG pictures")
    parser.add_argument("--count", choices=("ribs", "sacrum", "none"), default="ribs",
                        help="vertebral count checking the network: from the rib heads and the sacrum (default), "
                             "the sacrum only (needs the sacrum in view), or none")


def read_heights(path: Path | None) -> dict[str, float]:
    """name -> height in metres from a CSV (name,height_m); every value checked before any CT is read."""
    from RibFracSegLib.io import InputError
    from RibFracSegLib.options import check_height

    if path is None:
        return {}
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"--heights {path}: cannot read it ({err.strerror if isinstance(err, OSError) else err}); "
                         "give a CSV with columns name,height_m.") from None
    if rows and not {"name", "height_m"} <= set(rows[0]):
        raise InputError(f"--heights {path}: expected columns name,height_m; found {', '.join(map(str, rows[0]))}.")
    heights = {}
    for row in rows:
        if (row.get("height_m") or "").strip():
            try:
                heights[row["name"]] = check_height(float(row["height_m"]), f"--heights {path.name}: {row['name']}")
            except ValueError as err:
                raise InputError(str(err) if "metres" in str(err) else f"--heights {path.name}: {row['name']} has "
                                 f"height_m {row['height_m']!r}, not a number in metres.") from None
    return heights


def process(path: Path, out: Path, height: float | None, checkpoint, png: bool, count: str = "ribs") -> dict:
    """One CT -> files written and the CSV row."""
    from RibFracSegLib.cases import case_id
    from RibFracSegLib.io import read_ct_and_warnings, write_text
    from RibFracSegLib.l3 import body_composition, save_mip_png, save_overlay_png
    from RibFracSegLib.l3.check import locate_l3_checked

    name = case_id(path)
    image, warnings = read_ct_and_warnings(path)
    for line in warnings:
        print(f"warning: {name}: {line}")
    l3 = locate_l3_checked(image, checkpoint, count=count)
    network, levels = l3.network, l3.levels
    result = {"name": name, "input": str(path), "l3": l3.as_dict(), "body_composition": None, "warnings": warnings}
    row = {"name": name, "in_view": l3.in_view, "confidence": round(l3.confidence, 4),
           "slice_index": l3.slice_index, "z_mm": round(l3.z_mm, 2), "height_m": height, **l3.row(),
           **dict(zip(("r_mm", "a_mm", "s_mm"), (round(v, 2) for v in l3.center_ras)))}
    if l3.in_view:
        comp = body_composition(image, l3, height_m=height)
        result["body_composition"] = comp.as_dict()
        row.update({k: v for k, v in comp.as_dict().items() if k in CSV_FIELDS})
        if png:
            save_overlay_png(comp, out / f"{name}.l3-slice.png")
    else:
        result["note"] = ("L3 not in view (" + (l3.review_reason or f"count from {l3.count_anchor}" if levels else
                          "network confidence below the checkpoint's threshold") + "); no body composition")
    if png:
        save_mip_png(network.projections, network, out / f"{name}.l3-mips.png")
        if levels is not None:
            from RibFracSegLib.spine.picture import save_spine_png

            lines = {"L3": (l3.z_mm, (0, 255, 0))} if l3.in_view else {}
            lines["network" + ("" if network.in_view else " (not in view)")] = (network.z_mm, (255, 140, 0))
            save_spine_png(image, levels, out / f"{name}.l3-spine.png", lines)
    write_text(json.dumps(result, indent=2) + "\n", out / f"{name}.l3.json")
    return row


def _load_checkpoint(path: Path | None):
    """The L3 checkpoint (default: the shipped one), refused if missing or made for fractures."""
    from RibFracSegLib.checkpoint import load_checkpoint, require_task
    from RibFracSegLib.shipped import shipped_model

    path = Path(path or shipped_model("l3"))
    return require_task(load_checkpoint(path), "l3", path, "ribfracseg l3")


def run(args: argparse.Namespace) -> int:
    from RibFracSegLib.cases import expand_inputs
    from RibFracSegLib.checkpoint import CheckpointError
    from RibFracSegLib.cli import refuse
    from RibFracSegLib.io import InputError
    from RibFracSegLib.options import check_height
    from RibFracSegLib.output_folder import run_in_output_folder

    try:  # every argument checked before any CT is read
        heights = read_heights(args.heights)
        if args.height is not None:
            check_height(args.height, "--height")
        checkpoint = _load_checkpoint(args.checkpoint)
        cases = expand_inputs(args.cts)
    except (InputError, CheckpointError, ValueError) as err:
        return refuse(err)
    return run_in_output_folder(args.out, "ribfracseg l3",
                                lambda out: _run_cases(args, cases, heights, checkpoint, out))


def _run_cases(args: argparse.Namespace, cases: list[Path], heights: dict[str, float], checkpoint, out: Path) -> int:
    from tqdm import tqdm

    from RibFracSegLib.cases import case_id
    from RibFracSegLib.io import InputError, OutputError, write_text
    from RibFracSegLib.progress import case_bar

    rows, failed = [], 0
    for n, path in enumerate(case_bar(cases, desc="L3", unit="CT")):
        height = heights.get(case_id(path), args.height)
        try:
            rows.append(process(path, out, height, checkpoint, not args.no_png, args.count))
        except OutputError as err:  # the next case would fail the same way
            tqdm.write(f"error: {case_id(path)}: {err.strerror or err}. Stopped: {len(cases) - n} of {len(cases)} "
                       "cases not done")
            return 1
        except (InputError, ValueError, FileNotFoundError) as err:
            failed += 1
            rows.append({"name": case_id(path), "error": str(err)})
            tqdm.write(f"error: {case_id(path)} ({path}): {err}")
    if failed == len(rows):
        return 1  # nothing to report: the folder stays as it was
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    try:
        write_text(buf.getvalue(), out / "l3.csv")
    except OutputError as err:
        tqdm.write(f"error: {err}")
        return 1
    print(f"{len(rows) - failed} of {len(rows)} CTs done; results in {out}")
    return 1 if failed else 0

"""`ribfracseg ribs`: segment and number the ribs of CTs (label image, centrelines, QC picture).

Per case the folder gets `<name>-ribs.nii.gz` (0 background, 1-12 left ribs 1-12, 13-24 right ribs
1-12, 25/26 a left/right rib found but not numbered), `<name>-ribs.json` (centrelines from head to
anterior end in LPS and RAS mm, lengths, what was numbered and how) and `<name>-ribs.png`; with
--unfold also `<name>-unfolded.png` and `<name>-qc.png` (RibFracSegLib.ribs.qc).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="CT",
                        help="CT file, DICOM series folder, folder of CT files, or a .txt list of paths")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--force", action="store_true", help="redo cases whose JSON already exists")
    parser.add_argument("--unfold", action="store_true",
                        help="also write <name>-unfolded.png (every rib straightened) and <name>-qc.png (beside the cage)")


def run(args: argparse.Namespace) -> int:
    from RibFracSegLib.cases import case_id, expand_inputs
    from RibFracSegLib.io import InputError, read_ct, write_image, write_text
    from RibFracSegLib.ribs import segment_ribs
    from RibFracSegLib.ribs.picture import write_rib_picture
    from RibFracSegLib.ribs.qc import write_unfolded_qc

    out = Path(args.out)
    failed = 0
    for path in expand_inputs(args.inputs):
        name = case_id(path)
        summary = out / f"{name}-ribs.json"
        if summary.exists() and not args.force:
            print(f"{name}: already done ({summary}), skipped")
            continue
        try:
            t0 = time.perf_counter()
            image = read_ct(path)
            ribs = segment_ribs(image)
            seconds = time.perf_counter() - t0
            write_image(ribs.labels, out / f"{name}-ribs.nii.gz")
            write_rib_picture(image, ribs, out / f"{name}-ribs.png")
            if args.unfold:
                write_unfolded_qc(image, ribs, [], out, name)
            record = {"name": name, "source": str(path), "seconds": round(seconds, 2), **ribs.to_dict()}
            write_text(json.dumps(record, indent=2) + "\n", summary)
        except (InputError, ValueError, RuntimeError, OSError) as err:
            failed += 1
            print(f"error: {name} ({path}): {err}")
            continue
        found = record["ribs_found"]
        print(f"{name}: {found['L']} left and {found['R']} right ribs found, {len(record['numbered'])} numbered "
              f"(anchor: {ribs.numbering}) in {seconds:.1f} s")
        for note in ribs.notes:
            print(f"  note: {note}")
    return 1 if failed else 0

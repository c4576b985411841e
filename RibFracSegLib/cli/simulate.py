"""`ribfracseg simulate-fractures`: build rib fractures into real CTs, written in the RibFrac layout."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cts", nargs="+", metavar="CT", help="real CT files (NIfTI/NRRD/MHA) or DICOM folders")
    p.add_argument("--ribs", nargs="+", required=True, metavar="LABELS|auto",
                   help="rib label map per CT, ours (1-12 left, 13-24 right) or TotalSegmentator's "
                        "(92-115), or `auto` to segment the ribs")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--n", type=int, default=1, help="cases per CT, each with new fractures (default 1)")
    p.add_argument("--fractures", type=int, default=4, help="fractures per case (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed; case i depends on it and i only")
    p.add_argument("--split", default="train", help="split name used in the csv/json file names (default train)")
    p.add_argument("--first-id", type=int, default=1, help="public id of the first case (RibFracN)")


def run(args: argparse.Namespace) -> int:
    from collections import Counter

    from RibFracSegLib.defaults import FRACTURE_CODES
    from RibFracSegLib.io import InputError
    from RibFracSegLib.simulate import write_simulated

    if args.n < 1 or args.fractures < 1:
        raise InputError(f"--n {args.n} --fractures {args.fractures}: both must be at least 1.")

    def report(public_id, case):
        kinds = Counter(FRACTURE_CODES[b.spec.kind] for b in case.fractures)
        ribs = ", ".join(b.spec.rib for b in case.fractures)
        print(f"{public_id}: {len(case.fractures)} fractures {dict(kinds)} on {ribs}"
              + (f" ({'; '.join(case.notes)})" if case.notes else ""))

    try:
        out = write_simulated(args.cts, args.ribs, args.out, args.n, args.fractures, args.seed, args.split,
                              args.first_id, report)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.n * len(args.cts)} cases to {out}")
    return 0

"""`ribfracseg evaluate --pred DIR --gt DIR`: the RibFrac challenge's figures for a prediction folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="folder with RibFracN.nii.gz predictions and their csv")
    parser.add_argument("--gt", required=True, help="folder with RibFracN-label.nii.gz and the info csv")
    parser.add_argument("--json", help="also write the full report (curve, per-case counts) as JSON here")
    parser.add_argument("--plot", help="write the FROC curve as a PNG here")
    parser.add_argument("--sort-kind", default="quicksort", choices=("quicksort", "stable"),
                        help="tie order of equal-FP points: 'quicksort' is what the official (pandas) code "
                             "does on this machine; 'stable' is portable")


def run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_dirs, write_report_json
    from ..io import InputError

    try:
        report = evaluate_dirs(args.pred, args.gt, sort_kind=args.sort_kind)
    except (InputError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    if args.json:
        print(f"report: {write_report_json(report, args.json)}")
    if args.plot:
        try:
            from ..evaluation.plot import save_froc_png

            print(f"FROC plot: {save_froc_png(report, Path(args.plot))}")
        except ImportError as err:
            print(f"warning: {err}", file=sys.stderr)
    return 0

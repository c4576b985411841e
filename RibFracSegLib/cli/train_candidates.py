"""`ribfracseg train-candidates`: train the second stage (fracture or not, and its type) on a harvested
corpus and write a fracture checkpoint that carries it, with its operating point from validation.

The corpus (`python -m RibFracSegLib.candidates.corpus --out DIR`) holds DIR/train/*.json and
DIR/val/*.json: each case's detections by the segmentation network, marked true or false, and its
true fractures with their types.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True, help="harvested corpus folder (train/ and val/ inside)")
    parser.add_argument("--out", required=True, help="checkpoint to write (the base checkpoint + the classifier)")
    parser.add_argument("--checkpoint", default=None,
                        help="base fracture checkpoint (default: the shipped sliding-window one, ribfrac_ct.pt)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jitter", action="store_true",
                        help="continuous (sub-voxel) crop shifts in training instead of whole voxels")
    parser.add_argument("--consistency", type=float, default=0.0,
                        help="weight of a two-view term: each crop seen twice up to 1.5 mm apart, their fracture "
                             "probabilities pulled together (0: off; implies --jitter)")
    parser.add_argument("--init", default=None,
                        help="fracture checkpoint whose classifier to start from (same width): fine-tuning")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="validation recall the operating point may give up (default 0.05: one or two "
                             "fractures of a small validation set)")


def validation_scans(harvest_dir: Path, model, voxels: int, spacing_mm: float) -> list:
    """(fracture probability, truth id, number of fractures) per validation scan the network ran on."""
    import numpy as np

    from ..candidates.crops import extract_crops
    from ..candidates.harvest import Harvest
    from ..candidates.training import predict
    from ..io import read_ct

    scans = []
    for path in sorted(harvest_dir.glob("*.json")):
        h = Harvest.from_dict(json.loads(path.read_text()))
        if h.network_run is None:
            raise SystemExit(f"{path} does not say whether the network ran on it (harvested before that was "
                             "recorded); run the corpus command that made it again: it fills that in")
        if not h.network_run:
            continue  # truth-only: no detections to score (a CT the network ran on and missed counts)
        crops = extract_crops(read_ct(h.image), [c.center_lps for c in h.candidates], voxels, spacing_mm)
        prob = 1 - predict(model, crops, voxels)[:, 0]
        scans.append((prob, np.array([c.truth for c in h.candidates], int), len(h.truths)))
    return scans


def check_arguments(args: argparse.Namespace):
    """Options, the corpus and both checkpoints checked before any crop is built or step trained:
    (base checkpoint, classifier weights to start from or None)."""
    from ..checkpoint import load_checkpoint, require_task
    from ..errors import InputError
    from ..shipped import shipped_model

    for name in ("steps", "batch", "width"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name} {getattr(args, name)}: must be at least 1.")
    if not args.lr > 0 or args.consistency < 0 or args.threads < 0:
        raise InputError(f"--lr {args.lr}, --consistency {args.consistency}, --threads {args.threads}: the learning "
                         "rate must be positive, the others 0 or more.")
    if not 0 <= args.tolerance < 1:
        raise InputError(f"--tolerance {args.tolerance}: give the validation recall to give up, from 0 to below 1.")
    corpus = Path(args.corpus)
    for split in ("train", "val"):
        if not any((corpus / split).glob("*.json")):
            raise InputError(f"--corpus {corpus}: {corpus / split} holds no harvested cases; build the corpus "
                             f"first: python -m RibFracSegLib.candidates.corpus --out {corpus}")
    path = args.checkpoint or shipped_model("fracture_ct")  # the classifier re-scores the sliding window's candidates
    base = require_task(load_checkpoint(path), "fractures", path, "ribfracseg train-candidates")
    if not args.init:
        return base, None
    section = require_task(load_checkpoint(args.init), "fractures", args.init, "ribfracseg train-candidates",
                           "--init").candidate_classifier
    if not section or section.get("hparams", {}).get("width") != args.width:
        raise InputError(f"--init {args.init} carries no classifier of width {args.width} to start from.")
    return base, section["state_dict"]


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .. import defaults
    from ..candidates.dataset import cached_crops
    from ..candidates.operating import choose_floor, curve
    from ..candidates.training import ARCH, CandidateTrainConfig, train
    from ..checkpoint import save_checkpoint

    base, init = check_arguments(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    sets = {}
    for split in ("train", "val"):
        sets[split] = cached_crops(corpus / split, corpus / f"crops-{split}.npz", seed={"train": 0, "val": 1}[split])
        counts = np.bincount(sets[split].labels, minlength=defaults.CANDIDATE_CLASSES)
        print(f"{split}: {len(counts)} classes, crops per class {counts.tolist()}, "
              f"{int(sets[split].real.sum())} from real CTs", flush=True)
    config = CandidateTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, width=args.width, seed=args.seed,
                         jitter=args.jitter or args.consistency > 0, consistency=args.consistency)
    model, hparams = train(sets["train"], config, log=lambda m: print(m, flush=True), val=sets["val"], init=init)
    points = curve(validation_scans(corpus / "val", model, config.voxels, defaults.CANDIDATE_CROP_MM))
    chosen = choose_floor(points, args.tolerance)
    for p in points[::5]:
        print(f"  floor {p.floor:.2f}: validation recall {p.recall:.3f}, {p.fp_per_scan:.2f} FP/scan")
    print(f"operating point: floor {chosen.floor:.2f} (validation recall {chosen.recall:.3f}, "
          f"{chosen.fp_per_scan:.2f} FP/scan)")
    base.candidate_classifier = {
        "arch": ARCH, "hparams": hparams,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "crop_voxels": config.voxels, "crop_mm": defaults.CANDIDATE_CROP_MM,
        "min_probability": chosen.floor, "min_type_probability": defaults.CANDIDATE_MIN_TYPE_PROBABILITY,
        "provenance": {"corpus": corpus.name, "steps": args.steps, "batch": args.batch, "lr": args.lr,
                       "seed": args.seed, "init": Path(args.init).name if args.init else None,
                       "jitter": config.jitter, "consistency": config.consistency,
                       "validation_recall": chosen.recall,
                       "validation_fp_per_scan": chosen.fp_per_scan,
                       "train_cases": sorted(set(sets["train"].cases.tolist())),
                       "val_cases": sorted(set(sets["val"].cases.tolist()))}}
    print(save_checkpoint(args.out, base))
    return 0

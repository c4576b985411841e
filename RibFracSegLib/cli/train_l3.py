"""`ribfracseg train-l3`: train (or evaluate) the L3 locator on phantoms and/or public L3 MIP npz files.

Phantom MIPs are cached as npz (the public format) under --cache, so a restart does not regenerate
them; training resumes from --state. The report gives the error in mm per view (frontal, sagittal,
combined): mean, median, std, share within 5 and 10 mm, and the "not in view" verdicts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--npz", nargs="*", type=Path, default=[],
                        help="L3 MIP data sets (npz with images_f, images_s, ydata, names, spacings)")
    parser.add_argument("--phantoms", type=int, default=0, help="number of training phantoms to generate")
    parser.add_argument("--val-phantoms", type=int, default=0, help="number of validation phantoms")
    parser.add_argument("--seed", type=int, default=1000, help="first training phantom seed")
    parser.add_argument("--val-seed", type=int, default=5000, help="first validation phantom seed")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of --npz images held out")
    parser.add_argument("--cache", type=Path, default=Path(".cache/l3"), help="folder for phantom MIP caches")
    parser.add_argument("--out", type=Path, default=Path("runs/l3/l3.pt"), help="checkpoint to write")
    parser.add_argument("--state", type=Path, default=None, help="resumable training state (default: OUT.state)")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--val-every", type=int, default=None, help="validate every this many iterations")
    parser.add_argument("--variation", action="store_true", help="phantoms with patient variation (spine "
                        "proportions, lordosis, scoliosis, arms, table, oral contrast, short abdominal scans)")
    parser.add_argument("--val-variation", action="store_true", help="the same for the validation phantoms")
    parser.add_argument("--val-ct", nargs="*", default=[], metavar="CT[=Z_MM]",
                        help="real CTs reported at every validation (never trained on, never used to choose the "
                        "checkpoint or its threshold): the L3 centre's superior (LPS z) coordinate in mm, or no "
                        "'=Z_MM' for a CT that does not reach L3")
    parser.add_argument("--init", type=Path, default=None, help="fine-tune from this L3 checkpoint")
    parser.add_argument("--p-short", type=float, default=None, help="chance of a short field of view per crop")
    parser.add_argument("--p-gain", type=float, default=None, help="chance of a smooth gain field per crop")
    parser.add_argument("--p-blobs", type=float, default=None, help="chance of bright blobs (contrast) per crop")
    parser.add_argument("--evaluate", type=Path, default=None, metavar="CKPT",
                        help="only evaluate this checkpoint on the validation data")
    parser.add_argument("--calibrate", action="store_true", help="with --evaluate: set the checkpoint's "
                        "'in view' threshold to the one that best separates the validation CTs, and re-save it")


def _load_npz(path: Path) -> list:
    """The samples of one --npz file; a missing or unreadable one is an InputError naming it."""
    import pickle
    import zipfile

    from RibFracSegLib.errors import InputError
    from RibFracSegLib.l3.dataset import load_npz

    if not path.is_file():
        raise InputError(f"--npz {path}: file not found. Give an L3 MIP data set (.npz).")
    try:
        return load_npz(path)
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise InputError(f"--npz {path}: not a readable L3 MIP data set ({err}).") from None


def parse_val_ct(specs: list[str]) -> list[tuple[Path, float | None]]:
    """--val-ct PATH or PATH=Z_MM, checked before any work: the file exists, Z_MM is a number."""
    from RibFracSegLib.errors import InputError

    parsed = []
    for spec in specs:
        path, sign, z = spec.partition("=")
        if not Path(path).exists():
            raise InputError(f"--val-ct {spec}: CT {path} not found.")
        try:
            parsed.append((Path(path), float(z) if z or sign else None))
        except ValueError:
            raise InputError(f"--val-ct {spec}: {z!r} is not a z coordinate in mm; give PATH=Z_MM (e.g. "
                             f"{path}=-412.5) or PATH alone for a CT without L3.") from None
    return parsed


def check_arguments(args) -> None:
    """Every option and file checked before data is read or phantoms generated (InputError/CheckpointError)."""
    from RibFracSegLib.checkpoint import load_checkpoint, require_task
    from RibFracSegLib.errors import InputError

    positive = {"--phantoms": args.phantoms, "--val-phantoms": args.val_phantoms}
    positive |= {f"--{k.replace('_', '-')}": getattr(args, k) for k in ("iterations", "batch_size", "val_every",
                                                                          "threads") if getattr(args, k) is not None}
    for name, value in positive.items():
        if value < (0 if "phantoms" in name else 1):
            raise InputError(f"{name} {value}: must be at least {0 if 'phantoms' in name else 1}.")
    chances = {"--val-fraction": args.val_fraction, "--p-short": args.p_short, "--p-gain": args.p_gain,
               "--p-blobs": args.p_blobs}
    for name, value in chances.items():
        if value is not None and not 0.0 <= value <= 1.0:
            raise InputError(f"{name} {value}: give a fraction between 0 and 1.")
    if args.lr is not None and not args.lr > 0:
        raise InputError(f"--lr {args.lr}: the learning rate must be positive.")
    for option, path in (("--init", args.init), ("--evaluate", args.evaluate)):
        if path is not None:
            require_task(load_checkpoint(path), "l3", path, "ribfracseg train-l3", option)
    if args.calibrate and not args.evaluate:
        raise InputError("--calibrate needs --evaluate CKPT (the checkpoint whose threshold to set).")


def _load_data(args):
    import numpy as np

    from RibFracSegLib.l3.dataset import cached_phantom_samples

    train, val = [], []
    for path in args.npz:
        samples = _load_npz(path)
        order = np.random.default_rng(0).permutation(len(samples))
        n_val = int(round(args.val_fraction * len(samples)))
        val += [samples[i] for i in order[:n_val]]
        train += [samples[i] for i in order[n_val:]]
    for n, first, var, into in ((args.phantoms, args.seed, args.variation, train),
                                (args.val_phantoms, args.val_seed, args.val_variation, val)):
        if n:
            seeds = list(range(first, first + n))
            name = f"phantoms-{seeds[0]}-{seeds[-1]}" + ("-var" if var else "")
            into += cached_phantom_samples(args.cache / f"{name}.npz", seeds, variation=var)
    return train, val


def real_samples(specs: list[str]):
    """MipSamples of real CTs given as PATH or PATH=Z_MM (the L3 centre's LPS z; none: L3 not in view)."""
    from RibFracSegLib.io import read_ct
    from RibFracSegLib.l3.dataset import sample_from_ct

    samples = []
    for path, z in parse_val_ct(specs):
        image = read_ct(path)
        centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
        point = None if z is None else (centre[0], centre[1], z)
        samples.append(sample_from_ct(path.name.split(".")[0], image, point))
    return samples


def _evaluate(path: Path, val, calibrate: bool, real=()) -> None:
    """Print the per-view report of a checkpoint (with its own threshold, or a calibrated one saved into it)."""
    from dataclasses import replace

    from RibFracSegLib import defaults
    from RibFracSegLib.checkpoint import save_checkpoint
    from RibFracSegLib.l3.evaluation import calibrate_threshold, format_report, predict_cases, summarise
    from RibFracSegLib.l3.locator import load_locator

    ckpt, model = load_locator(path)
    cases = predict_cases(model, val)
    threshold = float(ckpt.thresholds.get("min_confidence", defaults.L3_MIN_CONFIDENCE))
    if calibrate:
        threshold = calibrate_threshold(cases)
        save_checkpoint(path, replace(ckpt, thresholds={**ckpt.thresholds, "min_confidence": threshold},
                                      provenance={**ckpt.provenance, "threshold_calibrated_on": len(val)}))
    report = summarise(cases, threshold)
    print(format_report(report))
    if real:
        from RibFracSegLib.l3.training import format_real

        real_cases = predict_cases(model, real)
        print(format_real(real_cases) + f"\n(threshold {threshold:.3f}: in view = confidence >= threshold)")
    print(json.dumps({k: v for k, v in report.items() if k != "cases"}, indent=2))


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from RibFracSegLib.errors import InputError
    from RibFracSegLib.l3.training import L3TrainConfig, train_l3

    check_arguments(args)
    parse_val_ct(args.val_ct)
    if not args.evaluate and not args.npz and not args.phantoms:
        raise InputError("no training data: give --npz FILE and/or --phantoms N")
    train, val = _load_data(args)
    real = real_samples(args.val_ct)
    if args.evaluate:
        _evaluate(args.evaluate, val, args.calibrate, real)
        return 0
    if not train:
        raise InputError("no training data: the --npz files hold no training images (all held out by --val-fraction)")
    given = {"iterations": args.iterations, "batch_size": args.batch_size, "lr": args.lr, "threads": args.threads,
             "val_every": args.val_every, "p_short": args.p_short, "p_gain": args.p_gain, "p_blobs": args.p_blobs,
             "init": str(args.init) if args.init else None}
    overrides = {k: v for k, v in given.items() if v is not None}
    cfg = replace(L3TrainConfig(), **overrides)
    provenance = {"data": {"npz": [str(p) for p in args.npz], "phantoms": args.phantoms, "seed": args.seed,
                           "variation": args.variation, "val_phantoms": args.val_phantoms, "val_seed": args.val_seed,
                           "val_variation": args.val_variation, "real_reported": list(args.val_ct)},
                  "n_train": len(train), "n_val": len(val)}
    print(f"training on {len(train)} CTs, validating on {len(val)}", flush=True)
    state = args.state or args.out.with_suffix(".state")
    train_l3(train, val, cfg, args.out, state, provenance, log=lambda m: print(m, flush=True), real=real)
    if val:
        _evaluate(args.out, val, calibrate=False, real=real)
    return 0

"""Training loop of the L3 locator: random MIP crops, band-weighted BCE, resumable, best-on-validation.

Resumable because it runs for an hour on shared CPU cores: every `save_every` iterations the model,
optimiser and iteration go to a state file; a restart with the same state file continues. The
checkpoint written is the one with the lowest combined validation median error (ties: fewer wrong
"in view" verdicts), self-describing via RibFracSegLib.checkpoint. Real CTs given as `real` are
predicted and reported at every validation but take no part in choosing the checkpoint or its
threshold: they are too few, and they are the benchmark's CTs.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from RibFracSegLib import defaults
from RibFracSegLib.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint
from RibFracSegLib.io import atomic_path
from RibFracSegLib.l3.augment import band_weight, random_batch
from RibFracSegLib.l3.dataset import MipSample
from RibFracSegLib.l3.evaluation import calibrate_threshold, format_report, predict_cases, summarise
from RibFracSegLib.networks import build_network

ARCH = "l3_unet2d"


@dataclass
class L3TrainConfig:
    """How `ribfracseg train-l3` trains the L3 locator (`training.trainer.TrainConfig` is the fracture
    network's)."""

    iterations: int = 1500
    batch_size: int = 8
    crop_rows: int = 320
    crop_cols: int = 192
    lr: float = 2e-3
    sigma_start_mm: float = 8.0  # target line width annealed to defaults.L3_TARGET_SIGMA_MM
    base: int = defaults.L3_UNET_BASE
    depth: int = defaults.L3_UNET_DEPTH
    val_every: int = 250
    save_every: int = 50
    seed: int = 0
    threads: int = 2
    p_short: float = 0.0  # chance of a short field of view per crop (augment.short_field_of_view)
    p_gain: float = 0.0  # chance of a smooth gain field per crop
    p_blobs: float = 0.0  # chance of bright blobs (contrast, calcifications) per crop
    init: str | None = None  # checkpoint to fine-tune from (same architecture), else from scratch


def preprocessing() -> dict:
    """What locate_l3 must do to a CT before this network sees it (stored in the checkpoint)."""
    return {"mip_hu_range": list(defaults.L3_MIP_HU_RANGE), "mip_spacing_mm": defaults.L3_MIP_SPACING_MM,
            "sagittal_slab_mm": defaults.L3_SAGITTAL_SLAB_MM, "border_mm": defaults.L3_MIP_BORDER_MM,
            "input_cols": defaults.L3_INPUT_COLS, "band": defaults.L3_TARGET_BAND, "normalisation": "hu_range_to_0_1"}


def _lr(cfg: L3TrainConfig, it: int) -> float:
    """Linear warm-up over 5 %, then cosine to 2 % of the peak; a function of the iteration only, so
    a resumed run (even with more iterations) continues smoothly."""
    warm = max(1, int(0.05 * cfg.iterations))
    if it < warm:
        return cfg.lr * (it + 1) / warm
    t = min(1.0, (it - warm) / max(1, cfg.iterations - warm))
    return float(cfg.lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * t))))


def _sigma(cfg: L3TrainConfig, it: int) -> float:
    frac = min(1.0, it / max(1, 0.6 * cfg.iterations))
    return cfg.sigma_start_mm + frac * (defaults.L3_TARGET_SIGMA_MM - cfg.sigma_start_mm)


def train_l3(train: list[MipSample], val: list[MipSample], cfg: L3TrainConfig, out: str | os.PathLike,
             state_path: str | os.PathLike, provenance: dict | None = None,
             log: Callable[[str], None] = print, real: list[MipSample] | None = None) -> Path:
    """Train (or resume) and write the best checkpoint to `out`; returns `out`."""
    torch.set_num_threads(cfg.threads)
    hparams = {"base": cfg.base, "depth": cfg.depth}
    model = build_network(ARCH, **hparams)
    if cfg.init:
        init = load_checkpoint(cfg.init)
        if init.arch != ARCH:
            raise ValueError(f"--init {cfg.init} is a {init.arch} checkpoint; fine-tuning needs {ARCH}.")
        hparams = dict(init.hparams)
        model = build_model(init)
        log(f"fine-tuning from {cfg.init} (iteration {init.provenance.get('iteration')})")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    start, best = 0, (float("inf"), float("inf"))
    state_path = Path(state_path)
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, best = int(state["iteration"]), tuple(state["best"])
        log(f"resumed at iteration {start} (best so far {best})")
    weight = torch.from_numpy(band_weight(cfg.crop_rows, cfg.crop_cols))[None, None]
    t0, losses = time.time(), []
    for it in range(start, cfg.iterations):
        rng = np.random.default_rng([cfg.seed, it])
        x, y = random_batch(train, rng, cfg.batch_size, cfg.crop_rows, cfg.crop_cols, _sigma(cfg, it),
                            p_short=cfg.p_short, p_gain=cfg.p_gain, p_blobs=cfg.p_blobs)
        model.train()
        logits = model(torch.from_numpy(x))
        loss = (F.binary_cross_entropy_with_logits(logits, torch.from_numpy(y), reduction="none") * weight).sum() \
            / (weight.sum() * len(x))
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, it)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        done = it + 1
        if done % 25 == 0:
            log(f"it {done}/{cfg.iterations} loss {np.mean(losses[-25:]):.4f} lr {_lr(cfg, it):.2e} "
                f"{(time.time() - t0) / (done - start):.2f} s/it")
        if done % cfg.val_every == 0 or done == cfg.iterations:
            best = _validate(model, val, best, hparams, cfg, out, provenance, done, log)
            if real:
                log(format_real(predict_cases(model, real)))
        if done % cfg.save_every == 0 or done == cfg.iterations:
            with atomic_path(state_path) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "iteration": done, "best": [float(b) for b in best]}, tmp)
    return Path(out)


def _validate(model, val, best, hparams, cfg, out, provenance, done, log):
    model.eval()
    cases = predict_cases(model, val)
    threshold = calibrate_threshold(cases)
    report = summarise(cases, threshold)
    log(f"validation at {done}:\n{format_report(report)}")
    score = (report["views"]["combined"]["median"], report["missed"] + report["false_in_view"])
    if not val or score < best or not Path(out).exists():
        best = score
        ckpt = Checkpoint.from_model(ARCH, model, hparams, preprocessing=preprocessing(),
                                     patch_size=(cfg.crop_rows, cfg.crop_cols),
                                     thresholds={"min_confidence": threshold},
                                     provenance={**(provenance or {}), "iteration": done, "config": asdict(cfg),
                                                 "validation": {k: v for k, v in report.items() if k != "cases"}})
        save_checkpoint(out, ckpt)
        log(f"saved {out} (combined median {score[0]:.2f} mm, wrong verdicts {score[1]})")
    return best


def format_real(cases: list[dict]) -> str:
    """One line per real CT: combined row, error (or 'no L3' truth) and confidence."""
    lines = []
    for c in cases:
        truth = "no L3" if c["truth_mm"] is None else f"error {c['combined_mm'] - c['truth_mm']:+.1f} mm"
        lines.append(f"real {c['name']}: row {c['combined_mm']:.1f} mm, {truth}, confidence {c['confidence']:.2f}")
    return "\n".join(lines)

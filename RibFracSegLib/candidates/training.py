"""Training of the candidate classifier on stored crops (`dataset.CropSet`).

Batches are drawn class-balanced (each of the five classes equally often; crops from real CTs
twice as often as phantom crops of their class, as real anatomy is scarce) and augmented on the
device: a random shift (the stored crop is larger), a left-right mirror (the chest is symmetric),
intensity gain/offset and noise. With `jitter` the shift is continuous (trilinear), not whole
voxels: a detection's centroid lands anywhere between grid points, and a classifier that only saw
whole-voxel shifts moved its probability by up to 0.05 for 0.1 mm (issue 10). With `consistency`
each crop is seen twice, shifted apart by up to `CONSISTENCY_MM`, and the two fracture
probabilities are pulled together. The operating point is not chosen here but on validation
candidates (`operating.py`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .. import defaults
from ..networks import build_network
from ..preprocess import normalise
from .crops import centre_cut
from .dataset import CropSet

ARCH = "candidate_cnn3d"
REAL_BOOST = 2.0
CONSISTENCY_MM = 1.5  # the second view's centre is this far from the first at most (per axis)


@dataclass
class CandidateTrainConfig:
    """How `ribfracseg train-candidates` trains the second stage (`training.trainer.TrainConfig` is the
    segmentation network's)."""

    steps: int = 1500
    batch: int = 32
    lr: float = 2e-3
    width: int = 12
    seed: int = 0
    voxels: int = defaults.CANDIDATE_CROP_VOXELS
    jitter: bool = False  # continuous (sub-voxel) shifts instead of whole-voxel ones
    consistency: float = 0.0  # weight of the two-view term (0: off); the batch then holds batch/2 crops twice


def sample_weights(labels: np.ndarray, real: np.ndarray) -> np.ndarray:
    w = np.zeros(len(labels))
    for c in np.unique(labels):
        members = labels == c
        boost = np.where(real[members], REAL_BOOST, 1.0)
        w[members] = boost / boost.sum()
    return w / w.sum()


def shifted_cut(hu: torch.Tensor, starts: torch.Tensor, voxels: int) -> torch.Tensor:
    """(B, V, V, V) -> (B, voxels^3): the cube whose first voxel is at `starts` (B, 3) (k, j, i), in
    voxels of the stored crop, trilinear between voxels (whole-voxel starts give the stored values)."""
    b, v = hu.shape[0], hu.shape[-1]
    steps = torch.arange(voxels, dtype=torch.float32, device=hu.device)
    # grid_sample wants (x, y, z) = (i, j, k) in [-1, 1] with align_corners=True: -1 is voxel 0, 1 voxel V-1
    pos = [(starts[:, a].to(hu.device, torch.float32)[:, None] + steps[None]) * (2 / (v - 1)) - 1 for a in range(3)]
    k = pos[0][:, :, None, None].expand(b, voxels, voxels, voxels)
    j = pos[1][:, None, :, None].expand(b, voxels, voxels, voxels)
    i = pos[2][:, None, None, :].expand(b, voxels, voxels, voxels)
    grid = torch.stack([i, j, k], dim=-1)
    return F.grid_sample(hu[:, None], grid, mode="bilinear", align_corners=True).squeeze(1)


def augment(hu: torch.Tensor, voxels: int, generator: torch.Generator, jitter: bool = False,
            starts: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, V, V, V) HU -> (B, 1, voxels^3) normalised, shifted, mirrored, with gain/offset/noise.
    `starts` (B, 3) fixes the shift (voxels of the stored crop); else it is drawn, whole voxels or
    (`jitter`) continuous."""
    b, v = hu.shape[0], hu.shape[-1]
    if starts is None:
        starts = (torch.rand(b, 3, generator=generator) * (v - voxels)) if jitter \
            else torch.randint(0, v - voxels + 1, (b, 3), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5
    if jitter or starts.is_floating_point():
        out = shifted_cut(hu.float(), starts, voxels)
        out = torch.where(flips.to(out.device)[:, None, None, None], out.flip(-1), out)
    else:
        out = torch.empty((b, voxels, voxels, voxels), dtype=torch.float32, device=hu.device)
        for n in range(b):
            k, j, i = starts[n].tolist()
            crop = hu[n, k:k + voxels, j:j + voxels, i:i + voxels]
            out[n] = crop.flip(-1) if flips[n] else crop
    gain = 1 + 0.05 * torch.randn(b, 1, 1, 1, generator=generator)
    offset = 20 * torch.randn(b, 1, 1, 1, generator=generator)
    sigma = 20 * torch.rand(b, 1, 1, 1, generator=generator)
    out = out * gain.to(out) + offset.to(out) + sigma.to(out) * torch.randn(out.shape, generator=generator).to(out)
    return normalise(out, defaults.HU_WINDOW).unsqueeze(1)


def predict(model: torch.nn.Module, crops_hu: np.ndarray, voxels: int, batch: int = defaults.CANDIDATE_BATCH,
            device: str | torch.device = "cpu") -> np.ndarray:
    """(N, 5) softmax probabilities for crops in HU (any stored size: the centre is cut)."""
    model.eval()
    crops_hu = centre_cut(crops_hu, voxels)
    out = []
    with torch.no_grad():
        for first in range(0, len(crops_hu), batch):
            x = torch.from_numpy(normalise(crops_hu[first:first + batch], defaults.HU_WINDOW))
            out.append(torch.softmax(model(x.unsqueeze(1).to(device)), dim=1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, defaults.CANDIDATE_CLASSES), np.float32)


def train(data: CropSet, config: CandidateTrainConfig, log: Callable[[str], None] = print,
          val: Optional[CropSet] = None, device: str = "cpu",
          init: Optional[dict] = None) -> tuple[torch.nn.Module, dict]:
    """Train from scratch, or on from the weights `init` (a classifier's state dict: fine-tuning costs a
    fraction of the steps); returns the model and its hyper-parameters."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    hparams = {"width": config.width}
    model = build_network(ARCH, **hparams)
    if init is not None:
        model.load_state_dict(init)
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.15)
    p = sample_weights(data.labels, data.real)
    crops = torch.from_numpy(data.crops)
    labels = torch.from_numpy(data.labels)
    t0, running = time.perf_counter(), []
    for step in range(1, config.steps + 1):
        model.train()
        if config.consistency > 0:
            loss = two_view_loss(model, crops, labels, p, rng, generator, config, device)
        else:
            idx = torch.from_numpy(rng.choice(len(p), size=config.batch, p=p))
            x = augment(crops[idx].float(), config.voxels, generator, config.jitter).to(device)
            loss = F.cross_entropy(model(x), labels[idx].to(device), label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running.append(float(loss.detach()))
        if step % 100 == 0 or step == config.steps:
            msg = f"step {step}/{config.steps} loss {np.mean(running):.3f} ({time.perf_counter() - t0:.0f} s)"
            if val is not None:
                probs = predict(model, val.crops, config.voxels, device=device)
                msg += " | val " + summary(probs, val.labels)
            log(msg)
            running = []
    model.eval()
    return model, hparams


def two_view_loss(model: torch.nn.Module, crops: torch.Tensor, labels: torch.Tensor, p: np.ndarray,
                  rng: np.random.Generator, generator: torch.Generator, config: CandidateTrainConfig,
                  device) -> torch.Tensor:
    """Cross-entropy on batch/2 crops seen twice (the second view's centre up to CONSISTENCY_MM away)
    + `consistency` x the squared difference of the two fracture probabilities."""
    half = max(config.batch // 2, 1)
    idx = torch.from_numpy(rng.choice(len(p), size=half, p=p))
    hu = crops[idx].float()
    v = hu.shape[-1]
    room = float(v - config.voxels)
    first = torch.rand(half, 3, generator=generator) * room
    reach = CONSISTENCY_MM / defaults.CANDIDATE_CROP_MM
    second = (first + (torch.rand(half, 3, generator=generator) * 2 - 1) * reach).clamp(0, room)
    x = torch.cat([augment(hu, config.voxels, generator, True, first),
                   augment(hu, config.voxels, generator, True, second)]).to(device)
    y = labels[idx].to(device)
    logits = model(x)
    loss = F.cross_entropy(logits, torch.cat([y, y]), label_smoothing=0.05)
    fracture = 1 - torch.softmax(logits, dim=1)[:, 0]
    return loss + config.consistency * ((fracture[:half] - fracture[half:]) ** 2).mean()


def summary(probs: np.ndarray, labels: np.ndarray) -> str:
    """Fracture-vs-not AUC-like separation and type accuracy on true fractures, for the log."""
    fracture = 1 - probs[:, 0]
    pos, neg = fracture[labels > 0], fracture[labels == 0]
    auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()) \
        if len(pos) and len(neg) else math.nan
    typed = labels > 0
    acc = float((probs[typed, 1:].argmax(1) + 1 == labels[typed]).mean()) if typed.any() else math.nan
    return f"AUC {auc:.3f}, type accuracy {acc:.3f} (n+ {int(typed.sum())}, n- {int((~typed).sum())})"

"""Training of the candidate classifier on stored crops (`dataset.CropSet`).

Batches are drawn class-balanced (each of the five classes equally often; crops from real CTs
twice as often as phantom crops of their class, as real anatomy is scarce) and augmented on the
device: a random shift (the stored crop is larger), a left-right mirror (the chest is symmetric),
intensity gain/offset and noise. The operating point is not chosen here but on validation
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


@dataclass
class TrainConfig:
    steps: int = 1500
    batch: int = 32
    lr: float = 2e-3
    width: int = 12
    seed: int = 0
    voxels: int = defaults.CANDIDATE_CROP_VOXELS


def sample_weights(labels: np.ndarray, real: np.ndarray) -> np.ndarray:
    w = np.zeros(len(labels))
    for c in np.unique(labels):
        members = labels == c
        boost = np.where(real[members], REAL_BOOST, 1.0)
        w[members] = boost / boost.sum()
    return w / w.sum()


def augment(hu: torch.Tensor, voxels: int, generator: torch.Generator) -> torch.Tensor:
    """(B, V, V, V) HU -> (B, 1, voxels^3) normalised, shifted, mirrored, with gain/offset/noise."""
    b, v = hu.shape[0], hu.shape[-1]
    out = torch.empty((b, voxels, voxels, voxels), dtype=torch.float32, device=hu.device)
    starts = torch.randint(0, v - voxels + 1, (b, 3), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5
    for n in range(b):
        k, j, i = starts[n].tolist()
        crop = hu[n, k:k + voxels, j:j + voxels, i:i + voxels]
        out[n] = crop.flip(-1) if flips[n] else crop
    gain = 1 + 0.05 * torch.randn(b, 1, 1, 1, generator=generator)
    offset = 20 * torch.randn(b, 1, 1, 1, generator=generator)
    sigma = 20 * torch.rand(b, 1, 1, 1, generator=generator)
    out = out * gain.to(out) + offset.to(out) + sigma.to(out) * torch.randn(out.shape, generator=generator).to(out)
    lo, hi = defaults.HU_WINDOW
    return ((out.clamp(lo, hi) - lo) / (hi - lo) * 2 - 1).unsqueeze(1)


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


def train(data: CropSet, config: TrainConfig, log: Callable[[str], None] = print,
          val: Optional[CropSet] = None, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Train from scratch; returns the model and its hyper-parameters."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    hparams = {"width": config.width}
    model = build_network(ARCH, **hparams).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.15)
    p = sample_weights(data.labels, data.real)
    crops = torch.from_numpy(data.crops)
    labels = torch.from_numpy(data.labels)
    t0, running = time.perf_counter(), []
    for step in range(1, config.steps + 1):
        model.train()
        idx = torch.from_numpy(rng.choice(len(p), size=config.batch, p=p))
        x = augment(crops[idx].float(), config.voxels, generator).to(device)
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


def summary(probs: np.ndarray, labels: np.ndarray) -> str:
    """Fracture-vs-not AUC-like separation and type accuracy on true fractures, for the log."""
    fracture = 1 - probs[:, 0]
    pos, neg = fracture[labels > 0], fracture[labels == 0]
    auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()) \
        if len(pos) and len(neg) else math.nan
    typed = labels > 0
    acc = float((probs[typed, 1:].argmax(1) + 1 == labels[typed]).mean()) if typed.any() else math.nan
    return f"AUC {auc:.3f}, type accuracy {acc:.3f} (n+ {int(typed.sum())}, n- {int((~typed).sum())})"

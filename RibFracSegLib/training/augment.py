"""Augmentation on the training device: one random affine grid warps image and label together.

Sampling both through the same grid keeps them aligned by construction (flips, small rotations,
scaling — which also stands in for other voxel spacings — and offsets); intensity gain, shift and
noise follow on the image only. Everything is batched torch, so it runs on the GPU when training does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    flip_lr: float = 0.5  # probability of a left-right flip (the body is nearly symmetric)
    max_rotation_deg: float = 10.0
    scale: tuple[float, float] = (0.8, 1.25)  # >1 shows more anatomy per voxel (as a coarser spacing)
    max_offset: float = 0.1  # fraction of the half patch
    gain: float = 0.1
    shift: float = 0.05
    noise_std: float = 0.03  # in normalised units ([-1, 1] spans the HU window)


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) angles in radians -> (B, 3, 3) rotation matrices Rz @ Ry @ Rx."""
    cx, cy, cz = torch.cos(angles).unbind(1)
    sx, sy, sz = torch.sin(angles).unbind(1)
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], 1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).view(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], 1).view(-1, 3, 3)
    return rz @ ry @ rx


def random_affine(batch: int, config: AugmentConfig, generator: torch.Generator,
                  device: torch.device) -> torch.Tensor:
    """(B, 3, 4) theta for `F.affine_grid` (output -> input normalised coordinates)."""
    def uniform(*shape: int, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
        return (torch.rand(*shape, generator=generator) * (hi - lo) + lo).to(device)

    angles = uniform(batch, 3) * math.radians(config.max_rotation_deg)
    log_lo, log_hi = math.log(config.scale[0]), math.log(config.scale[1])
    scale = torch.exp(uniform(batch, 1, lo=log_lo, hi=log_hi))
    flips = torch.ones(batch, 3, device=device)
    flips[:, 0] = torch.where(uniform(batch, lo=0.0, hi=1.0) < config.flip_lr, -1.0, 1.0)  # grid x = array W = L-R
    linear = _rotation(angles) * scale.view(-1, 1, 1) @ torch.diag_embed(flips)
    offset = uniform(batch, 3) * config.max_offset
    return torch.cat([linear, offset.unsqueeze(-1)], dim=2)


def augment_batch(images: torch.Tensor, labels: torch.Tensor, config: AugmentConfig,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """images (B, 1, D, H, W) in [-1, 1]; labels (B, 1, D, H, W); both warped by one grid.

    Float labels are a {0, 1} mask (bilinear, then > 0.5: smooth edges); integer labels are a class
    map, resampled by nearest neighbour (classes have no in-between) and returned in their dtype.
    Outside the patch both read as 0 (background).
    """
    batch = images.shape[0]
    theta = random_affine(batch, config, generator, images.device).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Shift so that zero padding outside the patch reads as air (-1), then shift back.
    warped = F.grid_sample(images + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1.0
    if labels.dtype.is_floating_point:
        warped_labels = (F.grid_sample(labels.to(images.dtype), grid, mode="bilinear", padding_mode="zeros",
                                       align_corners=False) > 0.5).to(images.dtype)
    else:
        warped_labels = F.grid_sample(labels.float(), grid.float(), mode="nearest", padding_mode="zeros",
                                      align_corners=False).round().to(labels.dtype)
    gain = 1.0 + (torch.rand(batch, 1, 1, 1, 1, generator=generator) * 2 - 1).to(images.device) * config.gain
    shift = (torch.rand(batch, 1, 1, 1, 1, generator=generator) * 2 - 1).to(images.device) * config.shift
    noise_scale = torch.rand(batch, 1, 1, 1, 1, generator=generator).to(images.device) * config.noise_std
    noise = torch.randn(warped.shape, generator=generator).to(images.device) * noise_scale
    return warped * gain + shift + noise, warped_labels

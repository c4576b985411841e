"""Training losses for fracture segmentation (all take logits; targets are {0, 1} tensors).

FracNet's 0.5 * BCE + 1.0 * batch-wise soft Dice; a recall-weighted Dice (Tversky form) that makes
a missed fracture voxel cost more than a false one, because a missed fracture is the worse error;
deep supervision for the residual U-Net's lower-resolution heads; the VAE regulariser's terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

SMOOTH = 1.0


@dataclass(frozen=True)
class LossConfig:
    dice_weight: float = 1.0
    bce_weight: float = 0.5
    fn_weight: float = 0.5  # Tversky beta: 0.5 is plain Dice; higher favours recall
    deep_supervision: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
    vae_weight: float = 0.1


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = SMOOTH) -> torch.Tensor:
    """1 - batch-wise soft Dice (FracNet: one Dice over the whole batch, smooth 1)."""
    return tversky_loss(logits, target, fn_weight=0.5, smooth=smooth)


def tversky_loss(logits: torch.Tensor, target: torch.Tensor, fn_weight: float = 0.7,
                 smooth: float = SMOOTH) -> torch.Tensor:
    """Recall-weighted Dice: 1 - TP / (TP + (1 - w) FP + w FN); w = 0.5 is soft Dice."""
    prob = torch.sigmoid(logits.float())
    target = target.float()
    tp = (prob * target).sum()
    fp = (prob * (1 - target)).sum()
    fn = ((1 - prob) * target).sum()
    return 1 - (tp + smooth) / (tp + (1 - fn_weight) * fp + fn_weight * fn + smooth)


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, config: LossConfig = LossConfig()) -> torch.Tensor:
    """bce_weight * BCE-with-logits + dice_weight * (recall-weighted) Dice."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return config.bce_weight * bce + config.dice_weight * tversky_loss(logits, target, config.fn_weight)


def downsample_target(target: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Target at a head's resolution; max-pooling keeps thin fractures that averaging would lose."""
    if tuple(target.shape[2:]) == tuple(shape):
        return target
    return F.adaptive_max_pool3d(target.float(), tuple(shape))


def deep_supervision_loss(outputs: Sequence[torch.Tensor], target: torch.Tensor,
                          config: LossConfig = LossConfig()) -> torch.Tensor:
    """Weighted sum of dice_bce over heads (full resolution first), weights normalised to 1."""
    weights = list(config.deep_supervision[: len(outputs)])
    weights += [weights[-1] / 2] * (len(outputs) - len(weights))
    total = sum(weights)
    return sum(w / total * dice_bce_loss(o, downsample_target(target, o.shape[2:]), config)
               for w, o in zip(weights, outputs))


def vae_loss(reconstruction: torch.Tensor, image: torch.Tensor, mu: torch.Tensor,
             logvar: torch.Tensor) -> torch.Tensor:
    """The VAE regulariser: reconstruction MSE + KL divergence to N(0, 1) (per element, mean)."""
    kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
    return F.mse_loss(reconstruction, image) + kl


NetworkOutput = Union[torch.Tensor, Sequence[torch.Tensor], tuple[torch.Tensor, Optional[torch.Tensor]]]


def segmentation_loss(output: NetworkOutput, target: torch.Tensor, config: LossConfig = LossConfig(),
                      vae_term: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One entry point for every architecture: plain logits, a deep-supervision list, plus a VAE term."""
    if isinstance(output, torch.Tensor):
        loss = dice_bce_loss(output, target, config)
    else:
        loss = deep_supervision_loss(list(output), target, config)
    if vae_term is not None:
        loss = loss + config.vae_weight * vae_term
    return loss

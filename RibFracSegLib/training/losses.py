"""Training losses for fracture segmentation (all take logits).

FracNet's 0.5 * BCE + 1.0 * batch-wise soft Dice; a recall-weighted Dice (Tversky form) that makes
a missed fracture voxel cost more than a false one, because a missed fracture is the worse error;
deep supervision for the residual U-Net's lower-resolution heads; the VAE regulariser's terms.

Targets: for a one-channel network a {0, 1} fracture mask; for a network with C > 1 channels a
class map (integer tensor, B x 1 x D x H x W): 0 background, 1..C-1 the fracture types (RibFrac
codes), UNKNOWN_TYPE a fracture voxel whose type is not known (`multiclass_loss` says how it counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

SMOOTH = 1.0
UNKNOWN_TYPE = 255  # class-map value of a fracture voxel of unknown type (RibFrac code -1 or none)


@dataclass(frozen=True)
class LossConfig:
    dice_weight: float = 1.0
    bce_weight: float = 0.5  # the cross-entropy's weight (BCE for one channel, softmax CE for more)
    fn_weight: float = 0.5  # Tversky beta: 0.5 is plain Dice; higher favours recall
    deep_supervision: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
    vae_weight: float = 0.1
    type_dice_weight: float = 0.5  # multi-class only: per-type soft Dice (rare types would drown in the CE)
    window_weight: float = 0.0  # one-channel only: `window_loss`'s weight (0: off)
    window_top: int = 32  # ... the voxels whose mean logit is a window's score


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = SMOOTH) -> torch.Tensor:
    """1 - batch-wise soft Dice (FracNet: one Dice over the whole batch, smooth 1)."""
    return tversky_loss(logits, target, fn_weight=0.5, smooth=smooth)


def tversky_loss(logits: torch.Tensor, target: torch.Tensor, fn_weight: float = 0.7,
                 smooth: float = SMOOTH) -> torch.Tensor:
    """Recall-weighted Dice: 1 - TP / (TP + (1 - w) FP + w FN); w = 0.5 is soft Dice."""
    return _tversky(torch.sigmoid(logits.float()), target.float(), fn_weight, smooth)


def _tversky(prob: torch.Tensor, target: torch.Tensor, fn_weight: float, smooth: float = SMOOTH) -> torch.Tensor:
    """tversky_loss on probabilities (batch-wise sums)."""
    tp = (prob * target).sum()
    fp = (prob * (1 - target)).sum()
    fn = ((1 - prob) * target).sum()
    return 1 - (tp + smooth) / (tp + (1 - fn_weight) * fp + fn_weight * fn + smooth)


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, config: LossConfig = LossConfig()) -> torch.Tensor:
    """bce_weight * BCE-with-logits + dice_weight * (recall-weighted) Dice (+ window_weight * `window_loss`)."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    loss = config.bce_weight * bce + config.dice_weight * tversky_loss(logits, target, config.fn_weight)
    if config.window_weight:
        loss = loss + config.window_weight * window_loss(logits, target, config.window_top)
    return loss


def window_loss(logits: torch.Tensor, target: torch.Tensor, top: int = 32) -> torch.Tensor:
    """BCE of each window's score (the mean of its `top` highest logits) against "holds a fracture".
    A false blob of a few hundred voxels in an intact window is a false detection, yet the voxel-averaged
    BCE and the batch-wise Dice barely see it (runs/frame2 learned to fire on 28% of intact windows while
    its loss fell; issue 24): this term makes it cost as much as a missed fracture."""
    flat = logits.float().reshape(logits.shape[0], -1)
    score = flat.topk(min(int(top), flat.shape[1]), dim=1).values.mean(dim=1)
    holds = (target.reshape(target.shape[0], -1) > 0).any(dim=1).float()
    return F.binary_cross_entropy_with_logits(score, holds)


def multiclass_loss(logits: torch.Tensor, target: torch.Tensor, config: LossConfig = LossConfig()) -> torch.Tensor:
    """bce_weight * softmax CE + dice_weight * (fracture Tversky + type_dice_weight * per-type Dice).

    logits (B, C, ...), target a class map (B, 1, ...) or (B, ...) (see the module docstring).

    A fracture of unknown type (UNKNOWN_TYPE: RibFrac code -1, or no csv row) is still a fracture;
    only its type is missing. So it is neither background nor ignored: its cross-entropy term is the
    likelihood of what is known, -log P(some fracture) = -log(1 - softmax background), which pushes
    fracture against background and leaves the split among the types free; in the Dice it is
    foreground, and it is left out of the per-type Dice. Ignoring those voxels in the CE (ignore
    index) would silence the CE on those fractures while the background around them still speaks.

    The fracture-vs-background Dice reads 1 - softmax background as the fracture probability (what
    inference thresholds) with the recall weight `fn_weight`. The per-type Dice is batch-wise and
    averaged over the types present in the batch's known voxels (an absent type has no Dice to score).
    """
    target = target.reshape(logits.shape[0], *logits.shape[2:]).long()
    log_p = torch.log_softmax(logits.float(), dim=1)
    unknown = target == UNKNOWN_TYPE
    known_target = torch.where(unknown, torch.zeros_like(target), target)
    nll = -log_p.gather(1, known_target.unsqueeze(1)).squeeze(1)
    nll_fracture = -torch.logsumexp(log_p[:, 1:], dim=1)  # -log P(any fracture type)
    ce = torch.where(unknown, nll_fracture, nll).mean()
    prob = log_p.exp()
    fracture = (target > 0).float()
    loss = config.bce_weight * ce + config.dice_weight * _tversky(1 - prob[:, 0], fracture, config.fn_weight)
    if config.type_dice_weight:
        known = (~unknown).float()
        dice = [_tversky(prob[:, c] * known, (target == c).float(), 0.5)
                for c in range(1, logits.shape[1]) if bool((target == c).any())]
        if dice:
            loss = loss + config.dice_weight * config.type_dice_weight * torch.stack(dice).mean()
    return loss


def downsample_target(target: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Target at a head's resolution; max-pooling keeps thin fractures that averaging would lose.

    A class map (integer tensor) is pooled the same way, so a block holding any fracture voxel is a
    fracture: of a known type when it holds one (the highest code if it holds two), else UNKNOWN_TYPE.
    """
    if tuple(target.shape[2:]) == tuple(shape):
        return target
    if target.dtype.is_floating_point:
        return F.adaptive_max_pool3d(target.float(), tuple(shape))
    unknown = target == UNKNOWN_TYPE
    fracture = F.adaptive_max_pool3d((target > 0).float(), tuple(shape)) > 0
    typed = F.adaptive_max_pool3d(torch.where(unknown, torch.zeros_like(target), target).float(), tuple(shape))
    return torch.where(typed > 0, typed, torch.where(fracture, float(UNKNOWN_TYPE), 0.0)).to(target.dtype)


def _head_loss(logits: torch.Tensor, target: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """dice_bce for a one-channel head, multiclass_loss for a head with class channels."""
    if logits.shape[1] == 1:
        return dice_bce_loss(logits, target, config)
    return multiclass_loss(logits, target, config)


def deep_supervision_loss(outputs: Sequence[torch.Tensor], target: torch.Tensor,
                          config: LossConfig = LossConfig()) -> torch.Tensor:
    """Weighted sum of the head losses (full resolution first), weights normalised to 1."""
    weights = list(config.deep_supervision[: len(outputs)])
    weights += [weights[-1] / 2] * (len(outputs) - len(weights))
    total = sum(weights)
    return sum(w / total * _head_loss(o, downsample_target(target, o.shape[2:]), config)
               for w, o in zip(weights, outputs))


def vae_loss(reconstruction: torch.Tensor, image: torch.Tensor, mu: torch.Tensor,
             logvar: torch.Tensor) -> torch.Tensor:
    """The VAE regulariser: reconstruction MSE + KL divergence to N(0, 1) (per element, mean)."""
    kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
    return F.mse_loss(reconstruction, image) + kl


NetworkOutput = Union[torch.Tensor, Sequence[torch.Tensor], tuple[torch.Tensor, Optional[torch.Tensor]]]


def segmentation_loss(output: NetworkOutput, target: torch.Tensor, config: LossConfig = LossConfig(),
                      vae_term: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One entry point for every architecture: plain logits, a deep-supervision list, plus a VAE term;
    one output channel is the binary loss, more channels the multi-class one."""
    if isinstance(output, torch.Tensor):
        loss = _head_loss(output, target, config)
    else:
        loss = deep_supervision_loss(list(output), target, config)
    if vae_term is not None:
        loss = loss + config.vae_weight * vae_term
    return loss

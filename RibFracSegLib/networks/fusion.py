"""Inference-only model transforms that make a CPU forward cheaper without changing its numbers much.

A conv followed by a frozen BN is one affine map; folding it saves a full memory pass per layer
(~20 % of a CPU forward here) and changes logits only by float rounding (~1e-6). Mixed precision
keeps the layers a network declares precision-sensitive in fp32 under bf16 autocast.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every Sequential's conv->BN pair fused (others untouched)."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, norm = module[i], module[i + 1]
            if isinstance(conv, _CONVS) and isinstance(norm, _NORMS) and norm.track_running_stats:
                module[i] = fuse_conv_bn_eval(conv, norm, transpose=isinstance(conv, _TRANSPOSED))
                module[i + 1] = nn.Identity()
    return model


class _Float32(nn.Module):
    """Runs the wrapped module in fp32 even inside a bf16/fp16 autocast region."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        with torch.autocast(inputs[0].device.type, enabled=False):
            return self.module(*(t.float() for t in inputs))


def keep_full_resolution_fp32(model: nn.Module) -> nn.Module:
    """Copy of `model` whose `fp32_modules` (dotted names it declares) ignore autocast.

    Rounding the full-resolution layers to bf16 is what moves probabilities most; keeping only those
    in fp32 runs the coarse levels at bf16 speed with fp32-like probabilities. Models that declare
    nothing are returned unchanged (a copy).
    """
    model = copy.deepcopy(model)
    for name in getattr(model, "fp32_modules", ()):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _Float32(getattr(parent, child)))
    return model

"""A small 3-D CNN that reads one crop around a detection: fracture or not, and which type.

Why a second stage rather than a multi-class head on the U-Net: the type is a property of the
whole break (a gap and an offset, a crack, a fold, two breaks on one rib), which a 40 mm crop
centred on the detection shows at once, while a voxel-wise head would vote voxel by voxel; and the
same crop decides whether the detection is a fracture at all, which is where the U-Net fails on
real CTs (spine, scapulae, cartilage). It costs one small forward per detection.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import defaults
from .registry import register_network


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm3d(c_out), nn.ReLU(inplace=True))


@register_network("candidate_cnn3d")
class CandidateCNN3d(nn.Module):
    """32^3 crop -> 5 logits (0 not a fracture, 1..4 RibFrac codes); 4 levels, strided convolutions."""

    def __init__(self, in_channels: int = 1, width: int = 12, num_classes: int = defaults.CANDIDATE_CLASSES,
                 dropout: float = 0.2) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv(in_channels, w),
            _conv(w, 2 * w, 2), _conv(2 * w, 2 * w),
            _conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w),
            _conv(4 * w, 8 * w, 2), _conv(8 * w, 8 * w))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(16 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3, 4)), f.amax(dim=(2, 3, 4))], dim=1)
        return self.head(pooled)

"""A small 2D U-Net for the L3 confidence map, registered as "l3_unet2d".

Small on purpose (trained on 2 shared CPU cores): a stride-2 stem works at 2 mm, which doubles the
receptive field the network needs to count vertebrae from the last ribs or the sacrum, and the
channel count is capped. The output is a logit map at the input's size (1-mm MIP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import defaults
from .registry import register_network


def _block(c_in: int, c_out: int) -> nn.Sequential:
    groups = max(1, min(8, c_out // 4))
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.GroupNorm(groups, c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.GroupNorm(groups, c_out), nn.ReLU(inplace=True),
    )


@register_network("l3_unet2d")
class L3UNet2d(nn.Module):
    """U-Net: stem (stride 2) -> `depth` encoder levels -> decoder with skips -> 1 logit map."""

    def __init__(self, in_channels: int = 1, base: int = defaults.L3_UNET_BASE,
                 depth: int = defaults.L3_UNET_DEPTH, max_channels: int = 64) -> None:
        super().__init__()
        chans = [min(base * 2**level, max_channels) for level in range(depth)]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, chans[0], 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.down = nn.ModuleList(_block(chans[max(0, i - 1)], c) for i, c in enumerate(chans))
        self.up = nn.ModuleList(_block(chans[i + 1] + chans[i], chans[i]) for i in range(depth - 1))
        self.head = nn.Conv2d(chans[0], 1, 1)
        self.total_stride = 2**depth  # stem x2, then depth-1 poolings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        h = self.stem(x - 0.5)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else F.max_pool2d(h, 2))
            skips.append(h)
        for i in reversed(range(len(self.up))):
            h = F.interpolate(h, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            h = self.up[i](torch.cat([h, skips[i]], dim=1))
        return F.interpolate(self.head(h), size=size, mode="bilinear", align_corners=False)

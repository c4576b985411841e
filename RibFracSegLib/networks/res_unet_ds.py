"""Residual 3D U-Net with deep supervision (the seed report's network, ~9.5 M parameters).

Encoder: residual blocks (conv-BN-ReLU x2 + 1x1 projection); decoder: conv-BN-ReLU blocks with
dropout; one 1x1 head per decoder level. Training gets all heads (coarse ones steer the deep
layers); eval mode returns only the full-resolution logits, so inference pays for one head.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn
from torch.nn import functional as F

from .registry import register_network


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn_relu(in_channels, out_channels),
            nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels),
        )
        self.skip = (nn.Identity() if in_channels == out_channels else
                     nn.Sequential(nn.Conv3d(in_channels, out_channels, 1, bias=False), nn.BatchNorm3d(out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x), inplace=True)


class DecoderBlock(nn.Module):
    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(in_channels, out_channels, 2, stride=2, bias=False)
        self.conv = nn.Sequential(*conv_bn_relu(out_channels + skip_channels, out_channels),
                                  nn.Dropout3d(dropout), *conv_bn_relu(out_channels, out_channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


@register_network("res_unet_ds")
class ResUNetDS(nn.Module):
    """Heads ordered full resolution first: training returns [1/1, 1/2, 1/4, 1/8] logits."""

    fp32_modules = ("encoders.0", "heads.0")  # the last decoder is added below (its index depends on depth)

    def __init__(self, in_channels: int = 1, num_classes: int = 1, base_channels: int = 21,
                 depth: int = 5, dropout: float = 0.1, num_heads: int = 4) -> None:
        super().__init__()
        if not 1 <= num_heads < depth:
            raise ValueError(f"num_heads must be in 1..{depth - 1}, got {num_heads}")
        channels = [base_channels * 2 ** i for i in range(depth)]
        self.encoders = nn.ModuleList(
            ResidualBlock(c_in, c_out) for c_in, c_out in zip([in_channels] + channels[:-1], channels))
        self.decoders = nn.ModuleList(
            DecoderBlock(channels[i + 1], channels[i], channels[i], dropout) for i in reversed(range(depth - 1)))
        # decoders run coarse -> fine; heads[0] sits on the finest decoder output
        self.heads = nn.ModuleList(nn.Conv3d(channels[i], num_classes, 1) for i in range(num_heads))
        self.fp32_modules = self.fp32_modules + (f"decoders.{depth - 2}",)
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else F.max_pool3d(x, 2))
            skips.append(x)
        outputs = []
        for decoder, skip in zip(self.decoders, reversed(skips[:-1])):
            x = decoder(x, skip)
            outputs.append(x)
        outputs.reverse()  # finest first
        if not self.training:
            return self.heads[0](outputs[0])
        return [head(feature) for head, feature in zip(self.heads, outputs)]

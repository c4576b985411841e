"""FracNet's 3D U-Net (Jin et al. 2020), module-for-module, so its `model_weights.pth` loads unchanged.

Attribute names and Sequential indices are the state_dict contract (104 keys, 1,401,377 parameters);
see shared/reference/fracnet-unet.md. Do not rename anything here.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_network


class ConvBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.LeakyReLU(inplace=True),
            nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.LeakyReLU(inplace=True),
        )


class Down(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool3d(2), ConvBlock(in_channels, out_channels))


class Up(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBlock(in_channels, out_channels)  # declared first: key order as FracNet's
        self.conv2 = nn.Sequential(
            nn.ConvTranspose3d(in_channels, out_channels, 2, stride=2, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.LeakyReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv1(torch.cat([skip, self.conv2(x)], dim=1))


@register_network("fracnet_unet")
class FracNetUNet(nn.Module):
    """Returns one logit per voxel; the sigmoid is applied by the caller (as in FracNet)."""

    fp32_modules = ("first", "up3", "final")  # full-resolution layers kept fp32 in "mixed" precision

    def __init__(self, in_channels: int = 1, num_classes: int = 1, first_out_channels: int = 16) -> None:
        super().__init__()
        c = first_out_channels
        self.first = ConvBlock(in_channels, c)
        self.down1 = Down(c, 2 * c)
        self.down2 = Down(2 * c, 4 * c)
        self.down3 = Down(4 * c, 8 * c)
        self.up1 = Up(8 * c, 4 * c)
        self.up2 = Up(4 * c, 2 * c)
        self.up3 = Up(2 * c, c)
        self.final = nn.Conv3d(c, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.first(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.up1(x4, x3)
        x = self.up2(x, x2)
        x = self.up3(x, x1)
        return self.final(x)

"""Residual GroupNorm encoder-decoder with an optional VAE regulariser (Myronenko, BraTS 2018).

The VAE branch reconstructs the input patch from the deepest features during training only; it
regularises the shared encoder when labelled data are few. `forward` never runs it, so inference
costs the segmentation path alone; training calls `forward_train`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .. import defaults
from .registry import register_network


def _gn(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class GNResBlock(nn.Module):
    """GN-ReLU-Conv-GN-ReLU-Conv with identity skip (pre-activation)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_gn(channels, groups), nn.ReLU(inplace=True),
                                  nn.Conv3d(channels, channels, 3, padding=1, bias=False),
                                  _gn(channels, groups), nn.ReLU(inplace=True),
                                  nn.Conv3d(channels, channels, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _upsample_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, 1, bias=False),
                         nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False))


@register_network("segresnet_vae")
class SegResNetVAE(nn.Module):
    fp32_modules = ("stem", "down.0", "head")  # full-resolution layers kept fp32 in "mixed" precision

    def __init__(self, in_channels: int = 1, num_classes: int = 1, init_filters: int = 16,
                 blocks_down: Sequence[int] = (1, 2, 2, 4), groups: int = 8, dropout: float = 0.2,
                 use_vae: bool = False, input_size: Optional[Sequence[int]] = None,
                 vae_latent: int = 128) -> None:
        super().__init__()
        chans = [init_filters * 2 ** i for i in range(len(blocks_down))]
        self.stem = nn.Sequential(nn.Conv3d(in_channels, chans[0], 3, padding=1, bias=False), nn.Dropout3d(dropout))
        self.down = nn.ModuleList()
        for level, n_blocks in enumerate(blocks_down):
            pre = [] if level == 0 else [nn.Conv3d(chans[level - 1], chans[level], 3, stride=2, padding=1, bias=False)]
            self.down.append(nn.Sequential(*pre, *(GNResBlock(chans[level], groups) for _ in range(n_blocks))))
        self.up = nn.ModuleList(_upsample_block(chans[i + 1], chans[i]) for i in reversed(range(len(chans) - 1)))
        self.up_blocks = nn.ModuleList(GNResBlock(chans[i], groups) for i in reversed(range(len(chans) - 1)))
        self.fp32_modules = self.fp32_modules + (f"up.{len(chans) - 2}", f"up_blocks.{len(chans) - 2}")
        self.head = nn.Sequential(_gn(chans[0], groups), nn.ReLU(inplace=True), nn.Conv3d(chans[0], num_classes, 1))
        self.use_vae = use_vae
        if use_vae:
            self._build_vae(chans, groups, in_channels, tuple(input_size or defaults.PATCH_SIZE), vae_latent)

    def _build_vae(self, chans: list[int], groups: int, in_channels: int, input_size: tuple, latent: int) -> None:
        factor = 2 ** len(chans)  # encoder downsamples by 2**(levels-1), the VAE by one more
        if any(s % factor for s in input_size):
            raise ValueError(f"VAE input_size {input_size} must be divisible by {factor}")
        self.vae_grid = tuple(s // factor for s in input_size)
        n_small, top = 16, chans[-1]
        self.vae_down = nn.Sequential(_gn(top, groups), nn.ReLU(inplace=True),
                                      nn.Conv3d(top, n_small, 3, stride=2, padding=1))
        flat = n_small * self.vae_grid[0] * self.vae_grid[1] * self.vae_grid[2]
        self.vae_mu = nn.Linear(flat, latent)
        self.vae_logvar = nn.Linear(flat, latent)
        self.vae_expand = nn.Sequential(nn.Linear(latent, flat), nn.ReLU(inplace=True))
        self.vae_first_up = _upsample_block(n_small, top)
        self.vae_up = nn.ModuleList(
            nn.Sequential(_upsample_block(chans[i + 1], chans[i]), GNResBlock(chans[i], groups))
            for i in reversed(range(len(chans) - 1)))
        self.vae_out = nn.Conv3d(chans[0], in_channels, 1)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        return skips

    def _decode(self, skips: list[torch.Tensor]) -> torch.Tensor:
        x = skips[-1]
        for up, block, skip in zip(self.up, self.up_blocks, reversed(skips[:-1])):
            x = block(up(x) + skip)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._decode(self._encode(x))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(segmentation logits, VAE loss or None): loss = L2 reconstruction + KL, as in the paper."""
        skips = self._encode(x)
        logits = self._decode(skips)
        if not self.use_vae:
            return logits, None
        expected = tuple(g * 2 ** len(self.down) for g in self.vae_grid)
        if tuple(x.shape[2:]) != expected:
            raise ValueError(f"the VAE branch was built for {expected} patches (input_size), got {tuple(x.shape[2:])}; "
                             "build the network with input_size equal to the training patch size")
        z = self.vae_down(skips[-1]).flatten(1)
        mu, logvar = self.vae_mu(z), self.vae_logvar(z)
        sample = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        y = self.vae_expand(sample).view(x.shape[0], -1, *self.vae_grid)
        y = self.vae_first_up(y)
        for block in self.vae_up:
            y = block(y)
        recon = self.vae_out(y)
        kl = torch.mean(mu ** 2 + logvar.exp() - logvar - 1)
        return logits, F.mse_loss(recon, x) + kl

"""Networks whose output is a known function of their input, for testing the inference engine."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from RibFracSegLib.checkpoint import Checkpoint
from RibFracSegLib.networks import register_network


@register_network("test_pointwise")
class Pointwise(nn.Module):
    """logit = gain * x + bias per voxel: every patch agrees, so any correct blend returns exactly this."""

    def __init__(self, gain: float = 3.0, bias: float = 0.5) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(float(gain)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * x + self.bias


@register_network("test_patch_mean")
class PatchMean(nn.Module):
    """logit = x + 4 * mean(patch): depends on where the patch sits, so the blend weights matter."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        PatchMean.calls += 1
        return x + 4.0 * x.mean(dim=(1, 2, 3, 4), keepdim=True)


def checkpoint(arch: str, patch: int = 16, hu_window=(-200.0, 1000.0), **hparams) -> Checkpoint:
    model = {"test_pointwise": Pointwise, "test_patch_mean": PatchMean}[arch](**hparams)
    return Checkpoint.from_model(arch, model, hparams, patch_size=(patch,) * 3,
                                 preprocessing={"hu_window": list(hu_window), "normalisation": "window_to_minus1_1",
                                                "target_spacing": None})


def oblique_image(array_kji: np.ndarray, spacing=(0.9, 1.1, 1.7), angles=(0.35, -0.2, 0.5),
                  flip=(1.0, -1.0, 1.0)) -> sitk.Image:
    """An image with a rotated (and optionally flipped) direction matrix and an arbitrary origin."""
    image = sitk.GetImageFromArray(array_kji)
    rot = sitk.Euler3DTransform((0, 0, 0), *angles).GetMatrix()
    direction = np.array(rot).reshape(3, 3) @ np.diag(flip)
    image.SetDirection(direction.ravel().tolist())
    image.SetSpacing(spacing)
    image.SetOrigin((-31.5, 12.25, 140.0))
    return image


def native_and_faster(monkeypatch, native: str = "bf16", fp32_s: float = 1.0, reduced_s: float = 0.5) -> None:
    """Make this machine look like one with native `native` on which it is faster than fp32 (this
    CPU may emulate bf16, and tiny test networks give no honest timing): `auto` then follows the
    stored verdict or the first batch's output."""
    from RibFracSegLib import inference, precision

    monkeypatch.setattr(precision, "native_reduced_precision", lambda device: native)
    timed = inference._Runner._timed

    def fixed(self, x, name):
        return timed(self, x, name)[0], fp32_s if name == "fp32" else reduced_s

    monkeypatch.setattr(inference._Runner, "_timed", fixed)

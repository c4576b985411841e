"""A known-function "network" for testing the module end to end with exact expectations.

The probe is a 1x1x1 convolution with fixed weights: after the checkpoint's HU window (which only
MARKER_HU reaches the top of) its logit is high exactly on voxels painted with MARKER_HU and very
low everywhere else. Paint a phantom's truth fracture voxels with the marker and the whole chain —
volume node -> library -> nodes -> files — must return exactly the truth: same count, same voxels,
centroids where the truth says. Used by the pytest suite and by the in-Slicer self-test alike.

Importing this module registers the network "marker_probe"; the background worker imports it
with `--preload RibFracSegLogicLib.probe`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from RibFracSegLib.checkpoint import Checkpoint, default_thresholds, save_checkpoint
from RibFracSegLib.networks import register_network

ARCH = "marker_probe"
MARKER_HU = 3000  # far above any tissue or bone a phantom holds
WINDOW_WIDTH_HU = 1000.0  # HU window (MARKER_HU - width, MARKER_HU): everything else clips to -1
GAIN, BIAS = 40.0, -20.0  # logit = GAIN * x + BIAS: +20 on the marker (x = 1), <= -20 elsewhere (x <= 0)
MODULE = __name__


@register_network(ARCH)
class MarkerProbe(nn.Module):
    """logit = GAIN * x + BIAS per voxel, as a 1x1x1 convolution so it is an ordinary state_dict."""

    def __init__(self, in_channels: int = 1, num_classes: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, num_classes, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.fill_(GAIN)
            self.conv.bias.fill_(BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def probe_checkpoint(patch_size: tuple[int, int, int] = (32, 32, 32)) -> Checkpoint:
    """The probe as a checkpoint: marker-only HU window, no minimum volume (every painted blob counts)."""
    thresholds = default_thresholds() | {"min_volume_mm3": 0.0}
    preprocessing = {"hu_window": [MARKER_HU - WINDOW_WIDTH_HU, float(MARKER_HU)],
                     "normalisation": "window_to_minus1_1", "target_spacing": None}
    return Checkpoint.from_model(ARCH, MarkerProbe(), hparams={}, preprocessing=preprocessing,
                                 patch_size=tuple(patch_size), thresholds=thresholds,
                                 provenance={"source": "RibFracSegLogicLib.probe (test model)"})


def write_probe_checkpoint(path: str | Path, patch_size: tuple[int, int, int] = (32, 32, 32)) -> Path:
    return save_checkpoint(path, probe_checkpoint(patch_size))


def paint_marker(image: sitk.Image, labels: sitk.Image) -> sitk.Image:
    """A copy of `image` with MARKER_HU wherever `labels` > 0 (same grid, same pixel type)."""
    array = sitk.GetArrayFromImage(image)
    array[sitk.GetArrayViewFromImage(labels) > 0] = MARKER_HU
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def label_centroids_ijk(labels: sitk.Image) -> dict[int, np.ndarray]:
    """Voxel centroid (i, j, k) of each label id: where the probe's detections must land."""
    array = sitk.GetArrayViewFromImage(labels)
    out = {}
    for label_id in np.unique(array[array > 0]):
        kji = np.argwhere(array == label_id).mean(axis=0)
        out[int(label_id)] = kji[::-1]
    return out

"""Crops around points of a CT, on one fixed grid in patient space, for the candidate classifier.

Why a fixed grid: the classifier must see the same anatomy at the same scale whatever the CT's
spacing and storage order (RAS, PIR, oblique ...), so every crop is resampled (SimpleITK, linear)
onto an axis-aligned LPS cube of `voxels`^3 at `spacing_mm`, centred on the point. The array is
(S, P, L) = (k, j, i) of that cube; outside the CT reads as air.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk

from .. import defaults


def crop_reference(center_lps: Sequence[float], voxels: int, spacing_mm: float) -> sitk.Image:
    """An empty LPS-aligned cube of voxels^3 whose centre is `center_lps`."""
    ref = sitk.Image([voxels] * 3, sitk.sitkFloat32)
    ref.SetSpacing([spacing_mm] * 3)
    ref.SetOrigin([float(c) - (voxels - 1) / 2 * spacing_mm for c in center_lps])
    return ref


def extract_crops(image: sitk.Image, centers_lps: Sequence[Sequence[float]],
                  voxels: int = defaults.CANDIDATE_CROP_VOXELS,
                  spacing_mm: float = defaults.CANDIDATE_CROP_MM) -> np.ndarray:
    """(N, voxels, voxels, voxels) float32 HU crops, one per centre."""
    out = np.empty((len(centers_lps), voxels, voxels, voxels), np.float32)
    if not len(centers_lps):
        return out
    resampler = sitk.ResampleImageFilter()
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(float(defaults.AIR_HU))
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    for n, centre in enumerate(centers_lps):
        resampler.SetReferenceImage(crop_reference(centre, voxels, spacing_mm))
        crop = resampler.Execute(image)  # held by a name: an array view does not keep its image alive
        out[n] = sitk.GetArrayViewFromImage(crop)
    return out


def centre_cut(crops: np.ndarray, voxels: int) -> np.ndarray:
    """The central voxels^3 of larger stored crops (N, V, V, V)."""
    start = (crops.shape[-1] - voxels) // 2
    s = slice(start, start + voxels)
    return crops[:, s, s, s]

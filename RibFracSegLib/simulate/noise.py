"""The CT's local noise level, and noise to match it on synthetic tissue.

One estimator measures both: the robust SD (1.4826 x MAD) of the residual after a Gaussian
smoothing, over soft tissue near the rib. The added noise is scaled so that this estimator reads the
same on it as on the CT, which matches the visible grain even though CT noise is correlated.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import defaults
from ..orientation import canonical_volume

_SMOOTH_VOXELS = 1.5


def _residual_sd(values: np.ndarray, mask: np.ndarray) -> float:
    residual = (values - ndimage.gaussian_filter(values, _SMOOTH_VOXELS))[mask]
    if residual.size < 50:
        return float("nan")
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))))


def local_noise_sd(hu: np.ndarray, away_from_bone: np.ndarray) -> float:
    """Noise SD (HU) measured on soft tissue (within SOFT_TISSUE_HU) in `hu`, where `away_from_bone`."""
    soft = (hu >= defaults.SOFT_TISSUE_HU[0]) & (hu <= defaults.SOFT_TISSUE_HU[1])
    smooth = ndimage.gaussian_filter(hu.astype(np.float32), _SMOOTH_VOXELS)
    flat = soft & away_from_bone & (np.abs(hu - smooth) < 200)
    flat = ndimage.binary_erosion(flat, np.ones((3, 3, 3), bool))
    sd = _residual_sd(hu.astype(np.float32), flat)
    return sd if np.isfinite(sd) else 0.0


def noise_field(shape_kji: tuple[int, int, int], grid, rng: np.random.Generator) -> np.ndarray:
    """Correlated Gaussian noise on an array of `shape_kji` whose residual SD (as measured above) is 1.

    Drawn in the canonical (LPS) voxel order and mapped back, so the same seed gives the same noise at
    the same place whatever the storage order."""
    probe = sitk.GetImageFromArray(np.zeros(shape_kji, np.uint8))
    probe.SetDirection((grid.matrix / grid.spacing_ijk).ravel().tolist())
    canon = canonical_volume(probe)
    white = rng.standard_normal(canon.array.shape).astype(np.float32)
    field = ndimage.gaussian_filter(white, defaults.NOISE_CORRELATION_VOXELS)
    field /= _residual_sd(field, np.ones(field.shape, bool))
    return canon.to_input(field)

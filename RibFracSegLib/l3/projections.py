"""Frontal and sagittal maximum-intensity projections (MIPs) at 1 mm, head-up, for the L3 locator.

Whatever the input's direction matrix, the CT is first reoriented (permute/flip only) to LPS storage,
so array axes are [superior, posterior, left]; an oblique CT (axes more than
`defaults.L3_MIP_ALIGN_TOLERANCE_DEG` off the patient's) is then resampled onto a patient-aligned
grid, so its MIPs run along the body as the network learnt them (projected along tilted axes, the
spine of a 10-degree oblique demo phantom smeared and the network saw no L3). The MIPs are flipped
so row 0 is the most superior slice and resampled so one row and one column are
`defaults.L3_MIP_SPACING_MM`. The `Projections` object keeps what is needed to map a MIP row back to
the input grid through physical points (decoding.py). The same function feeds the network, the
training data and the QC pictures.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from RibFracSegLib import defaults
from RibFracSegLib.orientation import canonical_image


@dataclass(frozen=True)
class Projections:
    """Head-up MIPs (values in [0, 1]) at 1 mm and the canonical grid they came from."""

    frontal: np.ndarray  # [rows = superior->inferior, cols = patient right->left]
    sagittal: np.ndarray  # [rows = superior->inferior, cols = anterior->posterior]
    canonical: sitk.Image  # the CT in LPS storage: reoriented (same voxels), or resampled when oblique
    spacing_mm: float  # of rows and columns of both MIPs
    centre_i: float  # canonical column (left-right index) of the body's centre: the sagittal slab

    @property
    def n_slices(self) -> int:
        return int(self.canonical.GetSize()[2])


def scale_hu(mip: np.ndarray, hu_range: tuple[float, float] = defaults.L3_MIP_HU_RANGE) -> np.ndarray:
    """Clip HU to the bone-sensitive range and map it linearly to [0, 1] (float32)."""
    lo, hi = hu_range
    return ((np.clip(mip.astype(np.float32), lo, hi) - lo) / (hi - lo)).astype(np.float32)


def body_centre_column(volume: np.ndarray) -> float:
    """Left-right index of the body's centre (mean column of tissue voxels) in an [k, j, i] array."""
    coarse = volume[:: max(1, volume.shape[0] // 64), ::2, :]
    counts = (coarse > defaults.L3_BODY_HU).sum(axis=(0, 1)).astype(float)
    if counts.sum() == 0:
        return (volume.shape[2] - 1) / 2.0
    return float((counts * np.arange(volume.shape[2])).sum() / counts.sum())


def resample_rows_cols(mip: np.ndarray, row_mm: float, col_mm: float, out_mm: float) -> np.ndarray:
    """Linear resampling with output sample 0 on input sample 0, so row r <-> input row r*out/row_mm."""
    out_shape = tuple(int(np.floor((n - 1) * s / out_mm + 1e-6)) + 1 for n, s in zip(mip.shape, (row_mm, col_mm)))
    return ndimage.affine_transform(mip, (out_mm / row_mm, out_mm / col_mm), output_shape=out_shape,
                                    order=1, mode="nearest")


def patient_aligned(canonical: sitk.Image) -> sitk.Image:
    """`canonical` (LPS storage) itself when its axes run along the patient's within
    L3_MIP_ALIGN_TOLERANCE_DEG, else resampled (linear) onto an identity-direction grid covering it, at
    its spacing but no finer than the MIPs' (air outside the CT)."""
    direction = np.array(canonical.GetDirection(), dtype=float).reshape(3, 3)
    tilt = np.degrees(np.arccos(np.clip(np.abs(np.diag(direction)), 0.0, 1.0))).max()
    if tilt <= defaults.L3_MIP_ALIGN_TOLERANCE_DEG:
        return canonical
    corners = np.array([canonical.TransformIndexToPhysicalPoint([int(c) for c in corner])
                        for corner in itertools.product(*[(0, n - 1) for n in canonical.GetSize()])])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    spacing = np.maximum(np.array(canonical.GetSpacing()), defaults.L3_MIP_SPACING_MM)
    size = [int(n) for n in np.floor((hi - lo) / spacing + 1e-6) + 1]
    return sitk.Resample(canonical, size, sitk.Transform(), sitk.sitkLinear, lo.tolist(), spacing.tolist(),
                         np.eye(3).ravel().tolist(), float(defaults.AIR_HU), canonical.GetPixelID())


def compute_projections(image: sitk.Image, *, border_mm: float = defaults.L3_MIP_BORDER_MM,
                        slab_mm: float = defaults.L3_SAGITTAL_SLAB_MM,
                        spacing_mm: float = defaults.L3_MIP_SPACING_MM) -> Projections:
    """Frontal MIP (max over anterior-posterior) and sagittal MIP (max over a slab around the body's
    left-right centre), head-up, at `spacing_mm`, HU clipped and scaled to [0, 1]."""
    canonical = patient_aligned(canonical_image(image))
    volume = sitk.GetArrayViewFromImage(canonical)  # [k: inferior->superior, j: anterior->posterior, i: right->left]
    sx, sy, sz = canonical.GetSpacing()
    if border_mm > 0:
        bj, bi = int(round(border_mm / sy)), int(round(border_mm / sx))
        volume = volume[:, bj:volume.shape[1] - bj or None, bi:volume.shape[2] - bi or None]
    else:
        bi = 0
    centre = body_centre_column(volume)
    half = max(1, int(round(slab_mm / sx)))
    lo, hi = max(0, int(round(centre)) - half), min(volume.shape[2], int(round(centre)) + half + 1)
    frontal = volume.max(axis=1)[::-1]  # head up: row 0 = most superior slice
    sagittal = volume[:, :, lo:hi].max(axis=2)[::-1]
    frontal = resample_rows_cols(scale_hu(frontal), sz, sx, spacing_mm)
    sagittal = resample_rows_cols(scale_hu(sagittal), sz, sy, spacing_mm)
    return Projections(frontal=frontal, sagittal=sagittal, canonical=canonical, spacing_mm=spacing_mm,
                       centre_i=centre + bi)


def fit_to_input(mip: np.ndarray, cols: int = defaults.L3_INPUT_COLS, min_rows: int = defaults.L3_INPUT_MIN_ROWS,
                 row_multiple: int = defaults.L3_ROW_MULTIPLE) -> tuple[np.ndarray, int]:
    """Pad/crop a MIP to the network input: columns centred to `cols`, rows padded at the bottom
    (never cropped, so L3 cannot be cut away) to >= `min_rows` and a multiple of `row_multiple`.
    Returns the array and the column offset (input column = MIP column + offset)."""
    rows = max(min_rows, int(np.ceil(mip.shape[0] / row_multiple)) * row_multiple)
    out = np.zeros((rows, cols), dtype=np.float32)
    offset = (cols - mip.shape[1]) // 2
    src_lo, dst_lo = max(0, -offset), max(0, offset)
    width = min(mip.shape[1] - src_lo, cols - dst_lo)
    out[: mip.shape[0], dst_lo:dst_lo + width] = mip[:, src_lo:src_lo + width]
    return out, offset

"""From a confidence map to the L3 slice: MIP row <-> canonical slice <-> input grid and RAS point.

Row r of a head-up MIP (1-mm rows, row 0 = most superior slice) is canonical slice
k = (n_slices - 1) - r * mip_spacing / z_spacing (projections.resample_rows_cols puts output row 0 on
input row 0). The canonical grid is the input reoriented (resampled onto patient axes when oblique,
projections.patient_aligned); the point goes back to the input's own index through its physical
position, whatever the input's direction matrix.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from RibFracSegLib import defaults
from RibFracSegLib.geometry import lps_to_ras, superior_axis
from RibFracSegLib.l3.projections import Projections
from RibFracSegLib.masks import deepest_point


def band_columns(width: int, band: float = defaults.L3_TARGET_BAND, reference: int = defaults.L3_INPUT_COLS) -> slice:
    """The central columns where the spine is and where the target is learnt and read: `band` of the
    network input's width (`reference` columns, so a narrower training crop has the same band in mm)."""
    half = max(1, int(round(reference * band / 2)))
    return slice(max(0, width // 2 - half), min(width, width // 2 + half))


def row_profile(probability: np.ndarray, n_rows: int | None = None) -> np.ndarray:
    """Per-row confidence: mean probability over the central band, cut to the MIP's real rows."""
    profile = probability[:, band_columns(probability.shape[1])].mean(axis=1)
    return profile[: n_rows or len(profile)]


def peak(profile: np.ndarray) -> tuple[float, float]:
    """(sub-row position, value) of the profile's maximum; a parabola through the 3 rows refines it."""
    r = int(np.argmax(profile))
    value = float(profile[r])
    if 0 < r < len(profile) - 1:
        a, b, c = (float(v) for v in profile[r - 1:r + 2])
        denom = a - 2 * b + c
        if denom < 0:
            return r + 0.5 * (a - c) / denom, value
    return float(r), value


def row_to_k(proj: Projections, row: float) -> float:
    """Continuous canonical slice index of a MIP row."""
    return (proj.n_slices - 1) - row * proj.spacing_mm / proj.canonical.GetSpacing()[2]


def k_to_row(proj: Projections, k: float) -> float:
    return ((proj.n_slices - 1) - k) * proj.canonical.GetSpacing()[2] / proj.spacing_mm


def point_to_row(proj: Projections, point_lps: Sequence[float]) -> float:
    """MIP row of a physical point (e.g. the true L3 centre) - the training target."""
    index = proj.canonical.TransformPhysicalPointToContinuousIndex([float(v) for v in point_lps])
    return k_to_row(proj, index[2])


def vertebral_body_ij(proj: Projections, k: int, search_mm: float = 40.0) -> tuple[float, float]:
    """Canonical (i, j) of the vertebral body's centre on slice k: near the body's left-right centre,
    the deepest point of bone and marrow (holes filled) - the body is the thickest bone there; arches
    and processes are thin."""
    axial = sitk_slice(proj, k)
    sx, sy = proj.canonical.GetSpacing()[:2]
    bone = axial > defaults.L3_VERTEBRA_HU
    lo = max(0, int(proj.centre_i - search_mm / sx))
    hi = min(axial.shape[1], int(proj.centre_i + search_mm / sx) + 1)
    bone[:, :lo] = False
    bone[:, hi:] = False
    if not bone.any():
        return proj.centre_i, (axial.shape[0] - 1) / 2.0
    radius = max(1, int(round(2.0 / min(sx, sy))))
    filled = ndimage.binary_fill_holes(ndimage.binary_closing(bone, np.ones((2 * radius + 1,) * 2, bool)))
    j, i = deepest_point(filled, (sy, sx))
    return float(i), float(j)


def sitk_slice(proj: Projections, k: int) -> np.ndarray:
    """Axial slice k of the canonical volume as float HU, indexed [j, i]."""
    k = int(np.clip(k, 0, proj.n_slices - 1))
    return sitk.GetArrayViewFromImage(proj.canonical)[k].astype(np.float32)


def row_to_point(proj: Projections, image: sitk.Image, row: float) -> tuple[int, float, tuple, tuple]:
    """MIP row -> (slice index on the input grid, z in mm, centre LPS, centre RAS) at the vertebral body."""
    k = row_to_k(proj, row)
    i, j = vertebral_body_ij(proj, int(round(k)))
    lps = tuple(proj.canonical.TransformContinuousIndexToPhysicalPoint((i, j, float(k))))
    index = image.TransformPhysicalPointToContinuousIndex(lps)
    axis, _ = superior_axis(image)  # axis in [k, j, i] array order
    slice_index = int(np.clip(round(index[2 - axis]), 0, image.GetSize()[2 - axis] - 1))
    return slice_index, float(lps[2]), lps, lps_to_ras(lps)

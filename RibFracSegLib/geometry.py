"""Geometry helpers: LPS (ITK) <-> RAS (Slicer) and index <-> physical, always via SimpleITK.

ITK images live in LPS; Slicer and most radiology tools report RAS. RAS = diag(-1, -1, 1) * LPS.
Arrays from SimpleITK are indexed [k, j, i]; SimpleITK indices are (i, j, k).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def lps_to_ras(point: Sequence[float]) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in point)
    return (-x, -y, z)


ras_to_lps = lps_to_ras  # the flip is its own inverse


def index_to_lps(image: sitk.Image, index_ijk: Sequence[float]) -> tuple[float, float, float]:
    """Continuous (i, j, k) index -> LPS mm."""
    return tuple(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in index_ijk]))


def index_to_ras(image: sitk.Image, index_ijk: Sequence[float]) -> tuple[float, float, float]:
    return lps_to_ras(index_to_lps(image, index_ijk))


def lps_to_index(image: sitk.Image, point_lps: Sequence[float]) -> tuple[float, float, float]:
    """LPS mm -> continuous (i, j, k) index."""
    return tuple(image.TransformPhysicalPointToContinuousIndex([float(v) for v in point_lps]))


def ras_to_index(image: sitk.Image, point_ras: Sequence[float]) -> tuple[float, float, float]:
    return lps_to_index(image, ras_to_lps(point_ras))


def index_to_lps_affine(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(M, origin) with LPS = origin + M @ (i, j, k) for continuous indices of `image`: the one
    vectorised voxel -> LPS map (direction times spacing, then the origin) for code that maps many
    points at once; SimpleITK's per-point transforms are the reference it agrees with."""
    m = np.array(image.GetDirection(), dtype=float).reshape(3, 3) @ np.diag(np.array(image.GetSpacing(), float))
    return m, np.array(image.GetOrigin(), dtype=float)


def indices_to_lps(image: sitk.Image, ijk: np.ndarray) -> np.ndarray:
    """(..., 3) continuous (i, j, k) -> (..., 3) LPS mm."""
    m, origin = index_to_lps_affine(image)
    return origin + np.asarray(ijk, dtype=float) @ m.T


def lps_to_indices(image: sitk.Image, lps: np.ndarray) -> np.ndarray:
    """(..., 3) LPS mm -> (..., 3) continuous (i, j, k) (the inverse of `indices_to_lps`)."""
    m, origin = index_to_lps_affine(image)
    return (np.asarray(lps, dtype=float) - origin) @ np.linalg.inv(m).T


def ijk_to_ras_matrix(image: sitk.Image) -> np.ndarray:
    """4x4 IJK -> RAS matrix (what Slicer's SetIJKToRASMatrix wants)."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.array(image.GetSpacing(), dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ direction @ np.diag(spacing)
    matrix[:3, 3] = LPS_TO_RAS @ np.array(image.GetOrigin(), dtype=float)
    return matrix


def axis_codes(image: sitk.Image) -> str:
    """Three-letter ITK orientation code, e.g. 'LPS' for DICOM-like or 'RAS' for nibabel-like storage."""
    return sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(image.GetDirection())


def superior_axis(image: sitk.Image) -> tuple[int, int]:
    """(array axis in [k, j, i] order, sign) of the axis that runs most nearly head-wards."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    col = int(np.argmax(np.abs(direction[2, :])))  # index axis i/j/k with the largest S component
    sign = 1 if direction[2, col] > 0 else -1
    return 2 - col, sign


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def set_ras_geometry(image: sitk.Image, origin_ras: Sequence[float], spacing: Sequence[float],
                     direction_ras: np.ndarray) -> sitk.Image:
    """Give `image` a geometry stated in RAS (as a Slicer volume node keeps it); returns `image`.

    Slicer stores origin, spacing and unit IJK -> RAS direction columns; SimpleITK wants them in
    LPS. Spacing is passed through untouched (never recovered from a matrix) so it stays bit-exact.
    """
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (LPS_TO_RAS @ np.asarray(direction_ras, dtype=float)).ravel()])
    image.SetOrigin([float(v) for v in LPS_TO_RAS @ np.asarray(origin_ras, dtype=float)])
    return image


def distance_mm(mask: np.ndarray, spacing_zyx: Sequence[float]) -> np.ndarray:
    """For each True voxel, the distance in mm to the nearest False voxel (0 on False): scipy's
    `distance_transform_edt(mask, sampling=spacing)`, computed by SimpleITK's multi-threaded Maurer
    transform, 3-4x faster here (float32, within 1e-4 mm). An all-True mask is measured to just
    outside the array."""
    mask = np.asarray(mask, dtype=bool)
    if mask.all():
        return distance_mm(np.pad(mask, 1), spacing_zyx)[1:-1, 1:-1, 1:-1]
    background = sitk.GetImageFromArray((~mask).astype(np.uint8))
    background.SetSpacing(tuple(float(s) for s in reversed(tuple(spacing_zyx))))
    signed = sitk.SignedMaurerDistanceMap(background, insideIsPositive=False, squaredDistance=False,
                                          useImageSpacing=True)
    return np.maximum(sitk.GetArrayFromImage(signed), 0.0)

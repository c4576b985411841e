"""The phantom's voxel grid: where the scanner put it, how it is stored, and the canonical grid we
render on before storing it that way.

Flips and axis permutations (RAS-, LPS-, feet-first storage) are exact re-indexings of the
canonical grid; an oblique direction needs a resampling onto the tilted grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from RibFracSegLib.defaults import PHANTOM_ORIENTATIONS


@dataclass(frozen=True)
class Grid:
    size: tuple[int, int, int]  # (i, j, k)
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]  # LPS mm
    direction: tuple[float, ...]  # 9 values, row-major, ITK convention

    def reference(self, pixel=sitk.sitkUInt8) -> sitk.Image:
        img = sitk.Image([int(v) for v in self.size], pixel)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img

    def physical_to_index(self, point_lps) -> np.ndarray:
        """Continuous (i, j, k) of an LPS point, without allocating the image (direction is orthonormal)."""
        d = np.array(self.direction).reshape(3, 3)
        return d.T @ (np.asarray(point_lps, float) - np.array(self.origin)) / np.array(self.spacing)

    @property
    def is_axis_aligned(self) -> bool:
        d = np.abs(np.array(self.direction).reshape(3, 3))
        return bool(np.allclose(np.sort(d, axis=1), [[0, 0, 1]] * 3, atol=1e-9))

    def axes_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1-D LPS coordinates of an identity-direction grid's i, j and k axes."""
        assert np.allclose(self.direction, np.eye(3).ravel())
        return tuple(o + s * np.arange(n) for o, s, n in zip(self.origin, self.spacing, self.size))


def rotation(degrees: tuple[float, float, float]) -> np.ndarray:
    """Rotation about z, then y, then x (patient axes), in degrees."""
    az, ay, ax = np.deg2rad(degrees)
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    return rx @ ry @ rz


def stored_direction(orientation: str, oblique_deg: tuple[float, float, float]) -> np.ndarray:
    """Direction matrix for an orientation name: LPS (DICOM-like), RAS (nibabel-like), LPI (feet-first
    slice order), oblique (LPS tilted by `oblique_deg`)."""
    if orientation not in PHANTOM_ORIENTATIONS:
        raise ValueError(f"Unknown orientation {orientation!r}; choose one of {PHANTOM_ORIENTATIONS}.")
    return {"LPS": np.eye(3), "RAS": np.diag([-1.0, -1.0, 1.0]), "LPI": np.diag([1.0, 1.0, -1.0]),
            "oblique": rotation(oblique_deg)}[orientation]


def stored_grid(size, spacing, direction: np.ndarray, center_lps) -> Grid:
    """The grid with this size/spacing/direction whose centre voxel sits at `center_lps`."""
    half = direction @ (np.asarray(spacing) * (np.asarray(size) - 1) / 2.0)
    origin = np.asarray(center_lps, float) - half
    return Grid(tuple(int(v) for v in size), tuple(float(v) for v in spacing), tuple(origin.tolist()),
                tuple(direction.ravel().tolist()))


def canonical_grid(stored: Grid) -> Grid:
    """An identity-direction grid covering `stored`: the same voxels re-indexed when `stored` is
    axis-aligned, else the bounding box of its corners (plus a voxel) at the same spacing."""
    if stored.is_axis_aligned:
        ref = sitk.DICOMOrient(stored.reference(), "LPS")
        return Grid(ref.GetSize(), ref.GetSpacing(), ref.GetOrigin(), tuple(np.eye(3).ravel()))
    ref = stored.reference()
    n = np.array(stored.size) - 1
    corners = np.array([ref.TransformContinuousIndexToPhysicalPoint([float(c) for c in (a, b, c)])
                        for a in (0, n[0]) for b in (0, n[1]) for c in (0, n[2])])
    spacing = np.array(stored.spacing)
    lo = corners.min(axis=0) - spacing
    size = np.ceil((corners.max(axis=0) + spacing - lo) / spacing).astype(int) + 1
    return Grid(tuple(size.tolist()), tuple(spacing.tolist()), tuple(lo.tolist()), tuple(np.eye(3).ravel()))


def to_stored(image: sitk.Image, stored: Grid, labels: bool) -> sitk.Image:
    """Move a canonical-grid image onto the stored grid: exact re-indexing or resampling."""
    if stored.is_axis_aligned:
        code = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(stored.direction)
        out = sitk.DICOMOrient(image, code)
        # DICOMOrient re-derives the origin by arithmetic; pin it to the exact requested grid.
        out.SetOrigin(stored.origin)
        out.SetDirection(stored.direction)
        return out
    interp = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    return sitk.Resample(image, stored.reference(image.GetPixelID()), sitk.Transform(), interp, 0.0,
                         image.GetPixelID())

"""The CT's canonical (LPS) orientation, one axis choice for every pipeline (fractures, ribs, spine,
L3, training): a numpy view (transpose + flips, no copy) of the input array, so nothing is resampled
and every result maps back to the input grid exactly by the inverse permutation; or the same as a
SimpleITK copy for code that wants physical points. Beside geometry.py, which maps indices to mm.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class CanonicalVolume:
    """`array[k, j, i]` with i -> Left, j -> Posterior, k -> Superior (LPS storage) over the input's voxels."""

    array: np.ndarray  # view of the input voxels, canonical axis order
    spacing_zyx: tuple[float, float, float]  # mm along the canonical numpy axes
    axes: tuple[int, int, int]  # numpy axis of the input array feeding each canonical numpy axis
    flips: tuple[bool, bool, bool]  # canonical numpy axes flipped after transposing
    source: Optional[sitk.Image] = None  # the image whose buffer `array` views: held so the view stays valid

    def to_canonical(self, input_array: np.ndarray) -> np.ndarray:
        """Input-order array [k, j, i] -> canonical view (no copy)."""
        out = np.transpose(input_array, self.axes)
        return out[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]

    def to_input(self, canonical_array: np.ndarray) -> np.ndarray:
        """Canonical array -> input-order array [k, j, i] (a contiguous copy, ready for sitk)."""
        unflipped = canonical_array[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]
        return np.ascontiguousarray(np.transpose(unflipped, np.argsort(self.axes)))

    def index_to_input(self, index_zyx: np.ndarray) -> np.ndarray:
        """Canonical continuous indices (..., 3) in numpy order -> input (i, j, k) indices (..., 3)."""
        index_zyx = np.asarray(index_zyx, dtype=float)
        shape = np.array(self.array.shape, dtype=float)
        unflipped = np.where(self.flips, shape - 1 - index_zyx, index_zyx)
        input_kji = np.empty_like(unflipped)
        input_kji[..., list(self.axes)] = unflipped
        return input_kji[..., ::-1]


def canonical_volume(image: sitk.Image) -> CanonicalVolume:
    """Permute/flip the image's array view to LPS, choosing for oblique scans the closest axis assignment."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)  # rows L,P,S; columns i,j,k
    # best assignment of index axes (columns) to patient axes (rows): the permutation with largest |cosine| sum
    perm = max(itertools.permutations(range(3)), key=lambda p: sum(abs(direction[r, p[r]]) for r in range(3)))
    signs = [direction[r, perm[r]] < 0 for r in range(3)]  # patient row r runs against index axis perm[r]
    # canonical numpy axis n holds patient row 2 - n; input numpy axis of index axis a is 2 - a
    axes = tuple(2 - perm[2 - n] for n in range(3))
    flips = tuple(signs[2 - n] for n in range(3))
    spacing = image.GetSpacing()
    spacing_zyx = tuple(float(spacing[perm[2 - n]]) for n in range(3))
    view = sitk.GetArrayViewFromImage(image)
    vol = CanonicalVolume(array=view, spacing_zyx=spacing_zyx, axes=axes, flips=flips)
    return CanonicalVolume(array=vol.to_canonical(view), spacing_zyx=spacing_zyx, axes=axes, flips=flips, source=image)


def canonical_image(image: sitk.Image) -> sitk.Image:
    """The CT re-stored in LPS order (a copy; no resampling) with the axes `canonical_volume` picks.

    For code that wants a SimpleITK image (spacing, physical points) rather than a numpy view; one
    axis choice for both, so the fracture and L3 paths agree on oblique scans.
    """
    volume = canonical_volume(image)
    out = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    out.SetSpacing(volume.spacing_zyx[::-1])
    # canonical index axis n (i, j, k) runs along input index axis `index_axis[n]`, maybe reversed
    index_axis = [2 - volume.axes[2 - n] for n in range(3)]
    flipped = [volume.flips[2 - n] for n in range(3)]
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    columns = [direction[:, a] * (-1.0 if f else 1.0) for a, f in zip(index_axis, flipped)]
    out.SetDirection(np.stack(columns, axis=1).ravel().tolist())
    corner = volume.index_to_input(np.zeros(3))
    out.SetOrigin(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in corner]))
    return out

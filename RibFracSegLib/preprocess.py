"""Pre-processing for the fracture network: HU windowing, and where bone could be (the CT's
canonical view, which every pipeline shares, lives in orientation.py)."""

from __future__ import annotations


from typing import Sequence

import numpy as np
from scipy import ndimage

from . import defaults


def normalise(hu, hu_window: tuple[float, float]):
    """Clip to the window and map linearly to [-1, 1] (FracNet), in float32. A numpy array gives an
    array; a torch tensor (augmented on its device in training) a tensor: one formula for both."""
    lo, hi = float(hu_window[0]), float(hu_window[1])
    if not isinstance(hu, np.ndarray) and hasattr(hu, "clamp"):  # torch, without importing it here
        return (hu.float().clamp(lo, hi) - lo) * (2.0 / (hi - lo)) - 1.0
    out = np.clip(hu, lo, hi).astype(np.float32, copy=False)
    out -= lo
    out *= np.float32(2.0 / (hi - lo))
    out -= np.float32(1.0)
    return out


def block_any(mask: np.ndarray, cell: int | Sequence[int] = defaults.SKIP_CELL_VOXELS) -> np.ndarray:
    """Boolean grid of blocks (`cell` voxels a side, or per axis) holding any true voxel of `mask`
    (the last blocks padded). Reduced one axis at a time, outermost first: each step reads
    contiguous memory (7x faster than one reduction over three strided axes)."""
    cells = (int(cell),) * 3 if np.isscalar(cell) else tuple(int(c) for c in cell)
    padded = [int(np.ceil(s / c)) * c for s, c in zip(mask.shape, cells)]
    if list(mask.shape) != padded:
        mask = np.pad(mask, [(0, p - s) for p, s in zip(padded, mask.shape)])
    n = [p // c for p, c in zip(padded, cells)]
    x = np.ascontiguousarray(mask).reshape(n[0], cells[0], padded[1], padded[2]).any(axis=1)
    x = x.reshape(n[0], n[1], cells[1], padded[2]).any(axis=2)
    return x.reshape(n[0], n[1], n[2], cells[2]).any(axis=3)


def bone_cells(array: np.ndarray, bone_hu: float, cell: int = defaults.SKIP_CELL_VOXELS,
               body_hu: float = defaults.BODY_HU) -> np.ndarray:
    """Boolean grid of `cell`^3 blocks holding a voxel above `bone_hu` inside the body.

    The body is the largest connected region above `body_hu` on the block grid (dilated by one
    block), which drops the table and bright objects outside the patient; block granularity only
    ever keeps more, so a patch that touches bone is never judged empty.
    """
    bone = block_any(array > bone_hu, cell)
    tissue = block_any(array > body_hu, cell)
    labels, n = ndimage.label(tissue)
    if n == 0:
        return np.zeros_like(bone)
    sizes = np.bincount(labels.ravel())[1:]
    body = ndimage.binary_dilation(labels == 1 + int(np.argmax(sizes)), iterations=1)
    return bone & body


def patch_batch(array: np.ndarray, boxes: Sequence[tuple[slice, ...]], patch_size: Sequence[int],
                hu_window: Sequence[float]) -> np.ndarray:
    """Normalised float32 patches of `array` (HU) at `boxes`, padded with the window floor (air) where
    a box is smaller than `patch_size` (the CT's edge, a rib frame shorter than a window)."""
    batch = np.full((len(boxes),) + tuple(patch_size), -1.0, dtype=np.float32)
    for n, box in enumerate(boxes):
        batch[(n,) + tuple(slice(0, b.stop - b.start) for b in box)] = normalise(array[box], hu_window)
    return batch

"""Sliding window: a sampler (where patches go, which to skip) and an aggregator (weighted blending).

Patch placement and Gaussian weights follow MONAI/nnU-Net (stride = patch x (1 - overlap), last
patch flush with the edge; weights normalised by their sum, never "later patch wins"), so the
blend is comparable voxel for voxel. The aggregator accumulates in float32 straight into the output
and keeps the weight sum only for the slab of slices still open, so memory is one output volume
plus one patch-deep slab.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

from . import defaults

Box = tuple[slice, slice, slice]


def axis_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Patch starts along one axis: every `stride` voxels, the last one flush with the end."""
    if size <= patch:
        return [0]
    stride = max(1, int(patch * (1.0 - overlap)))
    n = int(np.ceil((size - patch) / stride)) + 1
    return sorted({min(i * stride, size - patch) for i in range(n)})


@dataclass(frozen=True)
class PatchGrid:
    shape: tuple[int, int, int]
    patch_size: tuple[int, int, int]
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    @classmethod
    def build(cls, shape: Sequence[int], patch_size: Sequence[int], overlap: float) -> "PatchGrid":
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        starts = tuple(tuple(axis_starts(s, p, overlap)) for s, p in zip(shape, patch_size))
        return cls(tuple(int(s) for s in shape), tuple(int(p) for p in patch_size), starts)

    def __len__(self) -> int:
        return int(np.prod([len(s) for s in self.starts]))

    def boxes(self) -> Iterator[Box]:
        """All patch boxes, slowest along axis 0, so the aggregator can close slabs in order."""
        for origin in itertools.product(*self.starts):
            yield tuple(slice(o, min(o + p, s)) for o, p, s in zip(origin, self.patch_size, self.shape))


def blend_groups(boxes: Sequence[Box]) -> list[tuple[Box, list[Box]]]:
    """`boxes` (in their order) split into groups that overlap one another, each with the box it spans:
    scattered patches (the rib-frame fallback's) then blend on their own small region, where one
    aggregator over the whole volume would divide and shift the plane between them (about 0.2 s a
    patch on a 512 x 512 CT). A voxel's patches all overlap at it, so the blend is the same."""
    if len(boxes) < 2:  # a lone patch is its own region
        return [(tuple(boxes[0]), list(boxes))] if boxes else []
    from scipy.sparse.csgraph import connected_components

    lo = np.array([[b.start for b in box] for box in boxes])
    hi = np.array([[b.stop for b in box] for box in boxes])
    touch = np.all((lo[:, None] < hi[None]) & (lo[None] < hi[:, None]), axis=2)
    n, label = connected_components(touch, directed=False)  # labelled in order of each group's first box
    groups = []
    for k in range(n):
        members = np.flatnonzero(label == k)
        region = tuple(slice(int(lo[members, a].min()), int(hi[members, a].max())) for a in range(3))
        groups.append((region, [boxes[i] for i in members]))
    return groups


def shifted(box: Box, region: Box) -> Box:
    """`box` in the coordinates of `region` (which holds it)."""
    return tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(box, region))


def keep_mask(grid: PatchGrid, cells: Optional[np.ndarray], cell: int = defaults.SKIP_CELL_VOXELS) -> list[bool]:
    """For each box of `grid.boxes()`: does it touch a cell that may hold a fracture? (None keeps all.)"""
    if cells is None:
        return [True] * len(grid)
    keep = []
    for box in grid.boxes():
        coarse = tuple(slice(b.start // cell, -(-b.stop // cell)) for b in box)
        keep.append(bool(cells[coarse].any()))
    return keep


def covered_voxels(grid: PatchGrid, keep: Sequence[bool]) -> np.ndarray:
    """Voxels some kept patch covers (the others get no prediction): what skipping leaves unexamined."""
    covered = np.zeros(grid.shape, dtype=bool)
    for box, kept in zip(grid.boxes(), keep):
        if kept:
            covered[box] = True
    return covered


def importance_map(patch_size: Sequence[int], mode: str = "gaussian",
                   sigma_scale: float = defaults.GAUSSIAN_SIGMA_SCALE,
                   floor: float = defaults.BLEND_WEIGHT_FLOOR) -> np.ndarray:
    """Blending weights for one patch: a centred Gaussian (sigma = scale x size) or ones, float32."""
    if mode == "constant":
        return np.ones(tuple(patch_size), dtype=np.float32)
    if mode != "gaussian":
        raise ValueError(f"blending mode must be 'gaussian' or 'constant', got {mode!r}")
    weights = np.ones((), dtype=np.float32)
    for size in patch_size:
        x = np.arange(size, dtype=np.float32) - np.float32((size - 1) / 2.0)
        g = np.exp(-(x ** 2) / np.float32(2.0 * (size * sigma_scale) ** 2)).astype(np.float32)
        weights = np.multiply.outer(weights, g)
    return np.maximum(weights, max(float(weights.min()), floor)).astype(np.float32)


class SlabAggregator:
    """Weighted mean of patch predictions; patches must arrive with non-decreasing axis-0 start.

    The output volume accumulates the weighted sum in place; the weight sum lives in a slab as deep
    as one patch. When a patch starts further along axis 0, the slices before it can receive no more
    contributions and are divided by their weight sum (voxels no computed patch covered stay 0).
    Closing and shifting visit only the slab's rows and columns patches have reached since it was
    last empty: a few scattered patches (the rib-frame fallback's) cost what they cover, not whole slices.
    """

    def __init__(self, shape: Sequence[int], weights: np.ndarray, output: Optional[np.ndarray] = None) -> None:
        """`output`, if given, is a zeroed float32 array (or view) of `shape` to accumulate into."""
        self.output = np.zeros(tuple(shape), dtype=np.float32) if output is None else output
        self.weights = weights
        depth = min(weights.shape[0], shape[0])
        self._wsum = np.zeros((depth,) + tuple(shape[1:]), dtype=np.float32)
        self._base = 0  # first slice not yet finalised
        self._reach: Optional[list[int]] = None  # [y0, y1, x0, x1] patches reached since the slab was empty

    def _close_until(self, stop: int) -> None:
        """Finalise slices [base, stop). Only the slab's slices can hold contributions: when `stop`
        lies more than a slab beyond `base` (a long run of skipped patches), the rest stay 0."""
        n = stop - self._base
        if n <= 0:
            return
        self._base, base = stop, self._base
        if self._reach is None:
            return
        k = min(n, self._wsum.shape[0])
        rows, cols = slice(*self._reach[:2]), slice(*self._reach[2:])
        wsum = self._wsum[:, rows, cols]
        out = self.output[base:base + k, rows, cols]
        np.divide(out, wsum[:k], out=out, where=wsum[:k] > 0)
        if k == len(wsum):
            wsum[:] = 0
            self._reach = None
        else:
            wsum[:-k] = wsum[k:].copy()
            wsum[-k:] = 0

    def add(self, box: Box, prediction: np.ndarray) -> None:
        """Add one patch prediction (float32, the box's shape) with the blending weights."""
        if box[0].start < self._base:
            raise ValueError("patches must be added in order of their axis-0 start")
        self._close_until(box[0].start)
        w = self.weights[tuple(slice(0, b.stop - b.start) for b in box)]
        self.output[box] += prediction * w
        local = (slice(box[0].start - self._base, box[0].stop - self._base), box[1], box[2])
        self._wsum[local] += w
        reach = [box[1].start, box[1].stop, box[2].start, box[2].stop]
        self._reach = reach if self._reach is None else [min(self._reach[0], reach[0]), max(self._reach[1], reach[1]),
                                                         min(self._reach[2], reach[2]), max(self._reach[3], reach[3])]

    def finish(self) -> np.ndarray:
        self._close_until(self.output.shape[0])
        return self.output

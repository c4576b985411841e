"""Few sliding-window patches for scattered voxels: the rib-frame fallback's windows (`frame_inference`).

The fallback examines bone no rib frame reaches: on a real chest CT a few hundred mm^3 in pieces
scattered over the cage (rib heads just past their frame's start, bone labelled rib beyond the
cross-section). The overlapped grid computes every patch touching such a voxel, up to 8 per voxel
at overlap 0.5 (90-107 patches on LIDC-IDRI-0001 / -0314). `cover_windows` instead places windows
greedily so that every voxel lies in some window's core: `margin` voxels or more from its faces
(except at the volume's edge), the context a 0.5-overlap grid guarantees with margin = patch / 4.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import defaults
from .sliding_window import Box


def _inside(points: np.ndarray, starts: np.ndarray, size: int, patch: int, margin: int) -> np.ndarray:
    """(n, m) bool: points (n,) in the core of windows starting at `starts` (m,) along one axis of
    `size` voxels; a window flush with the volume's edge has no margin on that side."""
    p, s = points[:, None], starts[None, :]
    lo = np.where(s <= 0, s, s + margin)
    hi = np.where(s + patch >= size, s + patch, s + patch - margin)
    return (p >= lo) & (p < hi)


def _starts(lo: int, hi: int, size: int, patch: int, margin: int) -> np.ndarray:
    """Window starts along one axis (clamped to the volume) whose core holds `lo` to `hi`."""
    last = max(0, size - patch)
    candidates = np.arange(max(0, hi - patch + 1), min(lo, last) + 1)
    ends = np.array([lo, hi])
    return candidates[_inside(ends, candidates, size, patch, margin).all(axis=0)]


def _held(lo: np.ndarray, hi: np.ndarray, starts: np.ndarray, size: int, patch: int, margin: int) -> np.ndarray:
    """(n, m) bool: groups spanning `lo` to `hi` (n,) along one axis inside the core of windows at `starts`."""
    return _inside(lo, starts, size, patch, margin) & _inside(hi, starts, size, patch, margin)


def cover_windows(points: np.ndarray, shape: Sequence[int], patch_size: Sequence[int], margin: int,
                  cell: int = defaults.SKIP_CELL_VOXELS) -> list[Box]:
    """Windows (`patch_size`, clamped to `shape`) whose cores together hold every point (rows of
    indices): greedy, from the lowest first-axis point still uncovered, whose first-axis core edge
    the window starts at; across, the starts (still holding that point) that cover the most
    remaining points. Points go in groups of a `cell`-voxel block (the box of a block's points is held
    whole or not at all), so a whole CT's bone (an incomplete rib set: ~500 k voxels) costs about a
    second. Never more windows than groups; on clustered points far fewer than a grid."""
    pts = np.asarray(points, np.int64).reshape(-1, 3)
    if not len(pts):
        return []
    size, patch = [int(s) for s in shape], [min(int(p), int(s)) for p, s in zip(patch_size, shape)]
    margins = [min(int(margin), (p - 1) // 2) for p in patch]
    cell = max(1, min([int(cell)] + [p - 2 * m for p, m in zip(patch, margins)]))  # a group fits in every core
    _, group = np.unique(pts // cell, axis=0, return_inverse=True)
    group = group.ravel()
    lo = np.full((group.max() + 1, 3), np.iinfo(np.int64).max)
    hi = np.full_like(lo, -1)
    np.minimum.at(lo, group, pts)
    np.maximum.at(hi, group, pts)
    order = np.argsort(lo[:, 0], kind="stable")
    lo, hi = lo[order], hi[order]
    left = np.ones(len(lo), bool)
    boxes: list[Box] = []
    a = 0
    while a < len(lo):
        if not left[a]:  # the lowest first-axis group still uncovered: groups before it all are
            a += 1
            continue
        s0 = _starts(int(lo[a, 0]), int(hi[a, 0]), size[0], patch[0], margins[0])[-1]  # it at the core's low edge
        rest = a + np.flatnonzero(left[a:np.searchsorted(lo[:, 0], s0 + patch[0], "left")])
        rest = rest[_held(lo[rest, 0], hi[rest, 0], np.array([s0]), size[0], patch[0], margins[0])[:, 0]
                    & np.all(np.abs(lo[rest, 1:] - lo[a, 1:]) < patch[1:], axis=1)]  # others cannot share its window
        across = []
        for axis in (1, 2):
            starts = _starts(int(lo[a, axis]), int(hi[a, axis]), size[axis], patch[axis], margins[axis])
            across.append((starts, _held(lo[rest, axis], hi[rest, axis], starts, size[axis], patch[axis],
                                         margins[axis]).astype(np.float32)))
        (s1, in1), (s2, in2) = across
        best = np.unravel_index(np.argmax(in1.T @ in2), (len(s1), len(s2)))
        left[rest[(in1[:, best[0]] > 0) & (in2[:, best[1]] > 0)]] = False
        boxes.append(tuple(slice(s, s + p) for s, p in zip((int(s0), int(s1[best[0]]), int(s2[best[1]])), patch)))
    return boxes


def in_cores(points: np.ndarray, boxes: Sequence[Box], shape: Sequence[int], margin: int) -> np.ndarray:
    """(n,) bool: which points lie in the core of some box (as `cover_windows` places them)."""
    pts = np.asarray(points, np.int64).reshape(-1, 3)
    held = np.zeros(len(pts), bool)
    for box in boxes:
        inside = np.ones(len(pts), bool)
        for axis, b in enumerate(box):
            patch = b.stop - b.start
            inside &= _inside(pts[:, axis], np.array([b.start]), int(shape[axis]), patch,
                              min(int(margin), (patch - 1) // 2))[:, 0]
        held |= inside
    return held

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

from .sliding_window import Box


def _inside(points: np.ndarray, starts: np.ndarray, size: int, patch: int, margin: int) -> np.ndarray:
    """(n, m) bool: points (n,) in the core of windows starting at `starts` (m,) along one axis of
    `size` voxels; a window flush with the volume's edge has no margin on that side."""
    p, s = points[:, None], starts[None, :]
    lo = np.where(s <= 0, s, s + margin)
    hi = np.where(s + patch >= size, s + patch, s + patch - margin)
    return (p >= lo) & (p < hi)


def _starts(anchor: int, size: int, patch: int, margin: int) -> np.ndarray:
    """Window starts along one axis (clamped to the volume) whose core holds `anchor`."""
    last = max(0, size - patch)
    candidates = np.arange(max(0, anchor - patch + 1), min(anchor, last) + 1)
    return candidates[_inside(np.array([anchor]), candidates, size, patch, margin)[0]]


def cover_windows(points: np.ndarray, shape: Sequence[int], patch_size: Sequence[int], margin: int) -> list[Box]:
    """Windows (`patch_size`, clamped to `shape`) whose cores together hold every point (rows of
    indices): greedy, from the lowest first-axis point still uncovered, whose first-axis core edge
    the window starts at; across, the starts (still holding that point) that cover the most
    remaining points. Never more windows than points; on clustered points far fewer than a grid."""
    pts = np.unique(np.asarray(points, np.int64).reshape(-1, 3), axis=0)  # sorted by the first axis
    size, patch = [int(s) for s in shape], [min(int(p), int(s)) for p, s in zip(patch_size, shape)]
    margins = [min(int(margin), (p - 1) // 2) for p in patch]
    left = np.ones(len(pts), bool)
    boxes: list[Box] = []
    while left.any():
        anchor = pts[np.argmax(left)]
        s0 = _starts(int(anchor[0]), size[0], patch[0], margins[0])[-1]  # lowest remaining row at the core's low edge
        rest = np.flatnonzero(left)
        rest = rest[_inside(pts[rest, 0], np.array([s0]), size[0], patch[0], margins[0])[:, 0]]
        s1 = _starts(int(anchor[1]), size[1], patch[1], margins[1])
        s2 = _starts(int(anchor[2]), size[2], patch[2], margins[2])
        in1 = _inside(pts[rest, 1], s1, size[1], patch[1], margins[1]).astype(np.float32)
        in2 = _inside(pts[rest, 2], s2, size[2], patch[2], margins[2]).astype(np.float32)
        best = np.unravel_index(np.argmax(in1.T @ in2), (len(s1), len(s2)))
        starts = (int(s0), int(s1[best[0]]), int(s2[best[1]]))
        held = rest[(in1[:, best[0]] > 0) & (in2[:, best[1]] > 0)]
        left[held] = False
        boxes.append(tuple(slice(s, s + p) for s, p in zip(starts, patch)))
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

"""Post-processing of the probability map into fracture instances (FracNet's steps, in mm).

Works on canonical (LPS) arrays, so "cranio-caudal" is always axis 0 and the spine is found from
the image, never from fixed rows; every size is in millimetres so it behaves the same at any spacing.
Each step can be switched off; the result is a canonical instance-label array plus per-component stats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage
from skimage.morphology import convex_hull_image

from . import defaults
from .masks import slabs


@dataclass(frozen=True)
class PostprocessParams:
    probability: float = defaults.PROB_THRESHOLD  # zero probabilities at or below
    remove_spine: bool = True
    bone_hu: float = defaults.BONE_HU
    spine_median_mm: float = defaults.SPINE_MEDIAN_MM
    spine_disk_mm: float = defaults.SPINE_DISK_MM
    spine_keep_fraction: float = defaults.SPINE_KEEP_FRACTION
    spine_margin_mm: float = defaults.SPINE_MARGIN_MM
    remove_small: bool = True
    min_volume_mm3: float = defaults.MIN_FRACTURE_VOLUME_MM3
    min_confidence: float = defaults.MIN_CONFIDENCE  # a detection's mean probability must reach this
    on_rib: bool = defaults.ON_RIB_FILTER  # keep only detections touching the ribs grown by rib_margin_mm
    rib_margin_mm: float = defaults.ON_RIB_MARGIN_MM


@dataclass(frozen=True)
class Component:
    """One fracture in canonical numpy indices (k, j, i)."""

    label: int
    voxel_count: int
    mean_probability: float
    centroid_zyx: tuple[float, float, float]
    bbox_zyx: tuple[tuple[int, int, int], tuple[int, int, int]]  # inclusive min, inclusive max
    peak_probability: float = 0.0  # its highest probability (a rib-frame detection's confidence)


def _ellipse(radius_mm: float, spacing_yx: tuple[float, float]) -> np.ndarray:
    ry, rx = (max(1, int(round(radius_mm / s))) for s in spacing_yx)
    y, x = np.ogrid[-ry:ry + 1, -rx:rx + 1]
    return (y / ry) ** 2 + (x / rx) ** 2 <= 1.0


def spine_mask(hu: np.ndarray, spacing_zyx: tuple[float, float, float], params: PostprocessParams) -> np.ndarray:
    """2-D (j, i) mask of the spine's axial footprint: where bone piles up along the body axis."""
    spacing_yx = (spacing_zyx[1], spacing_zyx[2])
    projection = sum(((hu[part] > params.bone_hu).sum(axis=0, dtype=np.int32) for part in slabs(len(hu), hu[0].size)),
                     np.zeros(hu.shape[1:], np.int32)).astype(np.float32)  # a slab at a time: no full-volume mask
    size = tuple(max(1, int(round(params.spine_median_mm / s))) for s in spacing_yx)
    projection = ndimage.median_filter(projection, size=size)
    if projection.max() <= 0:  # no bone in view (FracNet crashed here)
        return np.zeros(projection.shape, dtype=bool)
    mask = projection > projection.max() * params.spine_keep_fraction
    disk = _ellipse(params.spine_disk_mm, spacing_yx)
    mask = ndimage.binary_closing(ndimage.binary_opening(mask, disk), disk)
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    mask = convex_hull_image(labels == 1 + int(np.argmax(sizes)))
    if params.spine_margin_mm > 0:
        mask = ndimage.binary_dilation(mask, _ellipse(params.spine_margin_mm, spacing_yx))
    return mask


def spine_column(hu: np.ndarray, spacing_zyx: tuple[float, float, float]
                 ) -> tuple[tuple[float, float], tuple[int, int]]:
    """(y, x) centre and z range of the spinal column in canonical voxels: the vertebral bodies that the
    rib step and the vertebral count follow (`ribs.anatomy.spine_track`, one spine finder), mapped from
    its working grid back to `hu`'s.

    Training samples spine negatives around it; with no vertebra found the centre of the slice is
    returned over all slices.
    """
    from .ribs.anatomy import body_mask, bone_mask, spine_track, working_grid

    grid = working_grid(hu, spacing_zyx)
    body = body_mask(grid.hu)
    track = spine_track(bone_mask(grid.hu, body, grid.spacing_zyx), body, grid.spacing_zyx)
    seen = np.flatnonzero(track.seen)
    if seen.size == 0:
        return ((hu.shape[1] - 1) / 2, (hu.shape[2] - 1) / 2), (0, hu.shape[0] - 1)
    fz, fy, fx = grid.factors  # working voxel w covers input voxels w*f .. w*f + f - 1
    centre = (float(np.median(track.y[seen])) * fy + (fy - 1) / 2, float(np.median(track.x[seen])) * fx + (fx - 1) / 2)
    return centre, (int(seen[0]) * fz, min(hu.shape[0] - 1, int(seen[-1]) * fz + fz - 1))


def _foreground_box(mask: np.ndarray) -> Optional[tuple[slice, slice, slice]]:
    box = []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def find_fractures(probability: np.ndarray, hu: np.ndarray, spacing_zyx: tuple[float, float, float],
                   params: PostprocessParams, labels_out: np.ndarray,
                   near_ribs: Optional[np.ndarray] = None) -> list[Component]:
    """Threshold, drop the spine, small objects and (given `near_ribs`) those off the ribs; label
    26-connected components into `labels_out`.

    `labels_out` is a zeroed integer array (possibly a view of the input-grid array) of the
    canonical shape; components are numbered 1..n in canonical raster order.
    """
    foreground = probability > params.probability
    if params.remove_spine:
        foreground &= ~spine_mask(hu, spacing_zyx, params)[None, :, :]
    box = _foreground_box(foreground)
    if box is None:
        return []
    fg, prob = foreground[box], probability[box]
    labels = _label(fg)
    n = int(labels.max())
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    keep = np.arange(1, n + 1)
    if params.remove_small:
        keep = keep[counts[1:] * float(np.prod(spacing_zyx)) >= params.min_volume_mm3]
    if params.min_confidence > 0 and keep.size:
        mean_prob = np.asarray(ndimage.mean(prob, labels, keep))
        keep = keep[mean_prob >= params.min_confidence]
    if near_ribs is not None and keep.size:
        on_rib = np.asarray(ndimage.maximum(near_ribs[box], labels, keep)) > 0
        keep = keep[on_rib]
    relabel = np.zeros(n + 1, dtype=labels_out.dtype)
    relabel[keep] = np.arange(1, keep.size + 1)
    for part in slabs(len(labels), labels[0].size):  # a slab at a time: no second labels-sized array
        labels_out[box][part] = relabel[labels[part]]
    del labels
    labels = labels_out[box]
    offset = np.array([b.start for b in box])
    components = []
    for label, slices in enumerate(ndimage.find_objects(labels), start=1):
        mask = labels[slices] == label
        values = prob[slices][mask]
        components.append(Component(label, int(mask.sum()), float(values.mean()),
                                    tuple(float(c) for c in _centroid(mask) + offset + [s.start for s in slices]),
                                    (tuple(int(s.start + o) for s, o in zip(slices, offset)),
                                     tuple(int(s.stop - 1 + o) for s, o in zip(slices, offset))),
                                    float(values.max())))
    return components


def _label(mask: np.ndarray) -> np.ndarray:
    """26-connected components, in uint16 when they fit (half the memory of scipy's default int32)."""
    structure = np.ones((3, 3, 3), dtype=bool)
    try:
        out = np.empty(mask.shape, dtype=np.uint16)
        ndimage.label(mask, structure=structure, output=out)
    except RuntimeError:  # more than 65535 raw components
        out, _ = ndimage.label(mask, structure=structure)
    return out


def _centroid(mask: np.ndarray) -> np.ndarray:
    """Mean voxel index of a boolean crop, from its axis profiles (no per-voxel index arrays)."""
    total = mask.sum()
    return np.array([(np.arange(mask.shape[a]) * mask.sum(axis=tuple(b for b in range(3) if b != a))).sum() / total
                     for a in range(3)])

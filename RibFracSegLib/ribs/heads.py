"""`rib_heads(image) -> RibHeads`: every rib's number and where its head meets the column, without
segmenting the ribs - what the vertebral count needs, in a fraction of `segment_ribs`'s time.

The rib step's own rules, on a box that follows the spine (the working-grid rows and columns within
RIB_HEAD_BOX_MM of the spine track, moved in steps along the column): rib-cage bone (`cage.cage_bone`), one seed per
rib in the paravertebral band (`cage.rib_seeds`), seeds grown through the cage (`cage.partition`),
kept when they reach RIB_MIN_REACH_MM from the spine like a rib (lumbar transverse processes don't),
numbered by height (`numbering.number_ribs`). The box is all the count needs: heads, necks and the
posterior arcs; the whole-CT distance transforms of `segment_ribs` are what makes it slow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import defaults
from ..geometry import distance_mm
from .anatomy import ColumnLandmarks, SpineTrack, column_landmarks, lung_extent, lung_mask, too_coarse_for_ribs
from .cage import cage_bone, partition, rib_seeds
from .numbering import RibRegion, number_ribs


@dataclass
class RibHead:
    """One rib as the count sees it: side, number (None = unnumbered) and its head (LPS mm)."""

    side: str
    number: Optional[int]
    head_lps: np.ndarray  # (3,) the medial end of the rib beside the vertebral body


@dataclass
class RibHeads:
    """A CT's numbered rib heads, from `rib_heads` or read off a full `segment_ribs` result."""

    heads: list[RibHead]
    numbering: str = "none"  # "rib 1", "rib 12", both, or "none"
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_ribs(cls, ribs) -> "RibHeads":
        """The heads of a `RibLabels` (each centreline starts at the head)."""
        return cls([RibHead(r.side, r.number, np.asarray(r.centreline_lps[0], float))
                    for r in ribs.ribs if len(r.centreline_lps)], ribs.numbering, list(ribs.notes))


def _shifts(track: SpineTrack, slice_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Per slice, where the box is centred (rows, columns): the track's median over blocks of
    RIB_HEAD_BLOCK_MM, so the box follows a curved column in a few steps. Shifting every slice would
    slide neighbouring slices against each other and join or part touching ribs."""
    n = max(1, int(round(defaults.RIB_HEAD_BLOCK_MM / slice_mm)))
    block = np.arange(len(track.y)) // n
    ys = np.array([np.median(track.y[block == b]) for b in block])
    xs = np.array([np.median(track.x[block == b]) for b in block])
    return np.rint(ys).astype(int), np.rint(xs).astype(int)


def _box(centre: tuple[np.ndarray, np.ndarray], shape, spacing_zyx, margin_mm: float = 0.0
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Per-slice row and column indices of the box around `centre` (clipped), grown by `margin_mm` on
    every side, whether each lies inside the grid, and the centre's place in the box."""
    (front, back), half = defaults.RIB_HEAD_BOX_Y_MM, defaults.RIB_HEAD_BOX_MM
    front, back, half = front + margin_mm, back + margin_mm, half + margin_mm
    dy = np.arange(-int(round(front / spacing_zyx[1])), int(round(back / spacing_zyx[1])) + 1)
    dx = np.arange(-int(round(half / spacing_zyx[2])), int(round(half / spacing_zyx[2])) + 1)
    rows = centre[0][:, None] + dy[None, :]
    cols = centre[1][:, None] + dx[None, :]
    inside = (((rows >= 0) & (rows < shape[1]))[:, :, None] & ((cols >= 0) & (cols < shape[2]))[:, None, :])
    return np.clip(rows, 0, shape[1] - 1), np.clip(cols, 0, shape[2] - 1), inside, (int(-dy[0]), int(-dx[0]))


def rib_heads(image: sitk.Image, landmarks: Optional[ColumnLandmarks] = None) -> RibHeads:
    """Numbered rib heads of a CT (HU); `landmarks` its `column_landmarks` when at hand."""
    t0 = time.perf_counter()
    marks = landmarks if landmarks is not None else column_landmarks(image)
    grid, sp, track = marks.grid, marks.grid.spacing_zyx, marks.track
    coarse = too_coarse_for_ribs(marks.canon.spacing_zyx)
    if coarse:
        return RibHeads([], notes=[coarse])
    lungs_full = lung_mask(grid.hu, marks.body, sp)
    extent = lung_extent(lungs_full, sp)
    z = np.arange(grid.hu.shape[0])[:, None, None]

    centre = _shifts(track, sp[0])

    def crop(volume: np.ndarray, margin_mm: float = 0.0) -> np.ndarray:
        rows, cols, inside, _ = _box(centre, grid.hu.shape, sp, margin_mm)
        return volume[z, rows[:, :, None], cols[:, None, :]] & inside

    _, _, _, (cy, cx) = _box(centre, grid.hu.shape, sp)
    bone, body = crop(marks.bone), crop(marks.body)
    for frame in (bone, body):  # bone cut by the box's side must not look thick to the distance transforms
        frame[:, [0, -1], :] = False
        frame[:, :, [0, -1]] = False
    boxed = SpineTrack(x=track.x - centre[1] + cx, y=track.y - centre[0] + cy, seen=track.seen)
    lung_distance = None
    if lungs_full.any():  # exact up to the margin, all the cage rules ask (is bone within that of a lung?)
        margin = defaults.RIB_MAX_LUNG_DISTANCE_MM + 2 * max(sp[1], sp[2])
        wide = distance_mm(~crop(lungs_full, margin), sp)
        my, mx = [(w - n) // 2 for w, n in zip(wide.shape[1:], bone.shape[1:])]
        lung_distance = wide[:, my:my + bone.shape[1], mx:mx + bone.shape[2]]
    cage = cage_bone(bone, body, lung_distance, extent, boxed, sp)
    markers, seeds = rib_seeds(cage, boxed, sp)
    regions_img = partition(cage, markers, sp)
    timings = {"box": time.perf_counter() - t0}
    regions, heads = [], {}
    objects = ndimage.find_objects(regions_img)
    for seed in seeds:
        box = objects[seed.label - 1] if seed.label - 1 < len(objects) else None
        if box is None:
            continue
        zz, yy, xx = np.nonzero(regions_img[box] == seed.label)
        zz, yy, xx = zz + box[0].start, yy + box[1].start, xx + box[2].start
        lateral = np.abs(xx - boxed.x[zz]) * sp[2]
        span = (zz.max() - zz.min()) * sp[0]
        # a rib reaches out like a rib, or (ribs 11-12, which fall steeply beside the lumbar column and
        # meet contrast-lit kidneys and bowel in the box) falls through a rib's height beside it;
        # transverse processes do neither
        reach = defaults.RIB_STEEP_REACH_MM if span >= defaults.RIB_STEEP_SPAN_MM else defaults.RIB_MIN_REACH_MM
        if (lateral.max() < reach or span < defaults.RIB_HEAD_MIN_SPAN_MM
                or zz.size * np.prod(sp) < defaults.RIB_MIN_VOLUME_MM3):
            continue
        # the head: the medial end of the part beside or behind the vertebral body (a rib's front end,
        # near the sternum, can be as medial; a kidney's rim lies in front and has no such part)
        behind = (yy - boxed.y[zz]) * sp[1] >= -defaults.RIB_HEAD_MAX_FRONT_MM
        if not behind.any() or lateral[behind].min() > defaults.RIB_SEED_BAND_MM[0]:
            continue
        near = behind & (lateral <= lateral[behind].min() + defaults.RIB_HEAD_LENGTH_MM)
        regions.append(RibRegion(label=seed.label, side=seed.side, z_mean_mm=float(seed.z * sp[0]),
                                 z_top_mm=float(zz.max() * sp[0]), z_bottom_mm=float(zz.min() * sp[0]), voxels=zz.size))
        kz = zz[near].mean()
        k = int(np.clip(round(kz), 0, len(track.y) - 1))
        heads[seed.label] = (kz, centre[0][k] - cy + yy[near].mean(), centre[1][k] - cx + xx[near].mean())
    nz = grid.hu.shape[0]
    anchor, notes = number_ribs(regions, fov_top_mm=(nz - 1) * sp[0], fov_bottom_mm=0.0,
                                lung_top_mm=None if extent.top is None else float(extent.top * sp[0]),
                                apex_in_view=extent.apex_in_view)
    factors = np.array(grid.factors, float)
    out = []
    for r in regions:
        ijk = marks.canon.index_to_input(np.array([heads[r.label]]) * factors + (factors - 1) / 2.0)[0]
        lps = np.array(image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in ijk)))
        out.append(RibHead(r.side, r.number, lps))
    timings["numbering"] = time.perf_counter() - t0 - timings["box"]
    out.sort(key=lambda h: (h.side, h.number or 99, -h.head_lps[2]))
    return RibHeads(out, anchor, notes, timings)

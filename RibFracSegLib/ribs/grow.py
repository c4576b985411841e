"""`grow_ribs(image, landmarks) -> RibLabels`: ribs grown from their seeds through the rib-cage bone.

Seeds grown by watershed through the cage -> regions that reach far enough from the spine are ribs
-> numbered by height -> centrelines -> labels on the input grid (bone at full resolution inside each
rib's region). Holds on phantoms; on real chests touching scapulae, cartilage and neighbours merge
into the regions, where `ribs/traced.py` holds better (`segment.segment_ribs` picks per CT).
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import defaults
from ..geometry import distance_mm
from .anatomy import ColumnLandmarks, Lungs
from .centrelines import centreline_from_mask
from .cage import CageStart, bridge_breaks, cage_start, partition
from .regions import rib_labels
from .labels import RibLabels, like_lengths
from .numbering import RibRegion, number_ribs


def grow_ribs(image: sitk.Image, marks: ColumnLandmarks, lungs: Lungs, start: Optional[CageStart] = None,
              labelled: bool = True) -> RibLabels:
    """Segment and number the ribs of a CT (HU) by growing seeds; unnumbered ribs keep their side.
    `start`: the CT's `cage_start` (made here when not given). `labelled=False`: the label image deferred
    (`RibLabels.finish_labels`)."""
    t0 = time.perf_counter()
    extent, lung_distance = lungs.extent, lungs.distance
    canon, grid, body, track, sp = marks.canon, marks.grid, marks.body, marks.track, marks.grid.spacing_zyx
    timings: dict[str, float] = {}
    start = start if start is not None else cage_start(marks, lungs)
    cage, markers, seeds = start.cage, start.markers, start.seeds
    regions_img = partition(cage, markers, sp)
    timings["partition"] = time.perf_counter() - t0 - sum(timings.values())
    regions = _rib_regions(regions_img, seeds, track, sp, lung_distance, extent, markers)
    regions = _near_skin(regions, regions_img, body, sp)
    keep = np.zeros(int(regions_img.max()) + 1, bool)
    keep[[r.label for r in regions]] = True
    regions_img[~keep[regions_img]] = 0
    regions_img = bridge_breaks(cage, regions_img, lung_distance, sp)
    nz = grid.hu.shape[0]
    lung_top = None if extent.top is None else float(extent.top * sp[0])
    anchor, notes = number_ribs(regions, fov_top_mm=(nz - 1) * sp[0], fov_bottom_mm=0.0, lung_top_mm=lung_top,
                                apex_in_view=extent.apex_in_view)
    lines = _centrelines(regions_img, regions, track, grid, canon)
    timings["numbering"] = time.perf_counter() - t0 - sum(timings.values())
    result = rib_labels(image, regions_img, regions, lines, grid, canon, anchor, notes, labelled)
    result.timings_s = {**timings, "labels": time.perf_counter() - t0 - sum(timings.values())}
    return result


def _trim_far(mask: np.ndarray, lung_distance: np.ndarray, seed_mask: np.ndarray) -> np.ndarray:
    """The part of `mask` within RIB_MAX_LUNG_DISTANCE_MM of the lung that stays connected to the seed."""
    near = mask & (lung_distance <= defaults.RIB_MAX_LUNG_DISTANCE_MM)
    labels, _ = ndimage.label(near, structure=np.ones((3, 3, 3), bool))
    keep = np.unique(labels[seed_mask & near])
    return np.isin(labels, keep[keep > 0])


def _near_skin(regions: list[RibRegion], regions_img: np.ndarray, body: np.ndarray, sp) -> list[RibRegion]:
    """Drop regions that never come near the skin: a rib runs in the body wall, under muscle and
    fat only, while the bright rim of a contrast-enhanced kidney lies deep. 'Near' is judged against
    this patient's own ribs (fat thickness varies), but never stricter than RIB_SKIN_DEPTH_MM."""
    if not regions:
        return regions
    depth = distance_mm(body, sp)
    shallow = {r.label: float(np.percentile(depth[regions_img == r.label], 10)) for r in regions}
    limit = max(defaults.RIB_SKIN_DEPTH_MM, float(np.median(list(shallow.values()))) + defaults.RIB_SKIN_DEPTH_SLACK_MM)
    kept = [r for r in regions if shallow[r.label] <= limit]
    for r in regions:
        if shallow[r.label] > limit:
            regions_img[regions_img == r.label] = 0
    return kept


def _extent(mask: np.ndarray, box, track, sp) -> tuple[np.ndarray, float, float]:
    """Slices (absolute), lateral reach from the spine and height span (mm) of a region crop."""
    z, _, x = np.nonzero(mask)
    z = z + box[0].start
    reach = float(np.abs((x + box[2].start - track.x[z]) * sp[2]).max())
    return z, reach, float((z.max() - z.min()) * sp[0])


def _rib_regions(regions_img: np.ndarray, seeds, track, sp, lung_distance, extent, markers) -> list[RibRegion]:
    """Keep grown seeds that reach far enough from the spine (lumbar transverse processes don't) and
    slope like ribs; in the shoulders a rib hugs the lung, so a region lying mostly far from it is a
    scapula (dropped) or a rib grown into a touching scapula (trimmed back to the part near the lung)."""
    shoulder_from = None if extent.base is None else extent.base + defaults.RIB_SCAPULA_ABOVE_LUNG_BASE_MM / sp[0]
    objects = ndimage.find_objects(regions_img)
    out = []
    for seed in seeds:
        box = objects[seed.label - 1] if seed.label - 1 < len(objects) else None
        if box is None:
            continue
        mine = regions_img[box] == seed.label
        mask = mine
        z, reach, span = _extent(mask, box, track, sp)
        if lung_distance is not None and shoulder_from is not None and z.mean() > shoulder_from \
                and np.median(lung_distance[box][mask]) > defaults.RIB_REGION_MAX_LUNG_MM:
            mask = _trim_far(mask, lung_distance[box], seed_mask=markers[box] == seed.label)
            if not mask.any() or np.median(lung_distance[box][mask]) > defaults.RIB_REGION_MAX_LUNG_MM:
                mask = np.zeros_like(mine)
        regions_img[box][mine & ~mask] = 0
        if not mask.any():
            continue
        z, reach, span = _extent(mask, box, track, sp)
        if (reach < defaults.RIB_MIN_REACH_MM or span < defaults.RIB_MIN_HEIGHT_SPAN_MM
                or mask.sum() * np.prod(sp) < defaults.RIB_MIN_VOLUME_MM3):
            continue
        # the seed's height (posterior arc in the paravertebral band) orders ribs; a region's own mean
        # height would move with whatever touches it (scapula, cartilage)
        out.append(RibRegion(label=seed.label, side=seed.side, z_mean_mm=float(seed.z * sp[0]),
                             z_top_mm=float(z.max() * sp[0]), z_bottom_mm=float(z.min() * sp[0]),
                             voxels=int(mask.sum())))
    return out


def working_geometry(grid, canon) -> sitk.Image:
    """A 1-voxel image whose index (i, j, k) = working (x, y, z) maps to LPS mm like the working grid
    (block centres of the canonical view of the input), for code that works in image geometry."""
    factors = np.array(grid.factors, float)

    def lps(working_zyx) -> np.ndarray:
        ijk = canon.index_to_input(np.asarray(working_zyx, float) * factors + (factors - 1) / 2.0)
        return np.array(canon.source.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in ijk)))

    origin = lps([0, 0, 0])
    steps = np.stack([lps(e) - origin for e in ([0, 0, 1], [0, 1, 0], [1, 0, 0])], axis=1)  # columns i, j, k
    spacing = np.linalg.norm(steps, axis=0)
    geometry = sitk.Image(1, 1, 1, sitk.sitkUInt8)
    geometry.SetSpacing(tuple(float(v) for v in spacing))
    geometry.SetDirection(tuple(float(v) for v in (steps / spacing).ravel()))
    geometry.SetOrigin(tuple(float(v) for v in origin))
    return geometry


def _centrelines(regions_img: np.ndarray, regions: list[RibRegion], track, grid, canon) -> dict[int, np.ndarray]:
    """Head-first centreline (LPS mm) of each rib region, by geodesic cross-sections (ribs.centrelines):
    of its largest piece, or of its pieces joined across their gaps where that mends a rib too short
    for its partner (`_mend_short`)."""
    geometry = working_geometry(grid, canon)
    middle = len(track.x) // 2
    midline = geometry.TransformContinuousIndexToPhysicalPoint((float(track.x[middle]), float(track.y[middle]),
                                                                 float(middle)))[0]
    lines, joined = {}, {}
    objects = ndimage.find_objects(regions_img)
    for r in regions:
        box = objects[r.label - 1]
        crop = sitk.Image(1, 1, 1, sitk.sitkUInt8)
        crop.CopyInformation(geometry)
        crop.SetOrigin(geometry.TransformIndexToPhysicalPoint([int(b.start) for b in box[::-1]]))
        mask = regions_img[box] == r.label
        lines[r.label] = centreline_from_mask(mask, crop, midline)
        if ndimage.label(mask, structure=np.ones((3, 3, 3)))[1] > 1:
            joined[r.label] = centreline_from_mask(mask, crop, midline, join_mm=defaults.RIB_BRIDGE_MM,
                                                   join_min_mm3=defaults.RIB_BRIDGE_MIN_MM3)
    return _mend_short(lines, joined, regions)


def _mend_short(lines: dict[int, np.ndarray], joined: dict[int, np.ndarray], regions: list[RibRegion]
                ) -> dict[int, np.ndarray]:
    """A rib broken before mid-rib keeps its far part in its region (`bridge_breaks`), but the larger
    piece alone makes its centreline: the head's part is lost. Its pieces joined across the gap are
    taken where the rib alone is too short for its partner (RIB_PAIR_LENGTH_RATIO) and joined is not;
    elsewhere (no partner, or lengths that agree already) the largest piece stays: on real chests
    the pieces beside rib 1 or an anterior end are cartilage and sternum more often than a break."""
    def length(line: np.ndarray) -> float:
        return float(np.linalg.norm(np.diff(line, axis=0), axis=1).sum())

    by_rib = {(r.side, r.number): r.label for r in regions if r.number}
    out = dict(lines)
    for r in regions:
        partner = by_rib.get(("R" if r.side == "L" else "L", r.number)) if r.number else None
        if r.label not in joined or partner is None:
            continue
        own, mended, other = length(lines[r.label]), length(joined[r.label]), length(lines[partner])
        if not like_lengths(own, other) and own < other and like_lengths(mended, other):
            out[r.label] = joined[r.label]
    return out

"""`segment_ribs(image) -> RibLabels`: the 24 ribs from the CT alone, on any grid and orientation.

Pipeline: canonical view -> working grid (~1.5 mm) -> body, bone, lungs, spine track ->
rib-cage bone -> one seed per rib in the paravertebral band -> seeds grown through the cage ->
regions that reach far enough from the spine are ribs -> numbered by height -> centrelines ->
labels on the input grid (bone at full resolution inside each rib's region).
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import defaults
from ..geometry import distance_mm
from ..preprocess import canonical_volume
from .anatomy import ColumnLandmarks, column_landmarks, fill_holes_per_slice, lung_extent, lung_mask
from .centrelines import centreline_from_mask
from .cage import bridge_breaks, cage_bone, partition, rib_seeds
from .labels import Rib, RibLabels, rib_label_value
from .numbering import RibRegion, number_ribs


def segment_ribs(image: sitk.Image, landmarks: Optional[ColumnLandmarks] = None) -> RibLabels:
    """Segment and number the ribs of a CT (HU); unnumbered ribs keep their side. `landmarks`: the
    CT's `column_landmarks`, when the caller has them already (the vertebral count uses them too)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sz, sy, sx = canonical_volume(image).spacing_zyx
    if max(sy, sx) > defaults.RIB_MAX_PIXEL_MM or sz > defaults.RIB_MAX_SLICE_MM:
        empty = sitk.Image(image.GetSize(), sitk.sitkUInt8)
        empty.CopyInformation(image)
        return RibLabels(labels=empty, ribs=[], numbering="none", notes=[
            f"voxels of {sx:.1f} x {sy:.1f} x {sz:.1f} mm are too coarse to find ribs (needs at most "
            f"{defaults.RIB_MAX_PIXEL_MM} mm in-plane and {defaults.RIB_MAX_SLICE_MM} mm slices)"])
    marks = landmarks if landmarks is not None else column_landmarks(image)
    canon, grid, body, bone, track = marks.canon, marks.grid, marks.body, marks.bone, marks.track
    sp = grid.spacing_zyx
    lungs = lung_mask(grid.hu, body, sp)
    timings["landmarks"] = time.perf_counter() - t0
    extent = lung_extent(lungs, sp)
    lung_distance = distance_mm(~lungs, sp) if lungs.any() else None
    cage = cage_bone(bone, body, lung_distance, extent, track, sp)
    markers, seeds = rib_seeds(cage, track, sp)
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
    ribs = [Rib(side=r.side, number=r.number, centreline_lps=lines[r.label], voxel_count=0,
                number_confidence=r.confidence) for r in regions]
    timings["numbering"] = time.perf_counter() - t0 - sum(timings.values())
    labels, counts = _input_labels(regions_img, regions, grid, canon)
    for rib, region in zip(ribs, regions):
        rib.voxel_count = int(counts.get(region.label, 0))
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(image)
    timings["labels"] = time.perf_counter() - t0 - sum(timings.values())
    ribs.sort(key=lambda r: (r.side, r.number or 99, -r.centreline_lps[:, 2].mean()))
    return RibLabels(labels=out, ribs=ribs, numbering=anchor, notes=notes, timings_s=timings)


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


def _working_geometry(grid, canon) -> sitk.Image:
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
    """Head-first centreline (LPS mm) of each rib region, by geodesic cross-sections (ribs.centrelines)."""
    geometry = _working_geometry(grid, canon)
    middle = len(track.x) // 2
    midline = geometry.TransformContinuousIndexToPhysicalPoint((float(track.x[middle]), float(track.y[middle]),
                                                                 float(middle)))[0]
    lines = {}
    objects = ndimage.find_objects(regions_img)
    for r in regions:
        box = objects[r.label - 1]
        crop = sitk.Image(1, 1, 1, sitk.sitkUInt8)
        crop.CopyInformation(geometry)
        crop.SetOrigin(geometry.TransformIndexToPhysicalPoint([int(b.start) for b in box[::-1]]))
        lines[r.label] = centreline_from_mask(regions_img[box] == r.label, crop, midline)
    return lines


def _input_labels(regions_img: np.ndarray, regions: list[RibRegion], grid, canon) -> tuple[np.ndarray, dict]:
    """Label image on the input grid: full-resolution bone inside each rib's region, marrow filled.

    In-plane 3x3 smoothing before the threshold keeps thin cortex that partial volume dims; holes
    enclosed in an axial slice (fatty marrow below the threshold) are filled within the region.
    """
    value = np.zeros(int(regions_img.max()) + 1, np.uint8)
    for r in regions:
        value[r.label] = rib_label_value(r.side, r.number)
    shape = canon.array.shape
    full = value[grid.upsample(regions_img, shape)]
    box = ndimage.find_objects((full > 0).astype(np.uint8))
    if box:
        box = box[0]
        hu = ndimage.uniform_filter(np.asarray(canon.array[box], dtype=np.float32), size=(1, 3, 3))
        inside = full[box] > 0
        bone = inside & (hu > defaults.RIB_BONE_HU_FULL)
        bone = fill_holes_per_slice(bone) & inside
        full[box][~bone] = 0
    counts = {r.label: int(np.count_nonzero(full == value[r.label])) for r in regions}
    return canon.to_input(full), counts

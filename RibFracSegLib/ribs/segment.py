"""`segment_ribs(image) -> RibLabels`: the 24 ribs from the CT alone, on any grid and orientation.

Pipeline: canonical view -> working grid (~1.5 mm) -> body, bone, lungs, spine track ->
rib-cage bone -> one seed per rib in the paravertebral band -> seeds grown through the cage ->
regions that reach far enough from the spine are ribs -> numbered by height -> centrelines ->
labels on the input grid (bone at full resolution inside each rib's region).
"""

from __future__ import annotations

import time

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import defaults
from ..preprocess import canonical_volume
from .anatomy import body_mask, bone_mask, lung_mask, spine_track, working_grid
from .cage import cage_bone, partition, rib_seeds
from .labels import Rib, RibLabels, rib_label_value
from .numbering import RibRegion, number_ribs


def segment_ribs(image: sitk.Image) -> RibLabels:
    """Segment and number the ribs of a CT (HU); unnumbered ribs keep their side."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    canon = canonical_volume(image)
    grid = working_grid(np.asarray(canon.array), canon.spacing_zyx)
    sp = grid.spacing_zyx
    body = body_mask(grid.hu)
    bone = bone_mask(grid.hu, body, sp)
    lungs = lung_mask(grid.hu, body, sp)
    track = spine_track(bone, body, sp)
    timings["landmarks"] = time.perf_counter() - t0
    cage = cage_bone(bone, body, lungs, track, sp)
    markers, seeds = rib_seeds(cage, track, sp)
    regions_img = partition(cage, markers, sp)
    timings["partition"] = time.perf_counter() - t0 - sum(timings.values())
    regions = _rib_regions(regions_img, seeds, track, sp)
    keep = np.zeros(int(regions_img.max()) + 1, bool)
    keep[[r.label for r in regions]] = True
    regions_img[~keep[regions_img]] = 0
    nz = grid.hu.shape[0]
    # the apex: the highest slice with a lung's worth of air (the trachea alone is less); it is in
    # view when the lungs have narrowed to a small share of their widest section by the CT's top
    area = lungs.sum(axis=(1, 2)) * sp[1] * sp[2]
    lung_slices = np.flatnonzero(area >= defaults.RIB_APEX_MIN_AREA_MM2)
    lung_top = float(lung_slices[-1] * sp[0]) if lung_slices.size else None
    apex_in_view = bool(area.max() > 0 and area[-1] <= defaults.RIB_APEX_AREA_FRACTION * area.max())
    anchor, notes = number_ribs(regions, fov_top_mm=(nz - 1) * sp[0], fov_bottom_mm=0.0, lung_top_mm=lung_top,
                                apex_in_view=apex_in_view)
    ribs = [Rib(side=r.side, number=r.number, centreline_lps=_centreline(regions_img == r.label, track, grid, canon),
                voxel_count=0, number_confidence=r.confidence) for r in regions]
    timings["numbering"] = time.perf_counter() - t0 - sum(timings.values())
    labels, counts = _input_labels(regions_img, regions, grid, canon)
    for rib, region in zip(ribs, regions):
        rib.voxel_count = int(counts.get(region.label, 0))
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(image)
    timings["labels"] = time.perf_counter() - t0 - sum(timings.values())
    ribs.sort(key=lambda r: (r.side, r.number or 99, -r.centreline_lps[:, 2].mean()))
    return RibLabels(labels=out, ribs=ribs, numbering=anchor, notes=notes, timings_s=timings)


def _rib_regions(regions_img: np.ndarray, seeds, track, sp) -> list[RibRegion]:
    """Keep grown seeds that reach far enough laterally/anteriorly to be ribs."""
    objects = ndimage.find_objects(regions_img)
    out = []
    for seed in seeds:
        box = objects[seed.label - 1] if seed.label - 1 < len(objects) else None
        if box is None:
            continue
        mask = regions_img[box] == seed.label
        z, y, x = np.nonzero(mask)
        z = z + box[0].start
        dx = (x + box[2].start - track.x[z]) * sp[2]
        reach = float(np.abs(dx).max())  # lumbar transverse processes stay close to the spine
        span = float((z.max() - z.min()) * sp[0])
        if (reach < defaults.RIB_MIN_REACH_MM or span < defaults.RIB_MIN_HEIGHT_SPAN_MM
                or mask.sum() * np.prod(sp) < defaults.RIB_MIN_VOLUME_MM3):
            continue
        # the seed's height (posterior arc in the paravertebral band) orders ribs; a region's own mean
        # height would move with whatever touches it (scapula, cartilage)
        out.append(RibRegion(label=seed.label, side=seed.side, z_mean_mm=float(seed.z * sp[0]),
                             z_top_mm=float(z.max() * sp[0]), z_bottom_mm=float(z.min() * sp[0]),
                             voxels=int(mask.sum())))
    return out


def _centreline(mask: np.ndarray, track, grid, canon) -> np.ndarray:
    """Ordered centreline (LPS mm), head -> anterior end: centroids of angular bins around the chest axis.

    Seen from above, a rib winds around a point in front of the spine; the angle about that point
    grows monotonically from the head to the anterior end, so binning by angle orders the rib.
    """
    sp = grid.spacing_zyx
    z, y, x = np.nonzero(mask)
    if z.size == 0:
        return np.zeros((0, 3))
    dx = (x - track.x[z]) * sp[2]
    dy = (y - track.y[z]) * sp[1] + defaults.RIB_AXIS_FRONT_MM
    angle = np.degrees(np.arctan2(np.abs(dx), dy))  # 0 = straight back, 180 = straight forward
    bins = np.floor(angle / defaults.RIB_CENTRELINE_STEP_DEG).astype(int)
    order = np.unique(bins)
    points = np.array([[z[bins == b].mean(), y[bins == b].mean(), x[bins == b].mean()] for b in order])
    if len(points) >= 5:
        points = ndimage.uniform_filter1d(points, size=3, axis=0, mode="nearest")
    # working-grid index -> canonical input index (block centres) -> input ijk -> LPS mm
    canonical_index = points * np.array(grid.factors) + (np.array(grid.factors) - 1) / 2.0
    ijk = canon.index_to_input(canonical_index)
    source = canon.source
    return np.array([source.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in p)) for p in ijk])


def _input_labels(regions_img: np.ndarray, regions: list[RibRegion], grid, canon) -> tuple[np.ndarray, dict]:
    """Label image on the input grid: full-resolution bone inside each rib's (slightly grown) region."""
    value = np.zeros(int(regions_img.max()) + 1, np.uint8)
    for r in regions:
        value[r.label] = rib_label_value(r.side, r.number)
    grown = ndimage.grey_dilation(regions_img, size=(1, 3, 3))
    grown = np.where(regions_img > 0, regions_img, grown)
    shape = canon.array.shape
    full = value[grid.upsample(grown, shape)]
    hu = np.asarray(canon.array)
    full[hu <= defaults.RIB_BONE_HU_FULL] = 0
    counts = {r.label: int(np.count_nonzero(full == value[r.label])) for r in regions}
    return canon.to_input(full), counts

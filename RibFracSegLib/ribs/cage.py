"""Rib-cage bone: bone in the chest wall that is not spine, sternum, scapula, clavicle or arm.

Rules, each in millimetres on the working grid (why they hold on any chest CT):
- the spine zone (vertebral body and posterior elements) and the sternum zone are narrow bands
  around the midline that no rib crosses, so cutting them frees the ribs from both;
- vertebral bodies, the contrast-filled heart and vessels, kidneys and humeri are thicker in every
  direction than any rib (a rib is 5-8 mm thick), so an opening with a ball finds and removes them;
- the scapulae and clavicles lie outside the rib cage: where lungs are present, ribs hug them (the
  pleura lies on the rib's inner surface) while these bones sit beyond a layer of muscle.
Seeds: each rib passes once through a paravertebral band just lateral to the transverse processes,
where the posterior arcs form a clean stack, one per rib (the start of every centreline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from .. import defaults
from ..geometry import distance_mm
from typing import Optional

from .anatomy import ColumnLandmarks, LungExtent, Lungs, SpineTrack


def _offsets(track: SpineTrack, shape: tuple[int, int, int], spacing_zyx) -> tuple[np.ndarray, np.ndarray]:
    """Per voxel (broadcastable): left-right and antero-posterior offset from the spine in mm."""
    nz, ny, nx = shape
    dx = (np.arange(nx)[None, None, :] - track.x[:, None, None]) * spacing_zyx[2]
    dy = (np.arange(ny)[None, :, None] - track.y[:, None, None]) * spacing_zyx[1]
    return dx, dy


def _thick(bone: np.ndarray, spacing_zyx) -> np.ndarray:
    """Opening by a ball of RIB_MAX_THICKNESS_MM (two distance transforms), grown by a rim. Each
    transform runs in the box that decides it (the bone's box and one voxel; the core's box and the
    grown radius): a voxel's nearest background, or core, lies there. Same result, a third of the work."""
    r = defaults.RIB_MAX_THICKNESS_MM / 2.0
    core = np.zeros_like(bone)
    box = _box(bone, [1, 1, 1])
    if box is None:
        return core
    core[box] = distance_mm(bone[box], spacing_zyx) > r
    grow = r + defaults.RIB_THICK_RIM_MM
    box = _box(core, [int(np.ceil(grow / s)) + 1 if s < 1e5 else 0 for s in spacing_zyx])
    if box is None:
        return core
    out = np.zeros_like(bone)
    out[box] = distance_mm(~core[box], spacing_zyx) <= grow
    return out


def _box(mask: np.ndarray, margin: list[int]) -> Optional[tuple[slice, ...]]:
    """Bounding box of `mask` grown by `margin` voxels per axis (clipped), None if it is empty."""
    found = ndimage.find_objects(mask.astype(np.uint8))
    return None if not found else _grown(found[0], margin, mask.shape)


def _grown(box: tuple[slice, ...], margin: list[int], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """`box` grown by `margin` voxels per axis, clipped to `shape`."""
    return tuple(slice(max(0, b.start - m), min(n, b.stop + m)) for b, m, n in zip(box, margin, shape))


def thick_structures(bone: np.ndarray, spacing_zyx: tuple[float, float, float], flat_from: int) -> np.ndarray:
    """Bright structures thicker than any rib (vertebral bodies, the contrast-filled heart and great
    vessels, kidneys, humeri), grown by a rim so their edges go too.

    Below slice `flat_from` the test is per axial slice (a 2-D disk: a sloping rib is 5-8 mm across
    there, and a kidney's cortex ring, filled, is not); above it ribs 1-2 lie almost flat and are
    broad in the axial plane, so there only a 3-D ball, which their thin height fails, counts.
    """
    if not bone.any():
        return np.zeros_like(bone)
    thick = _thick(bone, spacing_zyx)
    flat_from = int(np.clip(flat_from, 0, bone.shape[0]))
    two_d = (0.0 if spacing_zyx[0] <= 0 else 1e6,) + tuple(spacing_zyx[1:])  # huge z spacing: per slice
    if flat_from > 0:
        thick[:flat_from] |= _thick(bone[:flat_from], two_d)
    return thick


def flat_ribs_from(lungs: LungExtent, nz: int, spacing_zyx) -> int:
    """First working slice of the apex region where ribs 1-2 lie flat (`thick_structures`)."""
    return nz if lungs.top is None else lungs.top - int(round(defaults.RIB_FLAT_RIBS_MM / spacing_zyx[0]))


def cage_bone(bone: np.ndarray, body: np.ndarray, lung_distance: Optional[np.ndarray], lungs: LungExtent,
              track: SpineTrack, spacing_zyx: tuple[float, float, float],
              thick: Optional[np.ndarray] = None) -> np.ndarray:
    """Bone voxels that may belong to a rib (see the module docstring for the rules); `thick`: the
    `thick_structures` of `bone` when the caller has them."""
    dx, dy = _offsets(track, bone.shape, spacing_zyx)
    adx = np.abs(dx)
    spine = (adx < defaults.RIB_SPINE_HALF_WIDTH_MM) & (dy > -defaults.RIB_SPINE_FRONT_MM)
    sternum = (adx < defaults.RIB_STERNUM_HALF_WIDTH_MM) & (dy <= -defaults.RIB_SPINE_FRONT_MM)
    nz = bone.shape[0]
    if thick is None:
        thick = thick_structures(bone, spacing_zyx, flat_ribs_from(lungs, nz, spacing_zyx))
    cage = bone & body & ~spine & ~sternum & ~thick
    if lung_distance is None or lungs.top is None:
        return cage
    far = lung_distance > defaults.RIB_MAX_LUNG_DISTANCE_MM
    z = np.arange(nz)
    margin = int(round(defaults.RIB_SCAPULA_ABOVE_LUNG_BASE_MM / spacing_zyx[0]))
    apex = int(round(defaults.RIB_SCAPULA_BELOW_APEX_MM / spacing_zyx[0]))
    # scapular blades: behind the line, lateral to the rib necks, well above the lung base and below
    # the narrow apex (where ribs 1-2 are far from the lung too)
    blade = ((z >= lungs.base + margin) & (z < lungs.top - apex))[:, None, None]
    scapula = far & blade & (adx > defaults.RIB_SCAPULA_MEDIAL_MM) & (dy > -defaults.RIB_SCAPULA_FRONT_MM)
    # clavicles: in front, near the apex
    top = (z >= lungs.top - int(round(defaults.RIB_CLAVICLE_BELOW_APEX_MM / spacing_zyx[0])))[:, None, None]
    clavicle = far & top & (dy < -defaults.RIB_SCAPULA_FRONT_MM)
    return cage & ~scapula & ~clavicle


@dataclass
class CageStart:
    """What both rib methods start from, made once per CT (`cage_start`): structures thicker than a
    rib, the cage bone without them, and one seed per rib (marker image and `Seed`s). Read-only."""

    thick: np.ndarray
    cage: np.ndarray
    markers: np.ndarray
    seeds: list


def cage_start(marks: ColumnLandmarks, lungs: Lungs) -> CageStart:
    """The cage and seeds of a CT's `ColumnLandmarks` and `Lungs` (grown and traced ribs both use them)."""
    bone, sp = marks.bone, marks.grid.spacing_zyx
    thick = thick_structures(bone, sp, flat_ribs_from(lungs.extent, bone.shape[0], sp))
    cage = cage_bone(bone, marks.body, lungs.distance, lungs.extent, marks.track, sp, thick=thick)
    markers, seeds = rib_seeds(cage, marks.track, sp)
    return CageStart(thick, cage, markers, seeds)


@dataclass
class Seed:
    """The posterior arc of one rib where it crosses the paravertebral band."""

    side: str  # "L" or "R"
    label: int  # marker value in the seed image
    z: float  # mean working-grid slice (height of the posterior arc)
    voxels: int


def rib_seeds(cage: np.ndarray, track: SpineTrack, spacing_zyx) -> tuple[np.ndarray, list[Seed]]:
    """Posterior arcs in the paravertebral band, one seed per rib, top to bottom per side.

    Each connected piece of cage bone in the band is a rib's posterior arc (ribs 1 and 2 can sit at
    the same height there, side by side); a piece taller than one rib (two ribs touching through
    thin intercostal gaps or thick slices) is split at the minimum of its slice profile.
    """
    dx, dy = _offsets(track, cage.shape, spacing_zyx)
    lo, hi = defaults.RIB_SEED_BAND_MM
    band_y = (dy > defaults.RIB_SEED_BAND_Y_MM[0]) & (dy < defaults.RIB_SEED_BAND_Y_MM[1])
    markers = np.zeros(cage.shape, np.int32)
    seeds: list[Seed] = []
    min_voxels = defaults.RIB_SEED_MIN_MM3 / float(np.prod(spacing_zyx))
    for side, sign in (("L", 1.0), ("R", -1.0)):
        band = cage & band_y & (sign * dx > lo) & (sign * dx < hi)
        labels, n = ndimage.label(band)  # face-connected: neighbouring ribs touching at a corner stay apart
        pieces = []
        for i, box in enumerate(ndimage.find_objects(labels), start=1):
            piece = labels[box] == i
            if piece.sum() < min_voxels:
                continue
            for z0, z1 in _split_tall(piece, spacing_zyx[0]):
                part = np.zeros_like(piece)
                part[z0:z1] = piece[z0:z1]
                if part.sum() >= min_voxels:
                    zs = np.nonzero(part)[0]
                    pieces.append((float(zs.mean() + box[0].start), box, part))
        for z, box, part in sorted(pieces, key=lambda p: -p[0]):
            seed = Seed(side=side, label=len(seeds) + 1, z=z, voxels=int(part.sum()))
            markers[box][part & (markers[box] == 0)] = seed.label
            seeds.append(seed)
    return markers, seeds


def _split_tall(piece: np.ndarray, slice_mm: float) -> list[tuple[int, int]]:
    """Slice ranges of the ribs in one band piece: whole if no taller than a rib, else cut at minima."""
    from scipy.signal import find_peaks  # here, not at load: Slicer's reader imports this module without torch,
    # and scipy.signal (with scipy.stats) then fails; its first import costs ~1 s once per process
    if piece.shape[0] * slice_mm <= defaults.RIB_SEED_MAX_HEIGHT_MM:
        return [(0, piece.shape[0])]
    profile = piece.sum(axis=(1, 2)).astype(float)
    sigma = defaults.RIB_SEED_SMOOTH_MM / slice_mm
    if sigma >= 0.5:
        profile = ndimage.gaussian_filter1d(profile, sigma)
    distance = max(1, int(round(defaults.RIB_SEED_MIN_PITCH_MM / slice_mm)))
    peaks, _ = find_peaks(np.pad(profile, 1), distance=distance,
                          prominence=defaults.RIB_SEED_PROMINENCE * max(profile.max(), 1e-9))
    peaks = peaks - 1
    if peaks.size < 2:
        return [(0, piece.shape[0])]
    cuts = [int(a + np.argmin(profile[a:b + 1])) for a, b in zip(peaks[:-1], peaks[1:])]
    bounds = [0] + cuts + [piece.shape[0]]
    return list(zip(bounds[:-1], bounds[1:]))


def partition(cage: np.ndarray, markers: np.ndarray, spacing_zyx) -> np.ndarray:
    """Grow every seed through connected cage bone; where two ribs touch, they part at the neck.

    Watershed on the negated distance to the bone's surface: a rib's core is a ridge, and the
    thin bridge where two ribs touch is a saddle, so each rib keeps its own shaft.
    """
    if markers.max() == 0:
        return np.zeros(cage.shape, np.int32)
    box = ndimage.find_objects(cage.astype(np.uint8))[0]
    depth = distance_mm(cage[box], spacing_zyx)
    out = np.zeros(cage.shape, np.int32)
    out[box] = watershed(-depth, markers[box], mask=cage[box], connectivity=3)
    return out


def bridge_breaks(cage: np.ndarray, regions: np.ndarray, lung_distance: Optional[np.ndarray],
                  spacing_zyx) -> np.ndarray:
    """Give a rib back its far part beyond a break: a loose piece of cage bone that no seed reached,
    within RIB_BRIDGE_MM of one rib, hugging the lung like a rib (where lungs are in view) and not an
    upright strip (RIB_BRIDGE_UPRIGHT_*: ribs run round the chest), joins that rib. Returns `regions`,
    updated in place."""
    loose = cage & (regions == 0)
    if not loose.any() or not regions.any():
        return regions
    rib = regions > 0  # pieces join the ribs as they were: the order of pieces changes nothing
    labels, _ = ndimage.label(loose, structure=np.ones((3, 3, 3), bool))
    min_voxels = defaults.RIB_BRIDGE_MIN_MM3 / float(np.prod(spacing_zyx))
    reach = [int(np.ceil(defaults.RIB_BRIDGE_MM / s)) + 1 for s in spacing_zyx]
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        piece = labels[box] == i
        if piece.sum() < min_voxels:
            continue
        if lung_distance is not None and np.median(lung_distance[box][piece]) > defaults.RIB_REGION_MAX_LUNG_MM:
            continue
        height, *across = ((b.stop - b.start) * s for b, s in zip(box, spacing_zyx))
        if height > defaults.RIB_BRIDGE_UPRIGHT_MM and height > defaults.RIB_BRIDGE_UPRIGHT_RATIO * max(across):
            continue  # an upright strip (a sternum's edge left outside the sternum band), not a rib's far part
        # a rib within RIB_BRIDGE_MM of the piece lies in its box grown by that much: distances there only
        near = _grown(box, reach, regions.shape)
        if not rib[near].any():
            continue
        distance, index = ndimage.distance_transform_edt(~rib[near], sampling=spacing_zyx, return_indices=True)
        inner = tuple(slice(b.start - n.start, b.stop - n.start) for b, n in zip(box, near))
        d = np.where(piece, distance[inner], np.inf)
        k = np.unravel_index(int(np.argmin(d)), d.shape)
        if d[k] <= defaults.RIB_BRIDGE_MM:
            regions[box][piece] = regions[near][tuple(int(index[a][inner][k]) for a in range(3))]
    return regions

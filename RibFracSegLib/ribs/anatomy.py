"""Landmarks the rib step needs, found on a coarse working grid: body, lungs, spine per slice.

Everything here works on canonical (LPS) arrays `[z, y, x]` (z superior, y posterior, x left) at
about `defaults.RIB_WORK_MM` per voxel, so a 512x512x300 CT is handled as ~256x256x200 voxels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from .. import defaults
from ..masks import body_mask, fill_holes_per_slice, slabs  # noqa: F401 (the rib step's; others import them too)
from ..orientation import CanonicalVolume, canonical_volume


@dataclass
class WorkingGrid:
    """Block-averaged canonical CT: `hu[z, y, x]` with `factors` input voxels per working voxel."""

    hu: np.ndarray  # float32
    spacing_zyx: tuple[float, float, float]
    factors: tuple[int, int, int]

    def upsample(self, array: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
        """Nearest-neighbour copy of a working-grid array onto the canonical input grid `shape`."""
        out = array
        for axis, f in enumerate(self.factors):
            if f > 1:
                out = np.repeat(out, f, axis=axis)
        pad = [(0, max(0, s - o)) for s, o in zip(shape, out.shape)]
        out = np.pad(out, pad, mode="edge")
        return out[: shape[0], : shape[1], : shape[2]]


def working_factors(shape, spacing_zyx, slice_mm: float = 0.0) -> tuple[int, int, int]:
    """Voxels per working voxel along (z, y, x): about RIB_WORK_MM, slices about `slice_mm` when coarser."""
    work = (max(defaults.RIB_WORK_MM, slice_mm), defaults.RIB_WORK_MM, defaults.RIB_WORK_MM)
    return tuple(max(1, min(n, int(round(w / s))))  # never more than the axis holds
                 for n, s, w in zip(shape, spacing_zyx, work))


def working_grid(canonical_hu: np.ndarray, spacing_zyx: tuple[float, float, float], slice_mm: float = 0.0
                 ) -> WorkingGrid:
    """Average blocks of voxels so each working voxel is about RIB_WORK_MM (never finer than the input),
    and each working slice about `slice_mm` when that is coarser (the vertebral count's grid)."""
    factors = working_factors(canonical_hu.shape, spacing_zyx, slice_mm)
    shape = [max(1, n // f) for n, f in zip(canonical_hu.shape, factors)]
    hu = np.empty(shape, np.float32)
    for part in slabs(shape[0], factors[0] * canonical_hu[0].size):  # working slices at a time: small temporaries,
        #   reused, instead of volumes of fresh memory (slow to touch first on some machines)
        hu[part] = _block_mean(canonical_hu[part.start * factors[0]: part.stop * factors[0], : shape[1] * factors[1],
                                            : shape[2] * factors[2]], factors)
    spacing = tuple(float(s * f) for s, f in zip(spacing_zyx, factors))
    return WorkingGrid(hu=hu, spacing_zyx=spacing, factors=factors)


def _block_mean(hu: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Mean of each block of `factors` voxels (HU below air read as air), float32."""
    hu = np.maximum(hu, np.float32(defaults.AIR_HU), dtype=np.float32)  # a slab's copy: small, reused
    for axis, f in enumerate(factors):  # block sums one axis at a time: strided adds, no 6-D reduction
        if f > 1:
            parts = [hu[(slice(None),) * axis + (slice(k, None, f),)] for k in range(f)]
            total = parts[0].copy()
            for part in parts[1:]:
                total += part
            hu = total
    return hu / np.float32(np.prod(factors)) if np.prod(factors) > 1 else hu


def lung_mask(hu: np.ndarray, body: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Air inside the body in components of at least RIB_LUNG_MIN_ML (lungs; large bowel gas may join)."""
    air = body & (hu < defaults.RIB_LUNG_HU)
    labels, n = ndimage.label(air)
    if n == 0:
        return air
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    sizes = np.bincount(labels.ravel()) * voxel_ml
    keep = sizes >= defaults.RIB_LUNG_MIN_ML
    keep[0] = False
    return keep[labels]


def bone_mask(hu: np.ndarray, body: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Bone inside the body, with small enclosed holes filled slice by slice.

    Fatty marrow in older patients' vertebral bodies and ribs can fall below the bone threshold,
    leaving only the cortex ring; filling holes up to RIB_FILL_HOLE_MM2 restores the solid bone (and
    makes a contrast-enhanced kidney cortex a solid organ, which the thickness rule then removes).
    """
    bone = (hu > defaults.RIB_BONE_HU) & body
    max_voxels = defaults.RIB_FILL_HOLE_MM2 / (spacing_zyx[1] * spacing_zyx[2])
    holes = fill_holes_per_slice(bone) & ~bone
    cross = ndimage.generate_binary_structure(2, 1)  # each slice's holes on their own, as one labelling
    labels, _ = ndimage.label(holes, structure=np.stack([np.zeros_like(cross), cross, np.zeros_like(cross)]))
    small = np.bincount(labels.ravel()) <= max_voxels
    small[0] = False
    return bone | small[labels]


@dataclass
class LungExtent:
    """Working-grid slices of the lungs' base and top (the apex), None when no lung is in view."""

    base: Optional[int]
    top: Optional[int]
    apex_in_view: bool  # the lungs narrow to their apex inside the CT


def lung_extent(lungs: np.ndarray, spacing_zyx: tuple[float, float, float]) -> LungExtent:
    """Slices with a lung's worth of air (the trachea alone is less); the apex is in view when the
    CT's top slice holds only a small share of the widest lung section."""
    area = lungs.sum(axis=(1, 2)) * spacing_zyx[1] * spacing_zyx[2]
    slices = np.flatnonzero(area >= defaults.RIB_APEX_MIN_AREA_MM2)
    if slices.size == 0:
        return LungExtent(None, None, False)
    return LungExtent(int(slices[0]), int(slices[-1]),
                      bool(area[-1] <= defaults.RIB_APEX_AREA_FRACTION * area.max()))


@dataclass
class Lungs:
    """The lungs' extent and every working voxel's distance to them (mm; None without lungs)."""

    extent: LungExtent
    distance: Optional[np.ndarray]


def lungs_of(marks: "ColumnLandmarks") -> Lungs:
    """The lungs as both rib methods (grown, traced) read them, made once per CT."""
    from ..geometry import distance_mm

    lungs = lung_mask(marks.grid.hu, marks.body, marks.grid.spacing_zyx)
    return Lungs(lung_extent(lungs, marks.grid.spacing_zyx),
                 distance_mm(~lungs, marks.grid.spacing_zyx) if lungs.any() else None)


@dataclass
class SpineTrack:
    """Vertebral column per axial slice (working-grid indices; NaN-free, interpolated where unseen)."""

    x: np.ndarray  # (z,) left-right centre of the vertebral body
    y: np.ndarray  # (z,) antero-posterior centre of the vertebral body
    seen: np.ndarray  # (z,) bool: a vertebral body was found in this slice


def spine_track(bone: np.ndarray, body: np.ndarray, spacing_zyx: tuple[float, float, float]) -> SpineTrack:
    """Find the vertebral body in each axial slice: the most posterior thick bone near the midline.

    Ribs, sternum and scapulae are thinner than RIB_SPINE_OPEN_MM and vanish under an opening; of
    what survives near the body's midline, the contrast-filled heart and aorta lie in front of the
    vertebral body, so the most posterior blob is taken. A running median along z removes outliers.
    """
    nz, ny, nx = bone.shape
    sy, sx = spacing_zyx[1], spacing_zyx[2]
    r = defaults.RIB_SPINE_OPEN_MM / 2.0
    ry, rx = max(1, int(round(r / sy))), max(1, int(round(r / sx)))
    yy, xx = np.ogrid[-ry:ry + 1, -rx:rx + 1]
    disk = (yy / ry) ** 2 + (xx / rx) ** 2 <= 1.0
    xs, ys, seen = np.zeros(nz), np.zeros(nz), np.zeros(nz, bool)
    min_voxels = defaults.RIB_SPINE_MIN_AREA_MM2 / (sy * sx)
    half_width = defaults.RIB_SPINE_WINDOW_MM / sx
    reach = int(np.ceil(half_width + defaults.RIB_SPINE_BLOB_MM / sx))  # the columns a candidate's blob can touch
    for z in range(nz):
        if not body[z].any() or not bone[z].any():
            continue
        body_x = ndimage.center_of_mass(body[z])[1]
        x0 = max(0, int(body_x) - reach)
        core = ndimage.binary_opening(bone[z, :, x0:int(body_x) + reach + 1], disk)
        labels, n = ndimage.label(core)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel())
        centres = ndimage.center_of_mass(core, labels, np.arange(1, n + 1))
        options = [(cy, cx + x0) for (cy, cx), size in zip(centres, sizes[1:])
                   if size >= min_voxels and abs(cx + x0 - body_x) < half_width]
        if options:
            ys[z], xs[z] = max(options)
            seen[z] = True
    if not seen.any():
        return SpineTrack(np.full(nz, nx / 2.0), np.full(nz, ny / 2.0), seen)
    zi = np.arange(nz)
    k = max(1, int(round(defaults.RIB_SPINE_SMOOTH_MM / spacing_zyx[0])))
    zs = zi[seen]
    ys_s = np.array([np.median(ys[seen][np.abs(zs - z) <= k]) if np.any(np.abs(zs - z) <= k) else np.nan for z in zi])
    xs_s = np.array([np.median(xs[seen][np.abs(zs - z) <= k]) if np.any(np.abs(zs - z) <= k) else np.nan for z in zi])
    ok = ~np.isnan(ys_s)
    return SpineTrack(x=np.interp(zi, zi[ok], xs_s[ok]), y=np.interp(zi, zi[ok], ys_s[ok]), seen=seen)


@dataclass
class ColumnLandmarks:
    """What the rib step and the vertebral count both start from, on the working grid."""

    canon: CanonicalVolume
    grid: WorkingGrid
    body: np.ndarray
    bone: np.ndarray
    track: SpineTrack


def column_landmarks(image, slice_mm: float = 0.0) -> ColumnLandmarks:
    """Canonical view -> working grid -> body, bone and spine track of a CT (sitk.Image, HU); `slice_mm`
    coarsens the working slices to about that (the count alone needs no finer: SPINE_WORK_SLICE_MM)."""
    canon = canonical_volume(image)
    grid = working_grid(np.asarray(canon.array), canon.spacing_zyx, slice_mm)
    body = body_mask(grid.hu)
    bone = bone_mask(grid.hu, body, grid.spacing_zyx)
    return ColumnLandmarks(canon, grid, body, bone, spine_track(bone, body, grid.spacing_zyx))


def too_coarse_for_ribs(spacing_zyx) -> Optional[str]:
    """Why voxels this size (canonical z, y, x in mm) are too coarse to find ribs, or None. A rib is
    5-8 mm thick: a few voxels at least. A hair's tolerance, as readers derive 5 mm as 5.000000000000001."""
    sz, sy, sx = (float(v) for v in spacing_zyx)
    tol = 1e-6
    if max(sy, sx) > defaults.RIB_MAX_PIXEL_MM + tol or sz > defaults.RIB_MAX_SLICE_MM + tol:
        return (f"voxels of {sx:.1f} x {sy:.1f} x {sz:.1f} mm are too coarse to find ribs (needs at most "
                f"{defaults.RIB_MAX_PIXEL_MM} mm in-plane and {defaults.RIB_MAX_SLICE_MM} mm slices)")
    return None

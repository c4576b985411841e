"""Build one planned fracture into a CT array, in place, from the rib's own bone.

Near the rib the CT is split into a soft-tissue background R and the rib's bone excess E (HU above
the surrounding soft tissue, inside this rib's mask) with bone fraction alpha, so that
`CT = R + alpha * (fill - R) + E` holds exactly. A fracture moves, cuts or folds the bone layer
(alpha, E), sampled at the source of every point, while the background stays: a gap shows the fill
(haematoma-like soft tissue measured around the rib), a shifted fragment overlies lung or muscle.
Everything is evaluated on sub-voxels of at most `SIMULATION_FINE_MM`, averaged to the CT's voxels
(partial volume at the CT's own spacing) and blurred a little (scanner PSF); only the change is
added, so voxels the fracture does not reach keep their exact value. Synthetic soft tissue gets
noise with the CT's local noise level, measured and matched with one estimator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from .. import defaults
from ..ribs.frame import RibFrame
from .noise import local_noise_sd, noise_field
from .plan import FractureSpec, perpendicular_basis


@dataclass(frozen=True)
class Grid:
    """Voxel -> LPS map of the CT: lps = origin + matrix @ (i, j, k)."""

    matrix: np.ndarray
    origin: np.ndarray
    shape_kji: tuple[int, int, int]

    @property
    def spacing_ijk(self) -> np.ndarray:
        return np.linalg.norm(self.matrix, axis=0)

    def to_lps(self, kji: np.ndarray) -> np.ndarray:
        return self.origin + np.asarray(kji, float)[..., ::-1] @ self.matrix.T

    def to_kji(self, lps: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.matrix, np.asarray(lps, float) - self.origin)[::-1]


@dataclass(frozen=True)
class BuiltFracture:
    """What was built: the spec, where, the label's size and the intensities used."""

    spec: FractureSpec
    box: tuple[slice, slice, slice]  # [k, j, i] slices of the array that may have changed
    center_lps: tuple[float, float, float]  # centroid of the annotation
    voxel_count: int
    fill_hu: float  # soft-tissue HU filling the gap
    noise_hu: float  # local noise SD matched
    frame: Optional[RibFrame] = field(default=None, repr=False, compare=False)  # the rib it lies on


def fracture_box(grid: Grid, center_lps: np.ndarray, reach_mm: float,
                 inside_mm: float) -> Optional[tuple[slice, slice, slice]]:
    """Index box holding the ball of `reach_mm` (symmetric about the centre voxel, then clipped to the
    CT, so any storage order gives the same voxels); None unless the ball of `inside_mm` is in the CT."""
    c = np.rint(grid.to_kji(center_lps)).astype(int)
    spacing = grid.spacing_ijk[::-1]
    need = np.ceil(inside_mm / spacing).astype(int)
    if np.any(c - need < 0) or np.any(c + need >= np.array(grid.shape_kji)):
        return None
    half = np.ceil(reach_mm / spacing).astype(int) + 2
    lo, hi = np.maximum(c - half, 0), np.minimum(c + half + 1, grid.shape_kji)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _fine_offsets(spacing_kji: np.ndarray) -> np.ndarray:
    """(n, 3) sub-voxel offsets (index units, centred) no coarser than SIMULATION_FINE_MM."""
    per_axis = [(np.arange(f) + 0.5) / f - 0.5
                for f in np.ceil(spacing_kji / defaults.SIMULATION_FINE_MM).astype(int)]
    return np.array(list(product(*per_axis)))


def _across_break(spec: FractureSpec, frame: RibFrame, index: int, points: np.ndarray) -> np.ndarray:
    """Signed distance (mm) of points from break `index`'s rough surface: its plane, offset by waves
    across it so the fracture line is jagged, not ruled."""
    c, _ = frame.at(spec.breaks_mm[index])
    n = np.asarray(spec.normals[index])
    e1, e2 = perpendicular_basis(n)
    p = points - c
    a1, a2 = p @ e1, p @ e2
    l1, l2, l3 = defaults.FRACTURE_LINE_WAVELENGTHS_MM
    ph = spec.jag_phases
    waves = (np.sin(2 * np.pi * a1 / l1 + ph[0]) + np.sin(2 * np.pi * a2 / l2 + ph[1])
             + np.sin(2 * np.pi * (a1 + a2) / l3 + ph[2]))
    return p @ n - spec.jag_mm / 3 * waves


def _pieces(spec: FractureSpec, frame: RibFrame, y: np.ndarray, arc: np.ndarray) -> np.ndarray:
    """Which piece of the rib each source point belongs to (0 from the head), -1 inside a gap."""
    piece = np.zeros(len(y), int)
    gap = np.zeros(len(y), bool)
    for index, t in enumerate(spec.breaks_mm):
        u = _across_break(spec, frame, index, y)
        near = np.abs(arc - t) <= defaults.SIMULATION_WINDOW_MM
        after = np.where(near, u > spec.gap_mm / 2, arc > t)
        before = np.where(near, u < -spec.gap_mm / 2, arc < t)
        gap |= ~after & ~before
        piece += after
    return np.where(gap, -1, piece)


def _shift(spec: FractureSpec, frame: RibFrame, x: np.ndarray, arc: np.ndarray) -> np.ndarray:
    """Displacement of the moved piece at output points x (held in full near the break, then eased out)."""
    shift = np.asarray(spec.shift_lps)
    if spec.kind == 4:
        return np.broadcast_to(shift, x.shape)
    t = spec.breaks_mm[0]
    c, _ = frame.at(t)
    s = np.maximum(0.0, (arc - t) * (1 if spec.moved_piece == 1 else -1))
    ramp = np.clip((s - defaults.SIMULATION_HOLD_MM) / (defaults.SIMULATION_DECAY_MM - defaults.SIMULATION_HOLD_MM), 0, 1)
    ease = 0.5 * (1 + np.cos(np.pi * ramp))
    turn = np.deg2rad(spec.angulation_deg) * np.cross(np.asarray(spec.angulation_axis), x - c)
    return (shift + turn) * ease[:, None]


def _bone_after(spec: FractureSpec, frame: RibFrame, x: np.ndarray, arc: np.ndarray, foot: np.ndarray,
                sample) -> tuple[np.ndarray, np.ndarray]:
    """(alpha', E') of the fractured rib at output points x; `sample(field, points)` reads alpha or E."""
    if spec.kind == 2:
        u = _across_break(spec, frame, 0, x)
        crack = ((np.abs(u) < spec.gap_mm / 2) & (np.abs(arc - spec.breaks_mm[0]) <= defaults.SIMULATION_WINDOW_MM)
                 & ((x - foot) @ np.asarray(spec.crack_dir) > spec.crack_offset_mm))
        keep = 1.0 - crack
        return sample("alpha", x) * keep, sample("excess", x) * keep
    if spec.kind == 3:
        t = spec.breaks_mm[0]
        side = np.asarray(spec.bump_dir)
        along = np.exp(-(((arc - t) / defaults.BUCKLE_WIDTH_MM) ** 2))
        outward = np.clip((x - foot) @ side / defaults.BUCKLE_RAMP_MM, 0.0, 1.0)
        y = x - side * (spec.bump_mm * along * outward)[:, None]
        alpha = sample("alpha", y)
        band = np.exp(-(((arc - t) / defaults.BUCKLE_SCLEROSIS_MM) ** 2))
        return alpha, sample("excess", y) + spec.sclerosis_hu * alpha * band
    alpha = np.zeros(len(x))
    excess = np.zeros(len(x))
    for piece in range(len(spec.breaks_mm) + 1):
        if piece == spec.moved_piece:
            y = x - _shift(spec, frame, x, arc)
            arc_y = frame.locate(y)[0]
        else:
            y, arc_y = x, arc
        mine = _pieces(spec, frame, y, arc_y) == piece
        alpha = np.maximum(alpha, sample("alpha", y) * mine)
        excess = np.maximum(excess, sample("excess", y) * mine)
    return alpha, excess


def _soft_fill(hu: np.ndarray, dist_rib: np.ndarray) -> float:
    near, far = defaults.SOFT_FILL_SHELL_MM
    shell = (dist_rib > near) & (dist_rib <= far) & (hu >= defaults.SOFT_TISSUE_HU[0]) & (hu <= defaults.SOFT_TISSUE_HU[1])
    value = float(np.median(hu[shell])) if shell.any() else float(np.mean(defaults.SOFT_FILL_CLIP_HU))
    return float(np.clip(value, *defaults.SOFT_FILL_CLIP_HU))


def _rib_mask(rib_map: np.ndarray, spec: FractureSpec, frame: RibFrame, rivals: Sequence[RibFrame],
              lps: np.ndarray, spacing: np.ndarray) -> Optional[np.ndarray]:
    """This rib's voxels in the box: its label value, near its own centreline and nearer to it than to
    any other rib with the same value (unnumbered ribs share one). None where the bone at the breaks
    is not rib-like (a fragment, or a mislabelled scapula, clavicle or vertebra)."""
    rib = rib_map == spec.rib_label
    arc, _, dist = frame.locate(lps[rib])
    mine = dist <= defaults.SIMULATION_RIB_REACH_MM
    for other in rivals:
        mine &= dist < other.locate(lps[rib])[2]
    rib[rib] = mine
    slab_mm = 4.0
    for t in spec.breaks_mm:
        area = np.count_nonzero(np.abs(arc[mine] - t) <= slab_mm / 2) * np.prod(spacing) / slab_mm
        if not defaults.SIMULATION_RIB_AREA_MM2[0] <= area <= defaults.SIMULATION_RIB_AREA_MM2[1]:
            return None
    return rib


def build_fracture(hu: np.ndarray, labels: np.ndarray, rib_map: np.ndarray, grid: Grid, frame: RibFrame,
                   spec: FractureSpec, rng: np.random.Generator,
                   rivals: Sequence[RibFrame] = ()) -> Optional[BuiltFracture]:
    """Build `spec` into `hu` (float [k, j, i], changed in place) and its annotation into `labels`;
    `rivals` are the other ribs sharing this rib's label value. Returns None, changing nothing, where
    the site is unusable (off the CT, no rib-like bone there, or the annotation would touch another)."""
    center, _ = frame.at(spec.center_arc_mm)
    span = 0.5 * (spec.breaks_mm[-1] - spec.breaks_mm[0])
    box = fracture_box(grid, center, spec.reach_mm, span + spec.extent_mm + defaults.SIMULATION_MARGIN_MM)
    if box is None:
        return None
    h = hu[box].astype(np.float32)
    spacing = grid.spacing_ijk[::-1]
    kji = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij"), axis=-1)
    lps = grid.to_lps(kji)
    rib = _rib_mask(rib_map[box], spec, frame, rivals, lps, spacing)
    ball = np.linalg.norm(lps - center, axis=-1) <= spec.reach_mm - defaults.SIMULATION_MARGIN_MM + 2.0
    if rib is None or not (rib & ball).any():
        return None
    dist_rib = ndimage.distance_transform_edt(~rib, sampling=spacing)
    fill = _soft_fill(h, dist_rib)
    rib_d = ndimage.binary_dilation(rib, np.ones((3, 3, 3), bool))
    fields = {"alpha": (np.clip((h - fill) / defaults.BONE_EXCESS_FULL_HU, 0, 1) * rib_d).astype(np.float32),
              "excess": (np.maximum(h - fill, 0) * rib_d).astype(np.float32)}
    fields["back"] = h - fields["excess"]
    fields["solid"] = ((h >= fill) & rib_d).astype(np.float32)
    origin = np.array([s.start for s in box], float)

    def sample(name: str, points_lps: np.ndarray) -> np.ndarray:
        # Each voxel is taken as uniform over its extent (nearest sample), so the sub-voxels of an
        # untouched voxel average back to its own value and a cut removes exactly the bone it covers.
        local = np.linalg.solve(grid.matrix, (points_lps - grid.origin).T)[::-1] - origin[:, None]
        return ndimage.map_coordinates(fields[name], local, order=0, mode="nearest")

    move = np.linalg.norm(spec.shift_lps) + np.deg2rad(spec.angulation_deg) * defaults.SIMULATION_HOLD_MM + spec.bump_mm
    active = np.argwhere(ball & (dist_rib <= move + 1.5))
    offsets = _fine_offsets(spacing)
    x = grid.to_lps((active[:, None, :] + origin + offsets[None]).reshape(-1, 3))
    arc, foot, _ = frame.locate(x)
    alpha0, back = sample("alpha", x), sample("back", x)
    alpha1, excess1 = _bone_after(spec, frame, x, arc, foot, sample)
    change = alpha1 * (fill - back) + excess1 - (alpha0 * (fill - back) + sample("excess", x))
    synthetic = sample("solid", x) * np.maximum(alpha0 - alpha1, 0)
    n_sub = len(offsets)
    local = tuple(active.T)
    diff = np.zeros(h.shape, np.float32)
    diff[local] = change.reshape(-1, n_sub).mean(axis=1)
    weight = np.zeros(h.shape, np.float32)
    weight[local] = synthetic.reshape(-1, n_sub).mean(axis=1)
    bone_after = rib.copy()
    bone_after[local] |= alpha1.reshape(-1, n_sub).mean(axis=1) > 0.5
    sigma = defaults.PSF_SIGMA_VOXELS
    diff = ndimage.gaussian_filter(diff, sigma, truncate=3.0)
    weight = np.clip(ndimage.gaussian_filter(weight, sigma, truncate=3.0), 0, 1)
    noise_sd = local_noise_sd(h, dist_rib > defaults.NOISE_AWAY_FROM_BONE_MM)
    amp = noise_sd * np.sqrt(1 - (1 - weight) ** 2)
    h += diff + amp * noise_field(h.shape, grid, rng)
    region = _annotation(spec, frame, bone_after, lps, spacing)
    if not region.any() or labels[box][region].any() or not (region & rib).any():
        return None
    hu[box] = h
    labels[box][region] = spec.label_id
    centre = lps[region].mean(axis=0)
    return BuiltFracture(spec, box, tuple(float(v) for v in centre), int(region.sum()), fill, noise_sd, frame)


def _annotation(spec: FractureSpec, frame: RibFrame, bone_after: np.ndarray, lps: np.ndarray,
                spacing: np.ndarray) -> np.ndarray:
    """RibFrac-like annotation: the broken bone and a margin around it, a few mm along the rib per break."""
    near = ndimage.distance_transform_edt(~bone_after, sampling=spacing) <= defaults.SIMULATION_LABEL_MARGIN_MM
    arc, _, dist = frame.locate(lps[near])
    extent = spec.extent_mm + 0.5 * float(np.linalg.norm(spec.shift_lps))
    along = np.min([np.abs(arc - t) for t in spec.breaks_mm], axis=0) <= extent
    region = np.zeros(bone_after.shape, bool)
    region[near] = along & (dist <= defaults.SIMULATION_RIB_REACH_MM)
    return region

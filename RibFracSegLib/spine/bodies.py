"""Vertebral bodies along the spine track: a profile of the bone at the body's centre, discs as its
departures from the marrow level, bodies between consecutive discs.

Why either direction: with thin slices a disc is darker than marrow, but at 2.5-5 mm the disc is
averaged with its two cortical endplates and the level reads brighter than the (often fatty)
marrow of an older patient's body. The marrow itself fills most of the column's length, so a
running median follows it, and the discs are where the profile leaves it furthest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.interpolate import make_smoothing_spline
from scipy.signal import find_peaks

from .. import defaults
from ..masks import deepest_point
from ..ribs.anatomy import SpineTrack


@dataclass
class VertebralBody:
    """One body on the working grid: slices [bottom, top] (inclusive, z up) between two discs."""

    bottom: float  # working-grid slice of the disc (or the CT's edge) below
    top: float  # ... above
    cut_below: bool = False  # the CT's edge, not a disc, bounds it below (may be incomplete)
    cut_above: bool = False
    joint: bool = False  # between two separately found chains of discs: counting across it is unsure

    @property
    def centre(self) -> float:
        return 0.5 * (self.bottom + self.top)

    @property
    def complete(self) -> bool:
        return not (self.cut_below or self.cut_above)


def _spine_piece(bone_slice: np.ndarray, cy: int, cx: int) -> np.ndarray:
    """The piece of (hole-filled) bone at (cy, cx), or the nearest piece: the vertebra, not the
    contrast-filled aorta beside it, which is as bright and, where the marrow is fatty, thicker."""
    labels, n = ndimage.label(ndimage.binary_fill_holes(bone_slice))
    if n == 0:
        return labels > 0
    label = labels[cy, cx]
    if label == 0:
        _, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
        label = labels[iy[cy, cx], ix[cy, cx]]
    return labels == label


def body_centres(bone: np.ndarray, hu: np.ndarray, track: SpineTrack, spacing_zyx) -> SpineTrack:
    """The spine track moved to each slice's vertebral body centre: the deepest point of the vertebra's
    bone once the spinal canal is taken out.

    `spine_track` gives the centre of mass of the vertebra's bone, which in the lumbar spine (thick
    arches, holes filled) falls in the spinal canal; the profile must sample marrow, not the canal.
    The bone mask fills the canal with the marrow (both are holes in the cortex), so the canal is told
    by its fluid: smoothed HU below SPINE_CANAL_HU, which fatty marrow's trabeculae stay above.
    """
    nz = bone.shape[0]
    sy, sx = spacing_zyx[1], spacing_zyx[2]
    r = defaults.SPINE_CENTRE_SEARCH_MM
    ry, rx = int(np.ceil(r / sy)), int(np.ceil(r / sx))
    sigma = (defaults.SPINE_CANAL_SMOOTH_MM / sy, defaults.SPINE_CANAL_SMOOTH_MM / sx)
    ys, xs, seen = track.y.copy(), track.x.copy(), np.zeros(nz, bool)
    for z in range(nz):
        cy, cx = int(round(track.y[z])), int(round(track.x[z]))
        y0, x0 = max(0, cy - ry), max(0, cx - rx)
        box = (z, slice(y0, cy + ry + 1), slice(x0, cx + rx + 1))
        piece = _spine_piece(bone[box], cy - y0, cx - x0)
        if piece.sum() * sy * sx < defaults.RIB_SPINE_MIN_AREA_MM2:
            continue
        piece &= ndimage.gaussian_filter(hu[box], sigma) > defaults.SPINE_CANAL_HU
        j, i = deepest_point(piece, (sy, sx))
        ys[z], xs[z], seen[z] = y0 + j, x0 + i, True
    if seen.sum() >= 3:
        k = max(3, int(round(defaults.RIB_SPINE_SMOOTH_MM / spacing_zyx[0])) | 1)
        zi = np.arange(nz)
        ys = ndimage.median_filter(np.interp(zi, zi[seen], ys[seen]), size=k, mode="nearest")
        xs = ndimage.median_filter(np.interp(zi, zi[seen], xs[seen]), size=k, mode="nearest")
    return SpineTrack(x=xs, y=ys, seen=seen | track.seen)


def centre_profile(hu: np.ndarray, track: SpineTrack, spacing_zyx, directions: np.ndarray | None = None) -> np.ndarray:
    """Mean clipped HU within SPINE_PROFILE_RADIUS_MM of the vertebral body's centre, per slice.

    The disc is axial where the column stands and across the column where it leans so far that the
    axial disc would reach more than SPINE_LEAN_SLICES slices above and below its centre: there (the
    cervico-thoracic junction of a kyphotic chest leans 40-45 degrees on LIDC-IDRI-0001) an axial disc
    through a body also cuts the discs above and below it, and the disc spaces blur away. Where the
    column stands the axial disc is the same section, taken on the slice's own voxels. `directions`:
    column_directions(track, spacing_zyx), when at hand."""
    nz, ny, nx = hu.shape
    sp = np.asarray(spacing_zyx, float)
    r = defaults.SPINE_PROFILE_RADIUS_MM
    ry, rx = int(np.ceil(r / sp[1])), int(np.ceil(r / sp[2]))
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    lo, hi = defaults.SPINE_PROFILE_HU
    tangent = column_directions(track, sp) if directions is None else directions
    across = leaning(tangent, sp[0])
    a, b = np.meshgrid(np.arange(-r, r + 1e-6, 1.0), np.arange(-r, r + 1e-6, 1.0))  # 1 mm points on the disc
    a, b = a[a ** 2 + b ** 2 <= r * r], b[a ** 2 + b ** 2 <= r * r]
    out = np.zeros(nz)
    for z in range(nz):
        if across[z]:
            u = np.cross(tangent[z], (0.0, 0.0, 1.0))  # antero-posterior across the column (it leans forwards/back)
            u /= np.linalg.norm(u)
            v = np.cross(tangent[z], u)
            c = np.array([z, track.y[z], track.x[z]]) * sp
            points = (c + a[:, None] * u + b[:, None] * v) / sp  # mm -> working-grid index
            out[z] = np.clip(ndimage.map_coordinates(hu, points.T, order=1, mode="nearest"), lo, hi).mean()
            continue
        cy, cx = int(round(track.y[z])), int(round(track.x[z]))
        ys, xs = yy + cy, xx + cx
        inside = ((yy * sp[1]) ** 2 + (xx * sp[2]) ** 2 <= r * r) & (ys >= 0) & (ys < ny) & (xs >= 0) & (xs < nx)
        out[z] = np.clip(hu[z][ys[inside], xs[inside]], lo, hi).mean() if inside.any() else lo
    return out


def body_widths(bone: np.ndarray, track: SpineTrack, spacing_zyx) -> np.ndarray:
    """Left-right width (mm) of the vertebral body per slice: the shorter run of (hole-filled) bone on the
    rows through the body's centre and SPINE_WIDTH_FRONT_MM in front of it, median-filtered over SPINE_WIDTH_MEDIAN_MM; NaN where no slice near has one.

    Why: a body is never much lower than it is wide (real CTs: height with its disc / width 0.6-0.95 from
    T1 to L5), while the contrast-filled basivertebral veins of a thin-slice CT brighten each body's
    middle as an endplate does, so that chains of half bodies would pass the fixed height limits."""
    nz = bone.shape[0]
    out = np.full(nz, np.nan)
    front = int(round(defaults.SPINE_WIDTH_FRONT_MM / spacing_zyx[1]))
    for z in range(nz):
        cx = int(np.clip(round(track.x[z]), 0, bone.shape[2] - 1))
        filled = ndimage.binary_fill_holes(bone[z])
        runs = []  # the centre row meets the rib heads at the costovertebral joints, the row in front the aorta
        for cy in {int(np.clip(round(track.y[z]) - d, 0, bone.shape[1] - 1)) for d in (0, front)}:
            labels, _ = ndimage.label(filled[cy])
            if labels[cx]:
                runs.append((labels == labels[cx]).sum() * spacing_zyx[2])
        if runs:
            out[z] = min(runs)
    half = max(1, int(round(0.5 * defaults.SPINE_WIDTH_MEDIAN_MM / spacing_zyx[0])))
    smooth = np.full(nz, np.nan)
    for z in range(nz):
        near = out[max(0, z - half):z + half + 1]
        if np.isfinite(near).sum() >= max(1, half // 2):
            smooth[z] = np.nanmedian(near)
    return smooth


def column_directions(track: SpineTrack, spacing_zyx) -> np.ndarray:
    """Unit direction (z, y, x in mm) of the column at each slice, from smoothing splines of the track.

    Why splines: they follow the column's bends (a few vertebrae long) up to the CT's edges, where the
    column of a chest CT leans most; a running mean flattens the ends, local polynomial fits over a
    body's height follow the track's slice-to-slice jitter."""
    sp = np.asarray(spacing_zyx, float)
    z = np.arange(track.y.size) * sp[0]
    k = max(3, int(round(defaults.SPINE_TRACK_MEDIAN_MM / sp[0])) | 1)  # a body centre that jumps at a disc: out
    centre = np.stack([z, ndimage.median_filter(track.y, size=k, mode="nearest") * sp[1],
                       ndimage.median_filter(track.x, size=k, mode="nearest") * sp[2]], axis=1)
    if z.size >= 5:
        for d in (1, 2):
            centre[:, d] = make_smoothing_spline(z, centre[:, d], lam=defaults.SPINE_TRACK_SPLINE_LAMBDA)(z)
    t = np.gradient(centre, axis=0) if z.size > 1 else np.array([[1.0, 0.0, 0.0]])
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def leaning(directions: np.ndarray, dz_mm: float) -> np.ndarray:
    """Slices where the column leans so far that an axial disc of SPINE_PROFILE_RADIUS_MM around its
    centre would reach more than SPINE_LEAN_SLICES slices up and down (18 degrees at 2.5 mm slices, 39 at 5)."""
    sine = np.sqrt(np.clip(1.0 - directions[:, 0] ** 2, 0.0, 1.0))
    return defaults.SPINE_PROFILE_RADIUS_MM * sine > defaults.SPINE_LEAN_SLICES * dz_mm


def column_arc_mm(directions: np.ndarray, dz_mm: float) -> np.ndarray:
    """Position of each slice's profile sample along the column from the lowest slice (mm): where the
    column leans (`leaning`) a slice step is the longer step along it, as a leaning column shows its
    bodies shortened in z and the body-height limits are lengths along the column; elsewhere the slice
    step, as the profile there is axial."""
    step = np.where(leaning(directions, dz_mm), dz_mm / np.clip(directions[:, 0], 0.3, 1.0), dz_mm)
    return np.concatenate([[0.0], np.cumsum(0.5 * (step[1:] + step[:-1]))])


def disc_profile(profile: np.ndarray, dz_mm: float) -> np.ndarray:
    """How far each slice departs from the local marrow level, smoothed along z, the disc side first.

    The disc side is the one with the larger departures: marrow fills most of the column, so the
    running median sits at the marrow level and only the short disc levels leave it far - downwards
    for dark discs, upwards for bright endplate bands. The other side counts at SPINE_MINOR_SIDE:
    a dark disc without bright endplates in a CT of bright ones still shows.
    """
    k = max(3, int(round(defaults.SPINE_MARROW_WINDOW_MM / dz_mm)) | 1)
    marrow = ndimage.median_filter(profile, size=k, mode="nearest")
    sigma = max(defaults.SPINE_DISC_SMOOTH_MM, 0.5 * dz_mm) / dz_mm
    dev = ndimage.gaussian_filter1d(profile - marrow, sigma, mode="nearest")
    up, down = np.clip(dev, 0, None), np.clip(-dev, 0, None)
    if np.percentile(dev, 95) < -np.percentile(dev, 5):
        up, down = down, up
    return up + defaults.SPINE_MINOR_SIDE * down


def _chain(discness: np.ndarray, dz_mm: float, scale: float, edges: tuple[bool, bool] = (True, True),
           arc_mm: np.ndarray | None = None, widths_mm: np.ndarray | None = None) -> list[int]:
    """The best chain of disc slices in one stretch of the column.

    Every local maximum is a candidate; the chosen chain maximises the candidates' strength minus a
    penalty on height changes between neighbouring bodies (vertebrae grow slowly down the column),
    with every body between SPINE_MIN_BODY_MM (or SPINE_MIN_BODY_WIDTH_RATIO of the body's width,
    `widths_mm` per slice, when larger) and SPINE_MAX_BODY_MM: a spurious maximum inside a body would
    make two short bodies, a missed disc one too tall.
    """
    if discness.size < 3 or not np.any(discness > 0):
        return []
    cand, _ = find_peaks(discness, distance=max(1, int(0.5 * defaults.SPINE_MIN_BODY_MM / dz_mm)),
                         prominence=defaults.SPINE_CANDIDATE_PROMINENCE * scale)
    edge = defaults.SPINE_EDGE_MM / dz_mm  # the filters' edge effects make maxima at the CT's ends
    cand = cand[((cand > edge) | (not edges[0])) & ((cand < discness.size - 1 - edge) | (not edges[1]))]
    if cand.size == 0:
        return []
    strength = discness[cand] / scale
    z = cand * dz_mm if arc_mm is None else arc_mm[cand]  # mm along the column
    lo, hi, lam = defaults.SPINE_MIN_BODY_MM, defaults.SPINE_MAX_BODY_MM, defaults.SPINE_REGULARITY
    strength = strength - defaults.SPINE_DISC_FLOOR  # weak maxima (marrow texture, noise) cost a disc
    max_step = np.log(defaults.SPINE_MAX_HEIGHT_RATIO)
    n = cand.size
    best = np.full((n, n), -np.inf)  # best[j, k]: chain ending ... j, k
    prev = np.full((n, n), -1)
    floor = np.full(discness.size, lo) if widths_mm is None else \
        np.fmax(lo, defaults.SPINE_MIN_BODY_WIDTH_RATIO * np.nan_to_num(widths_mm, nan=0.0))
    for k in range(n):
        for j in range(k):
            g = z[k] - z[j]
            if not floor[(cand[j] + cand[k]) // 2] <= g <= hi:
                continue
            best[j, k] = strength[j] + strength[k]
            for i in np.flatnonzero(np.isfinite(best[:j, j])):
                ratio = np.log(g / (z[j] - z[i]))
                if abs(ratio) > max_step:
                    continue
                v = best[i, j] - lam * ratio ** 2 + strength[k]
                if v > best[j, k]:
                    best[j, k], prev[j, k] = v, i
    if not np.isfinite(best).any():  # a lone disc: only a clear one (noise makes weak maxima near the ends)
        i = int(np.argmax(discness[cand]))
        return [int(cand[i])] if discness[cand[i]] >= defaults.SPINE_LONE_DISC * scale else []
    j, k = np.unravel_index(int(np.argmax(best)), best.shape)
    chain = [k, j]
    while prev[chain[-1], chain[-2]] >= 0:
        chain.append(int(prev[chain[-1], chain[-2]]))
    return [int(cand[c]) for c in chain[::-1]]


def find_discs(discness: np.ndarray, dz_mm: float, arc_mm: np.ndarray | None = None,
               widths_mm: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Working-grid slices (parabola-refined) of the discs along the column, bottom to top, and the
    chain each belongs to: the best chain, then chains of the stretches it leaves above and below
    (where the height ratio broke it). `arc_mm`: each slice's place along the column (column_arc_mm),
    which the body-height limits measure; slices dz_mm apart when not given. `widths_mm`: the body's
    width per slice (body_widths), which raises the lower height limit where the body is wide."""
    gap = int(np.ceil(defaults.SPINE_MIN_BODY_MM / dz_mm))
    scale = float(np.percentile(discness, 90)) if discness.size else 0.0
    if scale <= 0:
        return np.zeros(0), np.zeros(0, int)
    peaks: list[int] = []
    chain_of: dict[int, int] = {}
    todo = [(0, discness.size)]
    while todo:
        lo, hi = todo.pop()
        if hi - lo < 3:
            continue
        found = [lo + p for p in _chain(discness[lo:hi], dz_mm, scale, edges=(lo == 0, hi == discness.size),
                                        arc_mm=None if arc_mm is None else arc_mm[lo:hi],
                                        widths_mm=None if widths_mm is None else widths_mm[lo:hi])]
        if not found:
            continue
        peaks += found
        chain_of.update({p: len(set(chain_of.values())) for p in found})
        todo += [(lo, min(found) - gap + 1), (max(found) + gap, hi)]
    peaks.sort()
    out = []
    for p in peaks:
        if 0 < p < len(discness) - 1:
            a, b, c = discness[p - 1:p + 2]
            d = a - 2 * b + c
            out.append(p + (0.5 * (a - c) / d if d < 0 else 0.0))
        else:
            out.append(float(p))
    return np.array(out), np.array([chain_of[p] for p in peaks], int)


def bodies_between(discs: np.ndarray, nz: int, dz_mm: float, chains: np.ndarray | None = None) -> list[VertebralBody]:
    """Bodies between consecutive discs, plus the pieces cut by the CT's edges when tall enough to hold
    a body centre (more than half the neighbouring body beyond the outermost disc)."""
    chains = np.zeros(len(discs), int) if chains is None else chains
    out = [VertebralBody(float(a), float(b), joint=bool(ca != cb))
           for a, b, ca, cb in zip(discs[:-1], discs[1:], chains[:-1], chains[1:])]
    if discs.size == 0:
        return out
    default = 2 * defaults.SPINE_MIN_BODY_MM / dz_mm
    below = float(discs[1] - discs[0]) if discs.size > 1 else default
    above = float(discs[-1] - discs[-2]) if discs.size > 1 else default
    if discs[0] > 0.5 * below:
        out.insert(0, VertebralBody(max(0.0, float(discs[0]) - below), float(discs[0]), cut_below=discs[0] < below))
    if nz - 1 - discs[-1] > 0.5 * above:
        out.append(VertebralBody(float(discs[-1]), min(nz - 1.0, float(discs[-1]) + above),
                                 cut_above=nz - 1 - discs[-1] < above))
    return out

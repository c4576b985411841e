"""Ribs followed as curves: from each rib's posterior arc outward to its anterior end and inward to
its head, one cross-section at a time, on the CT's own voxels.

A rib is a thin tube that bends slowly (radius of curvature >= ~30 mm), so from a point and a
direction the next centre is predicted a step ahead; the cross-section there (a plane across the
predicted direction, sampled at full resolution) shows the rib as the bone blob nearest the
prediction, and its centroid corrects the point by at most a little per step. Nothing else the
chest holds matters: a scapula or clavicle touching the rib only shifts the centroid within that
small correction, a lung mask is never needed, and a displaced break is a few sections without bone
(crossed along the predicted path when the rib shows again within RIB_TRACE_GAP_MM). A trace ends at
a gap longer than that (the costochondral junction: cartilage is darker than the bone threshold),
at a sharp turn (calcified cartilage bends up to the sternum), at the sternum zone, or at the head
beside the vertebral body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from .. import defaults


@dataclass
class Trace:
    """One rib's path in canonical mm ([z, y, x]: superior, posterior, left), head first."""

    side: str
    seed_label: int
    points_mm: np.ndarray  # (n, 3)
    seed_at: int  # index of the seed point (the posterior arc in the paravertebral band)
    stop: str  # why the outward trace ended
    on_bone: np.ndarray  # (n,) bool: the point's cross-section showed the rib (False: carried over a gap)

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(np.diff(self.points_mm, axis=0), axis=1).sum()) if len(self.points_mm) > 1 else 0.0


class Sampler:
    """Cross-sections of a CT (canonical array, HU) at full resolution, in mm."""

    def __init__(self, hu: np.ndarray, spacing_zyx) -> None:
        self.hu = hu
        self.spacing = np.asarray(spacing_zyx, float)
        self.upper = (np.array(hu.shape) - 1) * self.spacing
        r, h = defaults.RIB_TRACE_SECTION_MM, defaults.RIB_TRACE_PIXEL_MM
        self.offsets = np.arange(-r, r + h / 2, h)
        a, b = np.meshgrid(self.offsets, self.offsets, indexing="ij")
        self.a, self.b = a.ravel(), b.ravel()
        self.radius = np.hypot(a, b)  # each pixel's distance from the section's centre (mm)
        # the rib's own share of a section: an ellipse as thick (u) and as tall (v) as a rib, so bone
        # touching it on either face (scapula, clavicle, a neighbour's cartilage) is not taken in
        self.disk = (a / defaults.RIB_TRACE_TAKE_MM[0]) ** 2 + (b / defaults.RIB_TRACE_TAKE_MM[1]) ** 2 <= 1.0
        self.sigma = defaults.RIB_TRACE_SMOOTH_MM / h

    def inside(self, p: np.ndarray) -> bool:
        return bool(np.all(p >= 0) and np.all(p <= self.upper))

    def section(self, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """HU on the plane through `p` across `d` (n x n), and its in-plane axes u, v (mm vectors)."""
        u, v = cross_axes(d)
        pts = p[None, :] + self.a[:, None] * u[None, :] + self.b[:, None] * v[None, :]
        values = ndimage.map_coordinates(self.hu, (pts / self.spacing).T, order=1, cval=-1000.0, output=np.float32)
        n = len(self.offsets)
        img = values.reshape(n, n)
        if self.sigma >= 0.3:
            img = ndimage.gaussian_filter(img, self.sigma)
        return img, u, v


def cross_axes(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors across direction `d` ([z, y, x]); `v` as near 'superior' as the direction allows
    (a rib's height), `u` its thickness."""
    ref = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    v = ref - (ref @ d) * d
    v /= np.linalg.norm(v)
    u = np.cross(d, v)
    return u, v


def _blob(img: np.ndarray, sampler: Sampler) -> Optional[tuple[float, float, float]]:
    """(a, b, area mm2) of the rib's bone in a cross-section: the bone blob nearest its centre, within
    RIB_TRACE_CATCH_MM, its part inside the take ellipse; None when there is none."""
    bone = img > defaults.RIB_TRACE_BONE_HU
    if not bone.any():
        return None
    bone = ndimage.binary_fill_holes(bone)
    labels, n = ndimage.label(bone, structure=np.ones((3, 3), bool))
    h = defaults.RIB_TRACE_PIXEL_MM
    nearest = ndimage.minimum(sampler.radius, labels, np.arange(1, n + 1))
    k = int(np.argmin(nearest))
    if nearest[k] > defaults.RIB_TRACE_CATCH_MM:
        return None
    mine = (labels == k + 1) & sampler.disk
    area = float(mine.sum()) * h * h
    if area < defaults.RIB_TRACE_MIN_AREA_MM2:
        return None
    a, b = np.nonzero(mine)
    return float(sampler.offsets[a].mean()), float(sampler.offsets[b].mean()), area


def follow(sampler: Sampler, start: np.ndarray, direction: np.ndarray, stop_at, max_mm: float,
           gap_mm: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Points (mm) from `start` (excluded) along a rib in `direction`, whether each is on bone (False:
    carried across a gap), and the reason it ended.
    `stop_at(p, d) -> str` names a place where the rib must end ('' to go on).

    A section whose blob would bend the path more than RIB_TRACE_MAX_TURN_DEG over RIB_TRACE_TURN_MM
    is another bone touching the rib (a neighbour, the scapula, cartilage turning to the sternum):
    it counts as a gap, and the trace goes on along its prediction."""
    step = defaults.RIB_TRACE_STEP_MM
    max_shift = defaults.RIB_TRACE_MAX_SHIFT_MM
    back = max(1, int(round(defaults.RIB_TRACE_DIRECTION_MM / step)))
    turn_back = max(1, int(round(defaults.RIB_TRACE_TURN_MM / step)))
    settle = back + turn_back  # the seed's own direction is rough: no turn test until the path has its own
    points, hit = [np.asarray(start, float)], [True]
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    dirs = [d]
    gap, mass, why, travelled = 0.0, 0.0, "length", 0.0
    while travelled < max_mm:
        predicted = points[-1] + step * d
        if not sampler.inside(predicted):
            why = "edge of the CT"
            break
        img, u, v = sampler.section(predicted, d)
        blob = _blob(img, sampler)
        p, d_new = predicted, d
        if blob is not None and blob[2] > defaults.RIB_TRACE_MAX_AREA_MM2:
            # the rib passes a bone mass (clavicle, scapula, a vertebra at the head): its own centre is
            # hidden there, so the path goes on as predicted, for a while
            mass += step
            if mass > defaults.RIB_TRACE_MAX_MASS_MM:
                why = "bone mass"
                break
            points.append(p), hit.append(False), dirs.append(d)
            travelled += step
            continue
        mass = 0.0
        if blob is not None:
            a, b, _ = blob
            shift = np.hypot(a, b)
            if shift > max_shift:
                a, b = a * max_shift / shift, b * max_shift / shift
            candidate = predicted + a * u + b * v
            chord = candidate - points[max(0, len(points) - back)]
            d_cand = chord / np.linalg.norm(chord)
            bent = len(dirs) > settle and np.degrees(np.arccos(np.clip(d_cand @ dirs[-turn_back], -1, 1))) > \
                defaults.RIB_TRACE_MAX_TURN_DEG
            if not bent:
                p, d_new = candidate, d_cand
            else:
                blob = None
        if blob is None:
            gap += step
            if gap > gap_mm:
                why = "gap"
                break
        else:
            reason = stop_at(p, d_new)
            if reason:
                why = reason
                break
            gap = 0.0
        points.append(p), hit.append(blob is not None)
        d = d_new
        dirs.append(d)
        travelled += step
    hit = np.array(hit)
    last = int(np.flatnonzero(hit)[-1]) if hit.any() else 0
    return np.array(points[1:last + 1]).reshape(-1, 3), hit[1:last + 1], why


def seed_direction(points_mm: np.ndarray, lateral: float) -> np.ndarray:
    """The rib's direction through its seed piece, pointing lateral (`lateral` = +1 towards canonical
    +x, the patient's left). In the paravertebral band a posterior arc runs mostly sideways, so the
    height and depth of the piece are fitted as lines of its left-right position: a piece taller than
    it is wide (two ribs touching, thick slices) still gives a sideways direction, as a main axis would not."""
    x = points_mm[:, 2] - points_mm[:, 2].mean()
    if np.ptp(x) <= 0:
        return np.array([0.0, 0.0, lateral])
    slope_z, slope_y = (float(np.polyfit(x, points_mm[:, a], 1)[0]) for a in (0, 1))
    d = np.array([slope_z, slope_y, 1.0]) * lateral
    return d / np.linalg.norm(d)

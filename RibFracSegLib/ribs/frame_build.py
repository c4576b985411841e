"""Building a rib frame (`frame.RibFrame`) from a rib's centreline: the centreline is resampled,
run on straight past both ends (`RIB_FRAME_END_MM`), smoothed (`RIB_FRAME_SMOOTH_MM`) and cut into
sections every `voxel_mm` of arc, each given a cross-section (u, v): `u` outward, `v` head-wards.

The sections barely twist: (u, v) is a rotation-minimising frame (double reflection, Wang et al.
2008), turned about the tangent by an angle that follows "outward" only slowly (smoothed over
`RIB_FRAME_TURN_SMOOTH_MM` of arc: a real rib is not flat, and a frame without any twist drifts
off outward by up to 80 degrees near the neck of ribs 2-3). A Frenet frame would spin where the rib is
nearly straight.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import defaults
from .centrelines import resample_polyline
from .frame import RibFrame
from .labels import Rib


def _smooth_line(line: np.ndarray, step_mm: float, smooth_mm: float, end_mm: float) -> tuple[np.ndarray, float]:
    """The centreline resampled every `step_mm`, run on straight past both ends (along the chord of
    its last `2 * smooth_mm`: a traced end often curls) by `end_mm` plus the smoothing's reach, then
    smoothed and cut to about `end_mm` beyond the ends, so the run-on joins without a kink; and the
    run-on's length before the head (mm)."""
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))]
    at = np.linspace(0.0, arc[-1], max(3, int(np.ceil(arc[-1] / step_mm)) + 1))
    pts = np.column_stack([np.interp(at, arc, line[:, a]) for a in range(3)])
    step = at[1] - at[0]
    sigma = smooth_mm / step
    k = max(1, min(len(pts) - 1, int(round(2 * smooth_mm / step))))
    pad = int(np.ceil(end_mm / step)) + int(np.ceil(3 * sigma))
    runs = []
    for end, inner in ((pts[0], pts[k]), (pts[-1], pts[-1 - k])):
        d = (end - inner) / max(float(np.linalg.norm(end - inner)), 1e-9)
        runs.append(end + np.outer(np.arange(1, pad + 1) * step, d))
    longer = np.concatenate([runs[0][::-1], pts, runs[1]])
    if sigma > 0:
        longer = ndimage.gaussian_filter1d(longer, sigma, axis=0, mode="nearest")
    keep = int(np.ceil(end_mm / step))
    return longer[pad - keep:pad + len(pts) + keep], float(np.sum(np.linalg.norm(
        np.diff(longer[pad - keep:pad + 1], axis=0), axis=1)))


def _outward(points: np.ndarray, tangent: np.ndarray, centre_lps: np.ndarray) -> np.ndarray:
    """Per section, the horizontal direction away from the body's vertical axis through
    `centre_lps`, made perpendicular to the tangent (not normalised: short where it is ill-defined)."""
    o = points - centre_lps
    o[:, 2] = 0.0
    o /= np.maximum(np.linalg.norm(o, axis=1, keepdims=True), 1e-9)
    return o - np.sum(o * tangent, axis=1, keepdims=True) * tangent


def section_twist_deg(frame: RibFrame) -> np.ndarray:
    """(m - 1,) signed rotation (degrees) of `u` about the tangent from each section to the next,
    beyond the least rotation that turns one tangent into the next: 0 for a frame without twist."""
    t0, t1, u0 = frame.tangent[:-1], frame.tangent[1:], frame.u[:-1]
    axis = np.cross(t0, t1)
    sin, cos = np.linalg.norm(axis, axis=1), np.sum(t0 * t1, axis=1)
    k = axis / np.maximum(sin, 1e-12)[:, None]
    carried = (u0 * cos[:, None] + np.cross(k, u0) * sin[:, None]
               + k * np.sum(k * u0, axis=1, keepdims=True) * (1 - cos)[:, None])  # Rodrigues
    return np.degrees(np.arctan2(np.sum(np.cross(carried, frame.u[1:]) * t1, axis=1),
                                 np.sum(carried * frame.u[1:], axis=1)))


def outward_cosine(frame: RibFrame, centre_lps: Sequence[float],
                   min_weight: float = defaults.RIB_FRAME_OUTWARD_MIN) -> np.ndarray:
    """(m,) cosine between `u` and the direction away from the body's vertical axis through
    `centre_lps` (horizontal, across the rib); NaN where the rib runs nearly straight away from the
    axis (the rib neck) and that direction is not defined (its part across the rib < `min_weight`)."""
    out = _outward(frame.points_lps, frame.tangent, np.asarray(centre_lps, float))
    weight = np.linalg.norm(out, axis=1)
    cos = np.sum(out * frame.u, axis=1) / np.maximum(weight, 1e-9)
    return np.where(weight >= min_weight, cos, np.nan)


def rotation_minimising_axes(points: np.ndarray, tangent: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Cross axis carried along the curve without twist (double reflection, Wang et al. 2008),
    starting from `first` (made perpendicular to the first tangent)."""
    r = np.empty_like(points)
    r[0] = first - np.dot(first, tangent[0]) * tangent[0]
    r[0] /= np.linalg.norm(r[0])
    for i in range(len(points) - 1):
        v1 = points[i + 1] - points[i]
        c1 = np.dot(v1, v1)
        r_l = r[i] - (2.0 / c1) * np.dot(v1, r[i]) * v1
        t_l = tangent[i] - (2.0 / c1) * np.dot(v1, tangent[i]) * v1
        v2 = tangent[i + 1] - t_l
        c2 = np.dot(v2, v2)
        nxt = r_l - (2.0 / c2) * np.dot(v2, r_l) * v2 if c2 > 1e-20 else r_l
        nxt -= np.dot(nxt, tangent[i + 1]) * tangent[i + 1]
        r[i + 1] = nxt / np.linalg.norm(nxt)
    return r


def _frame(rib: Rib, pts: np.ndarray, t: np.ndarray, centre: np.ndarray, voxel_mm: float, half_mm: float,
           arc0_mm: float, turn_smooth_mm: Optional[float]) -> RibFrame:
    """The frame through section centres `pts` (every `voxel_mm` of arc) with unit tangents `t`: the
    rotation-minimising axes turned towards "outward" from the vertical axis through `centre`."""
    out = _outward(pts, t, centre)
    weight = np.linalg.norm(out, axis=1)
    head = weight[: max(1, len(pts) // 10)]
    start = out[int(np.argmax(head))] if head.max() > 1e-6 else np.cross(t[0], [0.0, 0.0, 1.0])
    if np.linalg.norm(start) < 1e-6:  # a vertical rib start with no outward: any axis across it
        start = np.cross(t[0], [1.0, 0.0, 0.0])
    r = rotation_minimising_axes(pts, t, start)
    s = np.cross(t, r)
    defined = np.clip((weight / defaults.RIB_FRAME_OUTWARD_MIN - 0.8) / 0.4, 0.0, 1.0)  # 0 on the neck, 1 beyond
    toward = out / np.maximum(weight, 1e-9)[:, None] * (defined if defined.any() else weight)[:, None]
    outward_in_rmf = np.column_stack([np.sum(toward * r, axis=1), np.sum(toward * s, axis=1)])
    whole = outward_in_rmf.sum(axis=0)
    if turn_smooth_mm is not None:
        local = ndimage.gaussian_filter1d(outward_in_rmf, turn_smooth_mm / voxel_mm, axis=0, mode="nearest")
        weak = np.linalg.norm(local, axis=1) < 1e-3
        local[weak] = whole
        turn = np.arctan2(local[:, 1], local[:, 0])[:, None]
    else:
        turn = np.arctan2(whole[1], whole[0])
    u = np.cos(turn) * r + np.sin(turn) * s
    v = np.cross(t, u)
    if v[:, 2].sum() < 0:
        v = -v
    return RibFrame(rib.name, rib.side, rib.number, float(voxel_mm), int(round(half_mm / voxel_mm)), float(arc0_mm),
                    pts, t, u, v)


def _unit_tangents(points: np.ndarray) -> np.ndarray:
    t = np.gradient(points, axis=0)
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)


def rib_frame(rib: Rib, centre_lps: Optional[Sequence[float]] = None, voxel_mm: float = defaults.RIB_FRAME_VOXEL_MM,
              half_mm: float = defaults.RIB_FRAME_HALF_MM, smooth_mm: float = defaults.RIB_FRAME_SMOOTH_MM,
              end_mm: float = defaults.RIB_FRAME_END_MM,
              turn_smooth_mm: Optional[float] = defaults.RIB_FRAME_TURN_SMOOTH_MM) -> Optional[RibFrame]:
    """The frame of one rib (not sampled yet), or None when its centreline is shorter than 2 voxels.
    `centre_lps`: a point on the body's vertical axis (`rib_frames` passes the centre of all ribs);
    by default the rib's own centroid (the rib curves round the chest). The rotation-minimising
    axes are turned towards "outward" as seen over `turn_smooth_mm` of arc (None: one turn for the
    whole rib, no twist at all)."""
    if voxel_mm <= 0 or half_mm < voxel_mm:
        raise ValueError(f"rib frame needs voxel_mm > 0 and half_mm >= voxel_mm, got {voxel_mm}, {half_mm}")
    line = np.asarray(rib.centreline_lps, float)
    if len(line) < 2 or rib.length_mm < 2 * voxel_mm:
        return None
    centre = np.mean(line, axis=0) if centre_lps is None else np.asarray(centre_lps, float)
    smooth, lead_mm = _smooth_line(line, min(voxel_mm, 1.0), smooth_mm, end_mm)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(smooth, axis=0), axis=1))]
    at = np.arange(int(np.floor(arc[-1] / voxel_mm + 1e-6)) + 1) * voxel_mm  # equal arc steps
    pts = np.column_stack([np.interp(at, arc, smooth[:, a]) for a in range(3)])
    return _frame(rib, pts, _unit_tangents(pts), centre, voxel_mm, half_mm, -lead_mm, turn_smooth_mm)


def centreline_frame(rib: Rib, step_mm: float = defaults.SIMULATION_FRAME_STEP_MM,
                     tangent_smooth_mm: float = defaults.SIMULATION_TANGENT_SMOOTH_MM,
                     centre_lps: Optional[Sequence[float]] = None,
                     half_mm: float = defaults.RIB_FRAME_HALF_MM) -> Optional[RibFrame]:
    """A frame whose sections sit on the rib's centreline as given (resampled every `step_mm` or a
    little less, not smoothed, no run-on: arc 0 is the traced head), tangents from the line smoothed
    over `tangent_smooth_mm` (a voxel-wise centreline wobbles; the rib does not). The simulator
    places breaks in the rib's own bone with it; None for a centreline shorter than 2 steps."""
    line = np.asarray(rib.centreline_lps, float)
    if len(line) < 2 or rib.length_mm < 2 * step_mm:
        return None
    pts = resample_polyline(line, step_mm)
    step = rib.length_mm / (len(pts) - 1)
    t = _unit_tangents(ndimage.gaussian_filter1d(pts, tangent_smooth_mm / step, axis=0, mode="nearest"))
    centre = np.mean(line, axis=0) if centre_lps is None else np.asarray(centre_lps, float)
    return _frame(rib, pts, t, centre, step, max(half_mm, step), 0.0, defaults.RIB_FRAME_TURN_SMOOTH_MM)


def body_centre(ribs: Sequence[Rib]) -> np.ndarray:
    """A point on the body's vertical axis: the mean of all ribs' centreline points (left and right
    ribs balance on the midline; front and back halves of the cage put it mid-chest)."""
    return np.mean(np.concatenate([np.asarray(r.centreline_lps, float).reshape(-1, 3) for r in ribs]), axis=0)


def rib_frames(ribs: Sequence[Rib], ct: Optional[sitk.Image] = None, **kwargs) -> list[RibFrame]:
    """Frames of all ribs (outward: away from the vertical axis through `body_centre`), sampled from
    `ct` when given. Ribs too short for a frame are left out."""
    if not ribs:
        return []
    centre = body_centre(ribs)
    frames = [f for f in (rib_frame(r, centre, **kwargs) for r in ribs) if f is not None]
    if ct is not None:
        array = sitk.GetArrayViewFromImage(ct)
        for f in frames:
            f.sample(ct, array)
    return frames

"""The rib tracer (ribs/trace.py) on synthetic ribs with known centrelines: it follows a curved rib
to its end, crosses a displaced break (3 mm gap, far side shifted 3 mm) as one path, stops at a gap
longer than a break, and does not step onto a bone mass touching the rib."""

from __future__ import annotations

import numpy as np
import pytest

from RibFracSegLib import defaults
from RibFracSegLib.ribs.trace import Sampler, follow, seed_direction

SPACING = (1.5, 0.7, 0.7)  # z, y, x mm
SHAPE = (80, 300, 300)
RADIUS_MM = 80.0  # a rib's lateral arc: a circle in the axial-ish plane, sloping down
CENTRE = np.array([60.0, 105.0, 105.0])  # circle centre (z, y, x mm)


def rib_point(angle: np.ndarray) -> np.ndarray:
    """Centreline of the synthetic rib at `angle` (rad): a circle of RADIUS_MM in y/x, sloping in z."""
    return np.stack([CENTRE[0] - 12.0 * angle, CENTRE[1] + RADIUS_MM * np.sin(angle),
                     CENTRE[2] + RADIUS_MM * np.cos(angle)], axis=-1)


def make_ct(gap_at: float | None = None, gap_mm: float = 3.0, shift_mm: float = 3.0,
            mass: bool = False) -> np.ndarray:
    """CT (HU) holding a flat elliptic rib (12 x 6 mm) along `rib_point` for angles 0..1.6 rad, with a
    break at angle `gap_at` (bone missing over `gap_mm`, the far side shifted `shift_mm` in z)."""
    z, y, x = np.meshgrid(*[np.arange(n) * s for n, s in zip(SHAPE, SPACING)], indexing="ij")
    hu = np.full(SHAPE, 20.0, np.float32)
    angles = np.linspace(0.0, 1.6, 1200)
    pts = rib_point(angles)
    from scipy.spatial import cKDTree

    flat = np.stack([z.ravel(), y.ravel(), x.ravel()], axis=1)
    near = cKDTree(pts).query(flat, distance_upper_bound=8.0)
    idx = near[1]
    ok = np.isfinite(near[0])
    a = np.zeros(len(flat))
    a[ok] = angles[idx[ok]]
    centre = np.zeros_like(flat)
    centre[ok] = pts[idx[ok]]
    if gap_at is not None:
        far = ok & (a > gap_at)
        centre[far, 0] -= shift_mm
    d = flat - centre
    # in the rib's cross-section: height along z, thickness along the radial direction
    radial = np.stack([np.zeros(len(flat)), np.sin(a), np.cos(a)], axis=1)
    inside = ok & ((d[:, 0] / 6.0) ** 2 + ((d * radial).sum(axis=1) / 3.0) ** 2 <= 1.0)
    if gap_at is not None:
        half = gap_mm / 2.0 / RADIUS_MM
        inside &= np.abs(a - gap_at) > half
    hu.ravel()[inside] = 700.0
    if mass:  # a bone block (a scapula) lying on the rib's outer face (from 3.5 mm out) over ~30 mm of its arc
        m = rib_point(np.array([0.9]))[0]
        box = (np.abs(z - m[0]) < 15) & (np.abs(y - (m[1] + 11.5 * np.sin(0.9))) < 8) & \
              (np.abs(x - (m[2] + 11.5 * np.cos(0.9))) < 8)
        hu[box] = 600.0
    return hu


def trace_from_start(hu: np.ndarray) -> np.ndarray:
    start = rib_point(np.array([0.1]))[0]
    ahead = rib_point(np.array([0.15]))[0]
    sampler = Sampler(hu, SPACING)
    d = (ahead - start) / np.linalg.norm(ahead - start)
    pts, on_bone, why = follow(sampler, start, d, lambda p, _d: "", 400.0, defaults.RIB_TRACE_GAP_MM)
    return pts, on_bone, why


def distance_to_truth(pts: np.ndarray, shift_after: float | None = None) -> np.ndarray:
    """Distance (mm) of each trace point from the true centreline, for the points alongside the rib
    (those past its rounded end, which the trace may overrun by its half-height, are left out)."""
    angles = np.linspace(0.0, 1.6, 4000)
    truth = rib_point(angles)
    if shift_after is not None:
        truth[angles > shift_after, 0] -= 3.0
    from scipy.spatial import cKDTree

    dist, nearest = cKDTree(truth).query(pts)
    return dist[nearest < len(angles) - 1]


def arc_reached(pts: np.ndarray) -> float:
    """Angle (rad) of the rib reached by the trace's last point."""
    angles = np.linspace(0.0, 1.6, 4000)
    return float(angles[np.argmin(np.linalg.norm(rib_point(angles) - pts[-1], axis=1))])


def test_follows_a_curved_rib_to_its_end_on_its_centreline():
    pts, on_bone, why = trace_from_start(make_ct())
    assert arc_reached(pts) > 1.5  # to within 8 mm of the end (1.6 rad = 128 mm of arc)
    assert np.percentile(distance_to_truth(pts), 95) < 1.0
    assert on_bone.all()


def test_crosses_a_displaced_break_as_one_path():
    pts, on_bone, _ = trace_from_start(make_ct(gap_at=0.8, gap_mm=3.0, shift_mm=3.0))
    assert arc_reached(pts) > 1.5  # the far side of the break is the same rib, followed to its end
    err = distance_to_truth(pts, shift_after=0.8)
    assert np.percentile(err, 95) < 1.5  # back on the shifted far side
    steps = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    assert steps.max() < 2 * defaults.RIB_TRACE_STEP_MM  # one continuous path, no jump
    assert (~on_bone).sum() >= 1  # the break shows as sections without bone


def test_stops_at_a_gap_longer_than_a_break():
    pts, _, why = trace_from_start(make_ct(gap_at=0.8, gap_mm=25.0, shift_mm=0.0))
    assert why == "gap"
    assert arc_reached(pts) == pytest.approx(0.8 - 12.5 / RADIUS_MM, abs=0.04)  # ends where the bone ends


def test_a_touching_bone_mass_does_not_pull_the_path_off_the_rib():
    pts, _, _ = trace_from_start(make_ct(mass=True))
    assert arc_reached(pts) > 1.5
    beside = pts[np.linalg.norm(pts - rib_point(np.array([0.9]))[0], axis=1) < 25.0]  # beside the mass
    err = distance_to_truth(beside)
    assert len(err) >= 10 and err.max() < 2.5  # pulled less than half the rib's half-height (a round take disk: > 3 mm)
    assert np.percentile(distance_to_truth(pts), 80) < 1.0  # and back on the centre beyond it


def test_seed_direction_is_sideways_for_a_piece_taller_than_wide():
    rng = np.random.default_rng(0)
    # a piece of two touching posterior arcs: 20 mm wide (x), 25 mm tall (z), sloping 20 deg down
    x = rng.uniform(0, 20, 500)
    z = -np.tan(np.radians(20)) * x + rng.uniform(-12.5, 12.5, 500)
    y = 0.3 * x + rng.uniform(-2, 2, 500)
    d = seed_direction(np.stack([z, y, x], axis=1), lateral=1.0)
    assert d[2] > 0.85  # mostly sideways, pointing to +x
    assert np.degrees(np.arctan2(-d[0], d[2])) == pytest.approx(20, abs=6)

"""Put detections on ribs: which rib, how far along it from the head, and which third of it.

Also the on-rib region used by post-processing: voxels within a margin of any rib, so a detection
on the spine, sternum, scapula, a vessel or the CT table can be dropped.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .. import defaults
from ..geometry import distance_mm
from ..orientation import CanonicalVolume
from ..preprocess import block_any
from .labels import Rib, RibLabels

REGIONS = ("posterior", "lateral", "anterior")  # thirds of a rib's length from its head


def break_support(length_mm: float) -> tuple[float, float]:
    """The arc (mm from the head) of a rib `length_mm` long where the simulator places breaks, so the
    only stretch on which the rib-frame network learned what a break is: clear of the head's joints
    and of the anterior end's costochondral junction (`at_rib_end`)."""
    lo = max(defaults.SIMULATION_HEAD_CLEAR_MM, defaults.SIMULATION_HEAD_FRACTION * length_mm)
    return lo, defaults.SIMULATION_END_FRACTION * length_mm


def rib_lengths(ribs: Sequence[Rib]) -> dict[str, tuple[float, Optional[float]]]:
    """Rib name -> (its centreline's length, its left/right partner's; None for an unnumbered rib or
    one whose partner was not found): `at_rib_end` reads both."""
    by_number: dict[int, dict[str, float]] = {}
    for r in ribs:
        if r.number:
            by_number.setdefault(r.number, {})[r.side] = r.length_mm
    partner = {"L": "R", "R": "L"}
    return {r.name: (r.length_mm, by_number[r.number].get(partner[r.side]) if r.number else None) for r in ribs}


def at_rib_end(arc_mm: float, own_mm: float, partner_mm: Optional[float]) -> bool:
    """Whether a point `arc_mm` along a rib lies at one of its ends, beyond where breaks were learned:
    more than FRAME_RIB_END_MARGIN_MM outside `break_support` of the longer of the rib and its partner.
    Not within that margin of its own trace's tips when the trace may have been cut short: a trace
    stops at a displaced break, which then lies at its tip, where its length would otherwise call it
    an end. A trace at least as long as its partner's (less the margin) was not: its anterior tip is
    the costochondral end itself, where a detection is a rib end like any other beyond the support."""
    lo, hi = break_support(max(own_mm, partner_mm or 0.0))
    margin = defaults.FRAME_RIB_END_MARGIN_MM
    whole = partner_mm is not None and own_mm >= partner_mm - margin
    return margin < arc_mm < lo - margin or hi + margin < arc_mm < (np.inf if whole else own_mm - margin)


def near_ribs(ribs: RibLabels, volume: CanonicalVolume, margin_mm: float, cell: Optional[int] = None
              ) -> Optional[np.ndarray]:
    """Canonical bool mask of voxels within `margin_mm` of a rib, or None when no rib was found; with
    `cell`, the grid of `cell`-voxel blocks holding such a voxel (`preprocess.block_any` of the mask,
    without making the mask: the sliding window's skip cells).

    Computed on blocks of about RIB_WORK_MM (a block counts as rib if any voxel is), then copied
    back to full resolution, so the margin is exact to within one block and never smaller.
    """
    import SimpleITK as sitk

    labels = volume.to_canonical(sitk.GetArrayViewFromImage(ribs.labels))
    if not labels.any():
        return None
    factors = tuple(max(1, int(round(defaults.RIB_WORK_MM / s))) for s in volume.spacing_zyx)
    blocks = block_any(labels > 0, factors)
    spacing = tuple(s * f for s, f in zip(volume.spacing_zyx, factors))
    near = distance_mm(~blocks, spacing) <= margin_mm + max(spacing)
    for axis, (f, n) in enumerate(zip(factors, labels.shape)):  # one axis at a time to full resolution
        near = np.repeat(near, f, axis=axis)[(slice(None),) * axis + (slice(0, n),)]
        if cell:  # ... and straight on to cells: the other axes stay coarse
            cells = -(-n // cell)
            pad = [(0, 0)] * 3
            pad[axis] = (0, cells * cell - n)
            blocked = near.shape[:axis] + (cells, cell) + near.shape[axis + 1:]
            near = np.pad(near, pad).reshape(blocked).any(axis=axis + 1)
    return near


def locate_on_rib(point_lps: Sequence[float], ribs: Sequence[Rib],
                  max_distance_mm: float = defaults.RIB_ASSIGN_MAX_MM) -> tuple[str, Optional[float], str]:
    """(rib name or "none", arc length from the head in mm, region) of the nearest rib centreline."""
    point = np.asarray(point_lps, dtype=float)
    best: tuple[float, Optional[Rib], int] = (np.inf, None, -1)
    for rib in ribs:
        if len(rib.centreline_lps) == 0:
            continue
        d = np.linalg.norm(rib.centreline_lps - point, axis=1)
        i = int(np.argmin(d))
        if d[i] < best[0]:
            best = (float(d[i]), rib, i)
    distance, rib, i = best
    if rib is None or distance > max_distance_mm:
        return "none", None, ""
    arc = rib.arc_mm
    length = max(rib.length_mm, 1e-6)
    region = REGIONS[min(2, int(3 * arc[i] / length))]
    return rib.name, round(float(arc[i]), 1), region


def rib_phrase(name: str, region: str) -> str:
    """'right rib 6, lateral' for reports and segment names; 'no rib' when none."""
    if name == "none":
        return "no rib"
    if name.startswith("unnumbered"):
        side = "left" if name.endswith("L") else "right"
        text = f"{side} rib (unnumbered)"
    else:
        text = f"{'left' if name[0] == 'L' else 'right'} rib {name[1:]}"
    return f"{text}, {region}" if region else text

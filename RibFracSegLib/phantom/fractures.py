"""Which ribs break, where and how: the four RibFrac fracture types as plans the rib sweep applies.

1 displaced: a gap through the whole rib and an offset of the distal part;
2 non-displaced: a thin oblique crack through the cortex and marrow, no offset;
3 buckle: a cortical bulge on the inner side with a dense band of compressed bone;
4 segmental: two breaks on one rib, the piece between them slightly displaced.
The recorded code may be -1 ("undefined"), as in the RibFrac data, while the morphology stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from RibFracSegLib.defaults import FRACTURE_KIND_WEIGHT, FRACTURE_RIB_WEIGHT
from RibFracSegLib.phantom.anatomy import RibPath

# How likely each rib number and type is (mid ribs most often, as in RibFrac).
_RIB_WEIGHT = np.array(FRACTURE_RIB_WEIGHT)
_KIND_WEIGHT = FRACTURE_KIND_WEIGHT


@dataclass(frozen=True)
class FracturePlan:
    label_id: int
    kind: int  # morphology, 1..4
    code: int  # what the info table records: kind, or -1
    rib_index: int  # index into Anatomy.ribs
    breaks_mm: tuple[float, ...]  # arc positions along the rib of each break
    gap_mm: float
    offset_nb_mm: tuple[float, float]  # displacement in the rib's (normal, binormal) frame
    obliquity: float  # tan of the tilt of the break plane
    extent_mm: float  # half-length of the annotated region along the rib, per break
    bump_mm: float = 0.0  # buckle height


def _min_gap_mm(rib: RibPath, at_mm: float, obliquity: float, spacing: Sequence[float]) -> float:
    """Smallest gap (measured along the rib) that still splits it into two 26-connected pieces on
    this grid: no pair of neighbouring voxels may straddle the cut."""
    k = min(int(np.searchsorted(rib.arc_mm, at_mm)), len(rib.points) - 2)
    tangent = rib.points[k + 1] - rib.points[k]
    tangent /= np.linalg.norm(tangent)
    across = np.sum(np.abs(tangent) * np.asarray(spacing)) + abs(obliquity) * max(spacing)
    return 1.25 * float(across) * float(np.hypot(1.0, obliquity))


def plan_fractures(ribs: Sequence[RibPath], n: int, rng: np.random.Generator, spacing: Sequence[float],
                   in_view: Callable[[np.ndarray], bool], p_undefined: float = 0.1) -> list[FracturePlan]:
    """Place `n` fractures on distinct stretches of ribs that lie inside the field of view."""
    weights = np.tile(_RIB_WEIGHT, 2)
    plans: list[FracturePlan] = []
    taken: dict[int, list[float]] = {}
    kinds = np.array(list(_KIND_WEIGHT))
    kind_p = np.array(list(_KIND_WEIGHT.values()))
    for _ in range(400 * max(n, 1)):
        if len(plans) == n:
            break
        ri = int(rng.choice(len(ribs), p=weights / weights.sum()))
        rib = ribs[ri]
        kind = int(rng.choice(kinds, p=kind_p / kind_p.sum()))
        lo, hi = max(35.0, 0.15 * rib.bony_length_mm), 0.88 * rib.bony_length_mm
        span = float(rng.uniform(16, 28)) if kind == 4 else 0.0
        if hi - span <= lo:
            continue
        t0 = float(rng.uniform(lo, hi - span))
        breaks = (t0, t0 + span) if kind == 4 else (t0,)
        if any(abs(b - o) < 30 for b in breaks for o in taken.get(ri, [])):
            continue
        points = [rib.points[np.searchsorted(rib.arc_mm, b)] for b in breaks]
        if not all(in_view(p) for p in points):
            continue
        obliquity = float(rng.uniform(-0.3, 0.3)) if kind != 3 else 0.0
        if kind in (1, 4):
            needed = max(_min_gap_mm(rib, b, obliquity, spacing) for b in breaks)
            gap = max(2.0, needed) + float(rng.uniform(0, 1.5))
        else:
            gap = float(rng.uniform(0.7, 1.1))
        angle = rng.uniform(0, 2 * np.pi)
        mag = {1: rng.uniform(1.5, 4.0), 4: rng.uniform(1.0, 2.5)}.get(kind, 0.0)
        code = -1 if rng.random() < p_undefined else kind
        plans.append(FracturePlan(
            label_id=len(plans) + 1, kind=kind, code=code, rib_index=ri, breaks_mm=breaks, gap_mm=gap,
            offset_nb_mm=(float(mag * np.cos(angle)), float(mag * np.sin(angle))),
            obliquity=obliquity,
            extent_mm=float(rng.uniform(3.5, 6.0)), bump_mm=float(rng.uniform(1.2, 2.2)) if kind == 3 else 0.0))
        taken.setdefault(ri, []).extend(breaks)
    if len(plans) < n:
        raise ValueError(f"Could place only {len(plans)} of {n} fractures on the ribs in view; "
                         "use a field of view that shows more of the chest, or fewer fractures.")
    return plans

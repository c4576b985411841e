"""Which rib breaks, where, and how: one `FractureSpec` per simulated fracture.

Types and codes follow RibFrac (1 displaced, 2 non-displaced, 3 buckle, 4 segmental, recorded -1 at
times). Rib numbers and types are drawn with the phantom's weights (mid ribs, lateral and posterior
arcs most often); sizes follow the issue: displaced 1-4 mm offset or angulation, oblique cut with a
gap, non-displaced 0.5-1 mm crack through part or all of the cortex, buckle fold with sclerosis,
segmental two breaks 16-28 mm apart with the piece between them displaced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import defaults
from ..ribs.assign import break_support
from ..ribs.frame import RibFrame

Vec = tuple[float, float, float]


@dataclass(frozen=True)
class FractureSpec:
    """One fracture to build. Pieces of the rib are numbered from the head: 0 | break 0 | 1 | break 1 | 2."""

    label_id: int
    kind: int  # morphology 1..4
    code: int  # what the info csv records: kind, or -1
    rib_label: int  # value of the rib in the label map (1-12 left, 13-24 right)
    rib: str  # e.g. "L6"
    breaks_mm: tuple[float, ...]  # arc positions of the breaks, from the rib head
    normals: tuple[Vec, ...]  # cut-plane normal of each break (LPS, towards the anterior end)
    gap_mm: float = 0.0  # width of each cut (0 for buckle)
    jag_mm: float = 0.0  # roughness of the cut surfaces (amplitude of their offset from the plane)
    jag_phases: tuple[float, ...] = (0.0, 0.0, 0.0)
    moved_piece: int = -1  # the piece that is displaced, -1 none
    shift_lps: Vec = (0.0, 0.0, 0.0)  # its translation at the break, mm
    angulation_deg: float = 0.0  # its rotation about `angulation_axis` through the break
    angulation_axis: Vec = (0.0, 0.0, 1.0)
    crack_dir: Vec = (0.0, 0.0, 1.0)  # non-displaced: the crack runs where (y - centreline) . dir > offset
    crack_offset_mm: float = -1e3  # -1e3: through the whole cortex
    bump_dir: Vec = (0.0, 0.0, 1.0)  # buckle: the side whose cortex folds outwards
    bump_mm: float = 0.0
    sclerosis_hu: float = 0.0
    extent_mm: float = 5.0  # half-length of the annotated region along the rib, per break

    @property
    def reach_mm(self) -> float:
        """Radius around the fracture centre outside which nothing changes (before blur)."""
        span = self.breaks_mm[-1] - self.breaks_mm[0]
        tail = defaults.SIMULATION_DECAY_MM if self.kind == 1 else defaults.SIMULATION_WINDOW_MM
        return 0.5 * span + tail + defaults.SIMULATION_MARGIN_MM

    @property
    def center_arc_mm(self) -> float:
        return 0.5 * (self.breaks_mm[0] + self.breaks_mm[-1])


def perpendicular_basis(tangent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors completing `tangent` to an orthonormal frame."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(tangent[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(tangent, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(tangent, e1)


def rotate_towards(tangent: np.ndarray, direction: np.ndarray, degrees: float) -> np.ndarray:
    """`tangent` tilted by `degrees` towards `direction` (a unit vector perpendicular to it)."""
    a = np.deg2rad(degrees)
    v = np.cos(a) * tangent + np.sin(a) * direction
    return v / np.linalg.norm(v)


def _v(x: np.ndarray) -> Vec:
    return tuple(float(t) for t in x)


def draw_kind(rng: np.random.Generator) -> int:
    kinds = np.array(list(defaults.FRACTURE_KIND_WEIGHT))
    p = np.array(list(defaults.FRACTURE_KIND_WEIGHT.values()), float)
    return int(rng.choice(kinds, p=p / p.sum()))


def draw_arc(frame: RibFrame, kind: int, rng: np.random.Generator) -> tuple[float, ...] | None:
    """Break positions on the bony rib away from its head and anterior end, or None if it is too short."""
    lo, hi = break_support(frame.length_mm)
    span = float(rng.uniform(*defaults.SEGMENTAL_SPAN_MM)) if kind == 4 else 0.0
    if hi - span <= lo:
        return None
    t0 = float(rng.uniform(lo, hi - span))
    return (t0, t0 + span) if kind == 4 else (t0,)


def make_spec(label_id: int, kind: int, rib_label: int, rib: str, frame: RibFrame, breaks: tuple[float, ...],
              rng: np.random.Generator) -> FractureSpec:
    """Draw the shape of one fracture of morphology `kind` at `breaks`."""
    code = -1 if rng.random() < defaults.SIMULATION_P_UNDEFINED else kind
    normals, axes = [], []
    for t in breaks:
        _, tan = frame.at(t)
        e1, e2 = perpendicular_basis(tan)
        phi = rng.uniform(0, 2 * np.pi)
        across = np.cos(phi) * e1 + np.sin(phi) * e2
        tilt = float(rng.uniform(*defaults.CUT_TILT_DEG[kind])) if kind in defaults.CUT_TILT_DEG else 0.0
        normals.append(_v(rotate_towards(tan, across, tilt)))
        axes.append((e1, e2))
    e1, e2 = axes[0]
    phi = rng.uniform(0, 2 * np.pi)
    side = np.cos(phi) * e1 + np.sin(phi) * e2  # a random direction across the rib
    common = dict(label_id=label_id, kind=kind, code=code, rib_label=rib_label, rib=rib, breaks_mm=breaks,
                  normals=tuple(normals), extent_mm=float(rng.uniform(*defaults.SIMULATION_EXTENT_MM)),
                  jag_mm=float(rng.uniform(*defaults.FRACTURE_LINE_JAG_MM)),
                  jag_phases=tuple(float(v) for v in rng.uniform(0, 2 * np.pi, 3)))
    if kind == 1:
        shift = float(rng.uniform(*defaults.DISPLACED_SHIFT_MM))
        angle = float(rng.uniform(*defaults.DISPLACED_ANGULATION_DEG)) if rng.random() < 0.5 else 0.0
        _, tan = frame.at(breaks[0])
        return FractureSpec(**common, gap_mm=float(rng.uniform(*defaults.DISPLACED_GAP_MM)),
                            moved_piece=int(rng.integers(0, 2)), shift_lps=_v(shift * side),
                            angulation_deg=angle, angulation_axis=_v(np.cross(tan, side)))
    if kind == 2:
        partial = rng.random() < 0.5
        return FractureSpec(**common, gap_mm=float(rng.uniform(*defaults.CRACK_WIDTH_MM)), crack_dir=_v(side),
                            crack_offset_mm=float(rng.uniform(*defaults.CRACK_PARTIAL_OFFSET_MM)) if partial else -1e3)
    if kind == 3:  # the fold is on the inner or outer cortex, as buckles are read on axial images
        radial = np.cross(frame.at(breaks[0])[1], [0.0, 0.0, 1.0])
        radial = radial / np.linalg.norm(radial) if np.linalg.norm(radial) > 0.3 else e1
        return FractureSpec(**common, bump_dir=_v(radial * rng.choice([-1.0, 1.0])), bump_mm=float(rng.uniform(*defaults.BUCKLE_BUMP_MM)),
                            sclerosis_hu=float(rng.uniform(*defaults.BUCKLE_SCLEROSIS_HU)))
    shift = float(rng.uniform(*defaults.SEGMENTAL_SHIFT_MM))
    return FractureSpec(**common, gap_mm=float(rng.uniform(*defaults.DISPLACED_GAP_MM)), moved_piece=1,
                        shift_lps=_v(shift * side))


def planned_measures(spec: FractureSpec, frame: RibFrame, near_lps) -> tuple[float, float, float]:
    """What a measurement in the rib's frame should read at the break of `spec` nearest `near_lps`:
    (gap along the arc mm, step across the rib mm, angulation degrees). The gap is the cut's width
    along its normal, widened or narrowed by the moved piece's shift along that normal, over
    cos(the cut's tilt from the cross-section): every line along the rib crosses that much of it."""
    index = int(np.argmin([np.linalg.norm(frame.at(t)[0] - np.asarray(near_lps, float)) for t in spec.breaks_mm]))
    tangent = frame.at(spec.breaks_mm[index])[1]
    normal = np.asarray(spec.normals[index], float)
    shift = np.asarray(spec.shift_lps, float)
    moved = 0.0 if spec.moved_piece < 0 else (1.0 if spec.moved_piece == index + 1 else -1.0) * float(shift @ normal)
    gap = 0.0 if spec.kind == 3 else max(0.0, spec.gap_mm + moved) / max(abs(float(normal @ tangent)), 1e-6)
    step = float(np.linalg.norm(shift - shift.dot(tangent) * tangent))
    return gap, step, float(spec.angulation_deg)

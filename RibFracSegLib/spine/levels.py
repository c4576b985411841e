"""`vertebral_levels(image) -> SpineLevels`: the vertebral bodies along the spine, named by counting.

Anchors (../shared/reference/ribs.md): rib k's head sits at Tk, so every numbered rib votes for where
T12 is (the 12th rib directly, the 1st by counting 11 bodies down); the lowest body above the sacrum
is L5. The ribs name the column when they agree; the sacrum names it otherwise and checks them when
both are in view. 4 or 6 bodies between T12 and the sacrum (transitional anatomy, or a count off by a
body: at 5 mm slices the ribs' T12 is sometimes a body low) leave the lumbar bodies unnamed, and the
result says so: the L3 check then takes the network's L3, for review.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import SimpleITK as sitk

from .. import defaults
from ..geometry import lps_to_ras
from ..ribs.anatomy import column_landmarks
from ..ribs.heads import RibHeads
from .bodies import (bodies_between, body_centres, body_widths, centre_profile, column_arc_mm, column_directions, disc_profile,
                     find_discs)
from .sacrum import sacrum_top

# The column top to bottom; L6 only exists when a transitional count needs it.
SEQUENCE = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 7)]


@dataclass
class Vertebra:
    """One vertebral body found along the spine; `name` None when no anchor reaches it."""

    name: Optional[str]
    centre_lps: tuple[float, float, float]
    z_top_mm: float  # superior end (the disc above, or the CT's edge)
    z_bottom_mm: float
    complete: bool  # both ends are discs (not cut by the CT's edge)

    @property
    def centre_ras(self) -> tuple[float, float, float]:
        return lps_to_ras(self.centre_lps)

    @property
    def height_mm(self) -> float:
        return self.z_top_mm - self.z_bottom_mm

    def to_dict(self) -> dict:
        return {"name": self.name, "label_id": defaults.VERTEBRA_IDS.get(self.name or ""),
                "centre_lps": [round(v, 2) for v in self.centre_lps],
                "centre_ras": [round(v, 2) for v in self.centre_ras],
                "z_top_mm": round(self.z_top_mm, 2), "z_bottom_mm": round(self.z_bottom_mm, 2),
                "complete": self.complete}


@dataclass
class SpineLevels:
    """Vertebral bodies bottom to top, how they were named, and what the anchors said."""

    vertebrae: list[Vertebra]
    anchor: str  # "rib 12" (or "ribs 7-11" when rib 12 is not among the counting ribs), "sacrum" or "none"
    anchors: dict[str, int] = field(default_factory=dict)  # anchor -> index of its body in `vertebrae`
    lumbar_count: Optional[int] = None  # bodies between T12 and the sacrum, when both are in view
    count_sides: int = 0  # sides (left, right) whose ribs set the count; 0 when the sacrum or nothing did
    rib_numbering: str = "none"  # how the ribs were numbered: from rib 1 (top of the cage) and/or rib 12
    overruled: bool = False  # the ribs' count conflicted with the sacrum, which named the column
    sacrum_top_mm: Optional[float] = None
    fov_mm: tuple[float, float] = (0.0, 0.0)  # (bottom, top) superior coordinate of the CT
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def weak(self) -> bool:
        """The count is the weak kind: the ribs named the column weakly (`weak_ribs`), or the sacrum did
        after overruling the ribs (one of the two anchors was wrong, and so maybe it)."""
        return (self.anchor.startswith("rib") and weak_ribs(self.rib_numbering, self.count_sides)) or self.overruled

    def by_name(self, name: str) -> Optional[Vertebra]:
        return next((v for v in self.vertebrae if v.name == name), None)

    def to_dict(self) -> dict:
        return {"anchor": self.anchor, "anchors": dict(self.anchors), "lumbar_count": self.lumbar_count,
                "count_sides": self.count_sides, "rib_numbering": self.rib_numbering,
                "sacrum_top_mm": None if self.sacrum_top_mm is None else round(self.sacrum_top_mm, 2),
                "fov_mm": [round(v, 2) for v in self.fov_mm], "notes": list(self.notes),
                "named": [v.name for v in self.vertebrae if v.name],
                "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
                "vertebrae": [v.to_dict() for v in self.vertebrae]}


def weak_ribs(numbering: str, sides: int) -> bool:
    """A rib count is weak when the ribs were numbered from the bottom of a cut cage (ambiguous: 11 or 13
    pairs, a hypoplastic 12th; ../shared/reference/ribs.md) or only one side's ribs set it."""
    return "rib 1" not in numbering.split(" and ") or sides < 2


def _body_position(z_mm: float, vertebrae: list[Vertebra]) -> Optional[float]:
    """Height z as a continuous body index: i + the fraction of body i below z (0 its bottom disc, 1 its
    top disc); None outside the bodies found."""
    for i, v in enumerate(vertebrae):
        if v.z_bottom_mm < z_mm <= v.z_top_mm:
            return i + (z_mm - v.z_bottom_mm) / max(v.z_top_mm - v.z_bottom_mm, 1e-6)
    return None


def _head_fraction(number: int) -> float:
    """Where rib `number`'s head meets its vertebra Tk, as a fraction of Tk's height: ribs 2-9 across the
    disc above it (the top), ribs 1, 10, 11 and 12 on the body itself (../shared/reference/ribs.md)."""
    return defaults.SPINE_RIB_HEAD_ON_BODY if number in (1, 10, 11, 12) else 1.0


def rib_votes(ribs: RibHeads, vertebrae: list[Vertebra]) -> tuple[Optional[int], str, list[str], list[tuple]]:
    """Index of T12 among `vertebrae` from every numbered rib's head, the anchor's name, notes and the
    votes `(t12 estimate, side, number)`.

    Each head, as a continuous body index less where rib k's head sits on Tk (`_head_fraction`) and
    less 12 - k, estimates T12's index; a head's height is only known to a fraction of a body (where a
    centreline starts), so T12 is the median of the estimates of the lowest SPINE_RIB_COUNT_LEVELS
    rib levels, rounded (a disc missed higher up shifts the ribs above it, not the count at T12). A
    'rib' whose head lies far from the column (an iliac crest taken for rib 12) does not vote; fewer
    than SPINE_RIB_MIN_VOTES heads (a lone rib numbered from the bottom of a cut cage) give no count.
    No count when most of the counting ribs lie more than SPINE_RIB_AGREE_BODIES from it, when the
    left and the right ribs' medians are a body apart (one side misnumbered, maybe both), or when a
    head of the lowest rib level lies more than SPINE_RIB_BELOW_BODIES below the count's T12 (a rib was
    missed above it, so the numbers above are off)."""
    votes = []
    for r in ribs.heads:
        if not r.number or not vertebrae:
            continue
        head = r.head_lps
        near = min(vertebrae, key=lambda v: abs(v.centre_lps[2] - head[2]))
        if np.hypot(head[0] - near.centre_lps[0], head[1] - near.centre_lps[1]) > defaults.SPINE_RIB_HEAD_MAX_MM:
            continue
        b = _body_position(float(head[2]), vertebrae)
        if b is not None:
            votes.append((b - _head_fraction(r.number) - (12 - r.number), r.side, r.number))
    if len(votes) < defaults.SPINE_RIB_MIN_VOTES:
        return None, "none", [f"{len(votes)} numbered rib head(s) beside the bodies found: too few to count from"
                              ] if votes else [], votes
    lowest = max(n for _, _, n in votes)  # the ribs nearest the lumbar spine count: a disc missed higher up
    counting = [v for v in votes if v[2] > lowest - defaults.SPINE_RIB_COUNT_LEVELS]  # shifts only the ribs above
    estimates = np.array([v[0] for v in counting])
    best = int(np.round(np.median(estimates)))
    agree = int(np.sum(np.abs(estimates - best) <= defaults.SPINE_RIB_AGREE_BODIES))
    numbers = sorted({n for _, _, n in counting})
    label = "rib 12" if 12 in numbers else f"ribs {numbers[0]}-{numbers[-1]}"
    notes = [] if agree == len(counting) else [f"{agree} of {len(counting)} lowest numbered ribs agree on T12 ({label})"]
    sides = {side: float(np.median([t for t, sd, _ in counting if sd == side])) for side in ("L", "R")
             if sum(sd == side for _, sd, _ in counting) >= defaults.SPINE_RIB_SIDE_MIN}
    if len(sides) == 2 and abs(sides["L"] - sides["R"]) > defaults.SPINE_RIB_SIDES_APART:
        notes.append(f"left and right ribs place T12 {abs(sides['L'] - sides['R']):.1f} bodies apart: not used")
        return None, "none", notes, votes
    if agree <= defaults.SPINE_RIB_MAJORITY * len(counting):
        notes.append("the ribs do not agree on the count: not used")
        return None, "none", notes, votes
    off = min((v for v in counting if v[2] == lowest), key=lambda v: v[0])
    if best - off[0] > defaults.SPINE_RIB_BELOW_BODIES:  # the lowest rib far below T12: a rib missed above it
        notes.append(f"rib {off[1]}{off[2]}'s head lies {best - off[0]:.1f} bodies below where the count puts it: "
                     "not used")
        return None, "none", notes, votes
    return best, label, notes, [(t - best, side, n) for t, side, n in votes]


def unname_contradicted(vertebrae: list[Vertebra], votes: list[tuple], t12: int) -> list[str]:
    """Leave unnamed the bodies above the highest rib head (unless it is rib 1's), and those from where the ribs drift off the
    count going up: the lowest rib level whose heads, and the next level's above, lie (median of the
    two sides) more than SPINE_RIB_DRIFT_BODIES off it - a disc missed or doubled there shifts every
    name beyond it; from the body its heads land in, up, nothing is named rather than named wrong.
    `votes` hold each rib's offset from the count (rib_votes)."""
    highest = min(n for _, _, n in votes)
    # no rib checks the count above the top rib's body - unless that rib is the first: T1 is then a
    # landmark of its own, and the cervical bodies above it are counted from it as the lumbar ones are
    # counted down from T12 (a break in the disc spacing still stops the names: unname_across_joints)
    top = len(vertebrae) if highest == 1 else t12 + 12 - highest + 1
    off = {k: float(np.median([o for o, _, n in votes if n == k])) for k in {n for _, _, n in votes}}
    levels = sorted(off, reverse=True)  # lowest rib first
    cut = top
    for i, k in enumerate(levels):
        above = levels[i + 1] if i + 1 < len(levels) else None
        if abs(off[k]) > defaults.SPINE_RIB_DRIFT_BODIES and (above is None or
                                                             abs(off[above]) > defaults.SPINE_RIB_DRIFT_BODIES):
            cut = min(cut, t12 + 12 - k - 1)
            break
    if cut >= len(vertebrae):
        return []
    names = [v.name for v in vertebrae[cut:] if v.name]
    for v in vertebrae[cut:]:
        v.name = None
    if not names:
        return []
    why = "no rib checks the count" if cut == top else "ribs' heads drift off the count"
    return [f"{why} from {names[0]} up: those bodies unnamed"]


def count_origin(t12: int, votes: list[tuple]) -> int:
    """Index of the body a rib count runs from: that of the lowest rib level voting (T12 for rib 12,
    T1 when only rib 1's heads were found). A break in the disc spacing between it and a body makes
    that body's name unsure, however far the count then runs (rib 1 alone: fourteen bodies to L3)."""
    lowest = max((n for _, _, n in votes), default=12)
    return t12 + (12 - lowest)


def unname_across_joints(vertebrae: list[Vertebra], joints: list[bool], anchor: int) -> list[str]:
    """Leave unnamed the bodies beyond a joint between two chains of discs, seen from the anchor: the
    regular spacing that makes the count sure is broken there."""
    notes = []
    for i, joint in enumerate(joints):
        if not joint or i == anchor:
            continue
        beyond = vertebrae[i:] if i > anchor else vertebrae[:i + 1]
        names = [v.name for v in beyond if v.name]
        for v in beyond:
            v.name = None
        if names:
            notes.append(f"the disc spacing breaks at {names[0] if i > anchor else names[-1]}: "
                         f"{', '.join(names)} left unnamed")
    return notes


def name_vertebrae(vertebrae: list[Vertebra], t12: Optional[int], l5: Optional[int], rib_label: str = "rib 12",
                   ribs_weak: bool = False) -> tuple[str, dict, Optional[int], list[str]]:
    """Name bodies (bottom to top) from the ribs' T12 (`t12`, may lie outside the list) or else the
    sacrum's L5; the other is a check. When they conflict (other than 5 lumbar bodies between), a weak
    rib count (`ribs_weak`: counted from the bottom of a cut cage, or on one side) gives way to the
    sacrum; a strong one keeps T12 and up when 4 or 6 lie between, leaving the lumbar bodies unnamed,
    and otherwise neither is used.
    Returns (anchor used, anchors found, lumbar count, notes)."""
    anchors = {k: v for k, v in ((rib_label, t12), ("sacrum", l5)) if v is not None}
    notes, lumbar = [], None
    if t12 is not None and l5 is not None:
        lumbar = t12 - l5
        if lumbar != 5 and ribs_weak:  # a count up from the lowest ribs is the likelier one to be off
            notes.append(f"{lumbar} bodies between the ribs' T12 and the sacrum; the ribs were "
                         "counted from the bottom or on one side: named from the sacrum")
            anchors.pop(rib_label)
            lumbar, t12 = None, None
        elif not 4 <= lumbar <= 6:
            notes.append(f"{lumbar} bodies between the ribs' T12 and the sacrum (4-6 possible): "
                         "neither anchor is used")
            anchors.clear()
            lumbar, l5, t12 = None, None, None
        elif lumbar != 5:  # transitional anatomy, or one of the counts off by a body: which, the count cannot tell
            notes.append(f"{lumbar} bodies between the ribs' T12 and the sacrum (transitional anatomy, or a body "
                         "miscounted): the lumbar bodies are left unnamed")
    if t12 is not None:
        anchor, ref, ref_name = rib_label, t12, "T12"
    elif l5 is not None:
        anchor, ref, ref_name = "sacrum", l5, "L5"
    else:
        return "none", anchors, lumbar, notes + ["no anchor in view (ribs, sacrum): bodies left unnamed"]
    top = SEQUENCE.index(ref_name)
    last = SEQUENCE.index("T12") if lumbar and lumbar != 5 else SEQUENCE.index("L5")
    for i, v in enumerate(vertebrae):
        k = top - (i - ref)
        v.name = SEQUENCE[k] if 0 <= k <= last and (l5 is None or i >= l5) else None
    return anchor, anchors, lumbar, notes


def vertebral_levels(image: sitk.Image, ribs=None, landmarks=None) -> SpineLevels:
    """Vertebral bodies of a CT (HU), named by counting; `ribs` a RibHeads (ribs.heads.rib_heads), a
    RibLabels (segment_ribs, when the ribs are segmented anyway) or None (then only the sacrum can
    anchor the count); `landmarks` the CT's column_landmarks if at hand."""
    t0 = time.perf_counter()
    marks = landmarks if landmarks is not None else column_landmarks(image)
    canon, grid, bone = marks.canon, marks.grid, marks.bone
    sp = grid.spacing_zyx
    track = body_centres(bone, grid.hu, marks.track, sp)
    directions = column_directions(track, sp)
    discs, chains = find_discs(disc_profile(centre_profile(grid.hu, track, sp, directions), sp[0]), sp[0],
                               column_arc_mm(directions, sp[0]), body_widths(bone, track, sp))
    sacrum = sacrum_top(bone, track, sp)
    found = bodies_between(discs, grid.hu.shape[0], sp[0], chains)
    if sacrum is not None:  # sacral segments are no vertebral bodies
        found = [b for b in found if b.centre > sacrum]

    def to_lps(z: float) -> tuple[float, float, float]:
        zi = int(np.clip(round(z), 0, len(track.y) - 1))
        idx = np.array([[z, track.y[zi], track.x[zi]]]) * np.array(grid.factors) + (np.array(grid.factors) - 1) / 2.0
        ijk = canon.index_to_input(idx)[0]
        return tuple(float(v) for v in image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in ijk)))

    vertebrae = [Vertebra(None, to_lps(b.centre), to_lps(b.top)[2], to_lps(b.bottom)[2], b.complete) for b in found]
    joints = [b.joint for b in found]
    heights = [b.top - b.bottom for b in found]
    for i, b in enumerate(found):  # a body much taller/shorter than its neighbours holds two/half a body
        near = [heights[k] for k in (i - 1, i + 1) if 0 <= k < len(found) and found[k].complete]
        ratio = heights[i] / np.median(near) if near else 1.0
        if b.complete and not 1 / defaults.SPINE_ODD_BODY <= ratio <= defaults.SPINE_ODD_BODY:
            joints[i] = True
    z_edges = (to_lps(-0.5)[2], to_lps(grid.hu.shape[0] - 0.5)[2])
    timings = {"bodies": time.perf_counter() - t0}
    if ribs is not None and not isinstance(ribs, RibHeads):
        ribs = RibHeads.from_ribs(ribs)
    t12, rib_label, rib_notes, votes = rib_votes(ribs, vertebrae) if ribs is not None else (None, "none", [], [])
    l5 = 0 if sacrum is not None and vertebrae and vertebrae[0].complete else None
    lowest = max((n for _, _, n in votes), default=12)
    sides = {side for _, side, n in votes if n > lowest - defaults.SPINE_RIB_COUNT_LEVELS} if t12 is not None else set()
    numbering = ribs.numbering if ribs is not None else "none"
    anchor, anchors, lumbar, notes = name_vertebrae(vertebrae, t12, l5, rib_label, weak_ribs(numbering, len(sides)))
    notes = rib_notes + notes
    if anchor == rib_label and t12 is not None:
        notes += unname_contradicted(vertebrae, votes, t12)
    if anchor != "none":
        notes += unname_across_joints(vertebrae, joints, count_origin(t12, votes) if anchor == rib_label else l5)
    timings["naming"] = time.perf_counter() - t0 - timings["bodies"]
    return SpineLevels(vertebrae=vertebrae, anchor=anchor, anchors=anchors, lumbar_count=lumbar,
                       count_sides=len(sides) if anchor == rib_label else 0, rib_numbering=numbering,
                       overruled=t12 is not None and anchor == "sacrum",
                       sacrum_top_mm=None if sacrum is None else to_lps(sacrum)[2],
                       fov_mm=(min(z_edges), max(z_edges)), notes=notes, timings_s=timings)

"""What the rib step reports: a label image on the input grid and, per rib, its centreline.

Label values (our files, see ../shared/reference/ribs.md): 0 background, 1-12 left ribs 1-12,
13-24 right ribs 1-12, and `defaults.RIB_UNNUMBERED_LEFT` / `_RIGHT` for a rib that was found but
could not be numbered confidently (kept with its side, never given a guessed number).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk

from .. import defaults


def rib_label_value(side: str, number: Optional[int]) -> int:
    """Label image value of a rib: 1-12 left, 13-24 right, the side's 'unnumbered' value if None."""
    if side not in ("L", "R"):
        raise ValueError(f"side must be 'L' or 'R', got {side!r}")
    if number is None:
        return defaults.RIB_UNNUMBERED_LEFT if side == "L" else defaults.RIB_UNNUMBERED_RIGHT
    if not 1 <= number <= 12:
        raise ValueError(f"rib number must be 1-12, got {number}")
    return number if side == "L" else 12 + number


def rib_from_label_value(value: int) -> tuple[str, Optional[int]]:
    """Inverse of `rib_label_value`: (side, number or None)."""
    if 1 <= value <= 12:
        return "L", int(value)
    if 13 <= value <= 24:
        return "R", int(value) - 12
    if value == defaults.RIB_UNNUMBERED_LEFT:
        return "L", None
    if value == defaults.RIB_UNNUMBERED_RIGHT:
        return "R", None
    raise ValueError(f"{value} is not a rib label value")


def like_lengths(a_mm: float, b_mm: float) -> bool:
    """Left and right rib k agree in length: the shorter at least RIB_PAIR_LENGTH_RATIO of the longer
    (a rib missed, cut short, run into a neighbour or misnumbered on one side does not)."""
    return max(a_mm, b_mm) > 0 and min(a_mm, b_mm) >= defaults.RIB_PAIR_LENGTH_RATIO * max(a_mm, b_mm)


@dataclass
class Rib:
    """One rib: side, number (None = unnumbered) and its centreline from head to anterior end."""

    side: str  # "L" or "R" (patient's left / right)
    number: Optional[int]  # 1..12, None when it could not be numbered confidently
    centreline_lps: np.ndarray  # (n, 3) LPS mm, ordered from the rib head (spine side) to its anterior end
    voxel_count: int = 0
    number_confidence: float = 0.0  # 0..1, how sure the numbering is (0 for unnumbered)

    @property
    def label(self) -> int:
        return rib_label_value(self.side, self.number)

    @property
    def name(self) -> str:
        """'L6', 'R11', or 'unnumbered L'."""
        return f"{self.side}{self.number}" if self.number else f"unnumbered {self.side}"

    @property
    def centreline_ras(self) -> np.ndarray:
        return self.centreline_lps * np.array([-1.0, -1.0, 1.0])

    @property
    def arc_mm(self) -> np.ndarray:
        """Cumulative arc length of each centreline point from the head."""
        steps = np.linalg.norm(np.diff(self.centreline_lps, axis=0), axis=1)
        return np.concatenate([[0.0], np.cumsum(steps)])

    @property
    def length_mm(self) -> float:
        return float(self.arc_mm[-1]) if len(self.centreline_lps) > 1 else 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "side": self.side, "number": self.number, "label": self.label,
                "length_mm": round(self.length_mm, 1), "voxel_count": int(self.voxel_count),
                "number_confidence": round(float(self.number_confidence), 3),
                "centreline_lps": np.round(self.centreline_lps, 2).tolist(),
                "centreline_ras": np.round(self.centreline_ras, 2).tolist()}


@dataclass
class RibLabels:
    """A CT's ribs: the label image on the input grid plus one `Rib` per rib found."""

    labels: Optional[sitk.Image]  # UInt8 on the input CT's grid, values as in the module docstring (None
    #   only inside the rib step, until `finish_labels`: the set it sets aside never needs one)
    ribs: list[Rib]
    numbering: str = "none"  # how numbers were anchored: "rib 1", "rib 12", or "none"
    notes: list[str] = field(default_factory=list)  # why a rib is unnumbered, what was odd
    timings_s: dict[str, float] = field(default_factory=dict)
    cage: Optional[sitk.Image] = None  # UInt8 on the rib step's (coarser) working grid: 1 where bone may be
    #   rib (`ribs/cage.cage_bone`: not spine, sternum, thicker structures, scapulae, clavicles), grown by one
    #   working voxel; where a rib the step missed can lie (`frame_coverage.fallback_bone`). None: not made
    make_labels: Optional[Callable[[], sitk.Image]] = field(default=None, repr=False, compare=False)
    #   how `finish_labels` makes `labels` (and each rib's voxel count) when they were deferred

    def finish_labels(self) -> "RibLabels":
        """Make the deferred label image (and each rib's voxel count) now; returns self."""
        if self.labels is None and self.make_labels is not None:
            self.labels = self.make_labels()
        self.make_labels = None
        return self

    def in_cage(self, lps: np.ndarray) -> np.ndarray:
        """(n,) bool: which LPS points (n, 3) lie in the cage; all of them when there is no cage."""
        lps = np.asarray(lps, float).reshape(-1, 3)
        if self.cage is None:
            return np.ones(len(lps), bool)
        from ..geometry import lps_to_indices

        ijk = np.rint(lps_to_indices(self.cage, lps)).astype(int)
        size = np.array(self.cage.GetSize())
        ok = np.all((ijk >= 0) & (ijk < size), axis=1)
        out = np.zeros(len(lps), bool)
        out[ok] = sitk.GetArrayViewFromImage(self.cage)[tuple(ijk[ok][:, ::-1].T)] > 0
        return out

    def by_name(self, name: str) -> Optional[Rib]:
        return next((r for r in self.ribs if r.name == name), None)

    def complete(self) -> bool:
        """No rib in view was missed, as far as the ribs can tell: every rib numbered, both sides the
        same unbroken run of numbers, at least `RIB_SKIP_MIN_PAIRS` pairs. Only then may work be
        skipped far from the ribs (a missed rib would otherwise go unexamined)."""
        numbers = {side: sorted(r.number for r in self.ribs if r.side == side and r.number) for side in "LR"}
        run = numbers["L"]
        return (all(r.number for r in self.ribs) and run == numbers["R"] and len(run) >= defaults.RIB_SKIP_MIN_PAIRS
                and run == list(range(run[0], run[0] + len(run))))

    def to_dict(self) -> dict:
        return {"numbering": self.numbering, "notes": list(self.notes),
                "ribs_found": {"L": sum(r.side == "L" for r in self.ribs), "R": sum(r.side == "R" for r in self.ribs)},
                "numbered": sorted(r.name for r in self.ribs if r.number),
                "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
                "ribs": [r.to_dict() for r in self.ribs]}

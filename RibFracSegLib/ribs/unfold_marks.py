"""Fractures on the unfolded picture: their rib, arc length, offset and a numbered box (with the
type's letter when a classifier typed the fracture).

A detection that already names its rib (filled by the rib step) is placed on that rib; otherwise on
the nearest centreline. One farther than `defaults.RIB_ASSIGN_MAX_MM` from its rib's centreline is
not on a rib (a false positive in the spine or scapula, say) and gets no box — the rib step's own
rule (`assign.locate_on_rib`), so a detection it calls "none" gets no box here either. The same marks feed the PNGs, the
JSON summary and the Slicer points, so all three agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import product
from typing import Optional, Sequence

import numpy as np

from .. import defaults
from ..detections import Detection, type_letter
from ..geometry import indices_to_lps
from .unfold import UnfoldedRibs


def mark_text(det_id: int, label_code: int = -1) -> str:
    """What the pictures write at a fracture's box: '3', or '3 D' for a displaced one (`type_legend`)."""
    return " ".join(filter(None, (str(det_id), type_letter(label_code))))


@dataclass(frozen=True)
class UnfoldedMark:
    id: int  # the detection's id (the number drawn in its box)
    rib: str
    arc_mm: float  # along the rib's centreline from its head
    across_mm: float  # superior (+) / inferior (-) of the centreline
    depth_mm: float  # outward (+) / inward (-) of the centreline
    distance_mm: float  # from the rib's centreline
    row: float  # the detection centre on the unfolded picture, pixels (may lie past its strip: see box)
    col: float
    box: tuple[int, int, int, int]  # (row0, col0, row1, col1), inclusive pixels
    pixel_mm: float
    label_code: int = -1  # the detection's RibFrac type, drawn as a letter beside the number (-1: none)

    @property
    def text(self) -> str:
        return mark_text(self.id, self.label_code)

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["label_code"]  # the summary's detection has it already
        for key in ("arc_mm", "across_mm", "depth_mm", "distance_mm", "row", "col"):
            d[key] = round(d[key], 2)
        d["box"] = list(self.box)
        return d


def box_corners_lps(det: Detection, ct) -> list[np.ndarray]:
    """The eight corners (LPS mm) of a detection's voxel box on the CT `ct` (none without a CT)."""
    if ct is None:
        return []
    (i0, j0, k0), (i1, j1, k1) = det.bbox_ijk
    return list(indices_to_lps(ct, np.array(list(product((i0, i1), (j0, j1), (k0, k1))), float)))


def map_detection(unfolded: UnfoldedRibs, det: Detection, ct=None,
                  max_mm: float = defaults.RIB_ASSIGN_MAX_MM) -> Optional[UnfoldedMark]:
    """The detection's mark on the unfolded picture, or None if it lies on no rib."""
    named = det.rib if unfolded.strip(det.rib) is not None else None  # "none", or a rib not unfolded
    pos = unfolded.lps_to_pixel(det.center_lps, rib=named)
    if pos is None or pos.distance_mm > max_mm:
        return None
    strip = unfolded.strips[pos.strip_index]
    arcs, acrosses = [pos.arc_mm], [pos.across_mm]
    for corner in box_corners_lps(det, ct):  # the box: the detection's extent along the rib
        p, t, n, b = strip.frame_at(pos.arc_mm)
        arcs.append(float(np.clip(pos.arc_mm + np.dot(corner - p, t), 0, strip.length_mm)))
        acrosses.append(float(np.dot(corner - p, b)))
    px = unfolded.pixel_mm
    half = 0.5 * defaults.UNFOLD_MIN_BOX_MM
    a0, a1 = min(min(arcs), pos.arc_mm - half), max(max(arcs), pos.arc_mm + half)
    v0, v1 = min(min(acrosses), pos.across_mm - half), max(max(acrosses), pos.across_mm + half)
    lim = unfolded.half_across_px * px  # the box stays on its rib's strip, at least `half` x 2 high
    v0, v1 = float(np.clip(v0, -lim, lim - 2 * half)), float(np.clip(v1, -lim + 2 * half, lim))
    v0, v1 = min(v0, v1 - 2 * half), max(v1, v0 + 2 * half)
    cols = sorted(unfolded.arc_to_col(strip.side, a) for a in (a0, a1))
    centre = unfolded.centre_row(strip.slot)
    box = (int(np.floor(centre - v1 / px)), int(np.floor(cols[0])), int(np.ceil(centre - v0 / px)), int(np.ceil(cols[1])))
    return UnfoldedMark(det.id, pos.rib, pos.arc_mm, pos.across_mm, pos.depth_mm, pos.distance_mm,
                        pos.row, pos.col, box, px, det.label_code)


def map_detections(unfolded: UnfoldedRibs, detections: Sequence[Detection], ct=None,
                   max_mm: float = defaults.RIB_ASSIGN_MAX_MM) -> dict[int, Optional[UnfoldedMark]]:
    """Mark of every detection by id (None where it lies on no rib). `ct` gives the boxes' extent."""
    return {d.id: map_detection(unfolded, d, ct, max_mm) for d in detections}


def unfolded_fields(marks: dict[int, Optional[UnfoldedMark]]) -> dict[int, Optional[dict]]:
    """Per detection id, the JSON value of its `unfolded` field (None: not on a rib)."""
    return {i: (m.to_dict() if m is not None else None) for i, m in marks.items()}


def add_unfolded_to_summary(summary: dict, marks: dict[int, Optional[UnfoldedMark]]) -> dict:
    """Give each detection of a case summary (`export.case_summary`) its `unfolded` field."""
    fields = unfolded_fields(marks)
    for det in summary.get("detections", []):
        det["unfolded"] = fields.get(det["id"])
    return summary

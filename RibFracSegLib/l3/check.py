"""L3 from two independent sources: the vertebral count (spine.vertebral_levels) and the MIP network.

When both place L3 they must agree within L3_AGREE_FRACTION of L3's height (body + disc), else the
result is flagged for review with the reason. When they agree the network's point is the answer (its
row is finer than a body found between discs on 2.5-5 mm slices); when they disagree, or the network
finds nothing, the count's body centre is (the count names the level; a network one vertebra off is
the failure seen on real CTs); the network answers alone when no anchor is in view. "Not in view"
needs the count to show L3 beyond the CT's edge, or, without a count, the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import SimpleITK as sitk

from RibFracSegLib import defaults
from RibFracSegLib.geometry import lps_to_ras, superior_axis
from RibFracSegLib.l3.locator import L3Result, locate_l3

CSV_FIELDS = ["l3_source", "review", "review_reason", "count_anchor", "lumbar_count", "count_z_mm", "network_z_mm",
              "difference_mm"]


@dataclass
class L3Check:
    """L3 as decided from the count and the network, with the reason when a reader should look."""

    in_view: bool
    source: str  # "count+network", "count", "network" or "none"
    z_mm: float
    center_lps: tuple[float, float, float]
    slice_index: int
    review: bool
    review_reason: str
    count_anchor: str
    lumbar_count: Optional[int]
    count_z_mm: Optional[float]
    network_z_mm: Optional[float]
    difference_mm: Optional[float]
    network: L3Result = field(repr=False)
    levels: object = field(default=None, repr=False)  # spine.SpineLevels
    notes: list[str] = field(default_factory=list)

    @property
    def center_ras(self) -> tuple[float, float, float]:
        return lps_to_ras(self.center_lps)

    @property
    def confidence(self) -> float:
        """The network's confidence (the count has none)."""
        return self.network.confidence

    @property
    def projections(self):
        """None: body composition then takes the slice through `center_lps`, not the network's row."""
        return None

    def row(self) -> dict:
        """The CSV/table fields (CSV_FIELDS)."""
        r = lambda v: None if v is None else round(v, 2)  # noqa: E731
        return {"l3_source": self.source, "review": self.review, "review_reason": self.review_reason,
                "count_anchor": self.count_anchor, "lumbar_count": self.lumbar_count,
                "count_z_mm": r(self.count_z_mm), "network_z_mm": r(self.network_z_mm),
                "difference_mm": r(self.difference_mm)}

    def as_dict(self) -> dict:
        return {"in_view": self.in_view, "z_mm": round(self.z_mm, 2), "slice_index": self.slice_index,
                "center_lps": [round(v, 2) for v in self.center_lps],
                "center_ras": [round(v, 2) for v in self.center_ras], **self.row(), "notes": list(self.notes),
                "network": self.network.as_dict(), "levels": None if self.levels is None else self.levels.to_dict()}


def _slice_index(image: sitk.Image, lps) -> int:
    index = image.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in lps))
    axis, _ = superior_axis(image)
    return int(min(max(round(index[2 - axis]), 0), image.GetSize()[2 - axis] - 1))


def _count_says(levels) -> tuple[Optional[object], Optional[bool], float]:
    """(L3 vertebra or None, whether the count shows L3 outside the CT (None: cannot tell), L3 height)."""
    l3 = levels.by_name("L3") if levels is not None else None
    named = [v for v in levels.vertebrae if v.name] if levels is not None else []
    heights = [v.height_mm for v in levels.vertebrae if v.complete] if levels is not None else []
    height = l3.height_mm if l3 is not None and l3.complete else (max(heights) if heights else 35.0)
    if l3 is not None:
        return l3, False, height
    if not named:
        return None, None, height
    order = {n: i for i, n in enumerate(["T12", "L1", "L2", "L3", "L4", "L5", "L6"])}
    lumbar = [v for v in named if v.name in order]
    if not lumbar and any(v.name.startswith(("T", "C")) for v in named):
        return None, True, height  # only thoracic/cervical named: L3 below the CT
    if lumbar and (all(order[v.name] < order["L3"] for v in lumbar) or all(order[v.name] > order["L3"] for v in lumbar)):
        return None, True, height
    return None, None, height


def check_l3(image: sitk.Image, network: L3Result, levels) -> L3Check:
    """Combine a network result with a vertebral count (`levels` a SpineLevels or None)."""
    l3, outside, height = _count_says(levels)
    anchor = levels.anchor if levels is not None else "none"
    lumbar = levels.lumbar_count if levels is not None else None
    notes = list(levels.notes) if levels is not None else []
    half = defaults.L3_AGREE_FRACTION * height
    net_z = network.z_mm if network.in_view else None
    if l3 is not None:
        diff = None if net_z is None else l3.centre_lps[2] - net_z
        if net_z is None:
            review, reason = False, (f"network found no L3 (confidence {network.confidence:.2f}); "
                                     f"L3 from the count ({anchor})")
        elif abs(diff) <= half:
            review, reason = False, ""
        else:
            review, reason = True, (f"count ({anchor}) and network disagree by {abs(diff):.0f} mm "
                                    f"(more than half a vertebra, {half:.0f} mm)")
        if lumbar is not None and lumbar != 5:
            review, reason = True, "; ".join(s for s in (reason, f"{lumbar} lumbar vertebrae (transitional)") if s)
        agree = net_z is not None and abs(diff) <= half
        point = network.center_lps if agree else l3.centre_lps  # the network's row is finer when it is right
        return L3Check(True, "count+network" if agree else "count", point[2], point, _slice_index(image, point),
                       review, reason, anchor, lumbar, l3.centre_lps[2], net_z, diff, network, levels, notes)
    if outside:
        review = net_z is not None
        reason = (f"count ({anchor}) shows L3 outside the CT but the network places it at z {net_z:.0f} mm"
                  if review else "")
        return L3Check(False, "count", network.z_mm, network.center_lps, network.slice_index, review, reason,
                       anchor, lumbar, None, net_z, None, network, levels, notes)
    reason = f"no vertebral count ({anchor if anchor != 'none' else 'no anchor in view'}): network alone"
    return L3Check(network.in_view, "network" if network.in_view else "none", network.z_mm, network.center_lps,
                   network.slice_index, network.in_view, reason, anchor, lumbar, None, net_z, None, network, levels,
                   notes)


def locate_l3_checked(image: sitk.Image, checkpoint=None, ribs=None, count: str = "ribs") -> L3Check:
    """L3 by count and network. `count`: "ribs" names the bodies from the rib heads and the sacrum,
    "sacrum" from the sacrum alone, "none" leaves the network alone. The heads come from `ribs` (a
    RibLabels, when the ribs are segmented anyway), else from `ribs.heads.rib_heads` (a box along the
    spine, a fraction of the rib step's time), and when neither they nor the sacrum give a count, from
    the full rib step."""
    from RibFracSegLib.ribs import segment_ribs
    from RibFracSegLib.ribs.anatomy import column_landmarks
    from RibFracSegLib.ribs.heads import rib_heads
    from RibFracSegLib.spine import vertebral_levels

    if count not in ("ribs", "sacrum", "none"):
        raise ValueError(f"count must be 'ribs', 'sacrum' or 'none', got {count!r}")
    network = locate_l3(image, checkpoint)
    if count == "none":
        return check_l3(image, network, None)
    marks = column_landmarks(image)  # one working grid and spine track for the ribs and the count
    if count == "sacrum":
        return check_l3(image, network, vertebral_levels(image, None, landmarks=marks))
    levels = vertebral_levels(image, ribs if ribs is not None else rib_heads(image, landmarks=marks), landmarks=marks)
    if ribs is None and levels.anchor == "none":
        full = vertebral_levels(image, segment_ribs(image, landmarks=marks), landmarks=marks)
        if full.anchor.startswith("rib"):
            full.notes.insert(0, "the rib heads near the spine gave no count: counted from the segmented ribs")
            levels = full
    return check_l3(image, network, levels)

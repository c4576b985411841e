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
    levels: object = field(default=None, repr=False, compare=False)  # spine.SpineLevels (not sent to Slicer)
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

    def to_dict(self) -> dict:
        """Every field but `levels` (its summary, `levels.to_dict()`, rides along as plain data),
        unrounded, as JSON types: what crosses the Slicer worker's process boundary."""
        f = lambda v: None if v is None else float(v)  # noqa: E731
        return {"check": 1, "in_view": bool(self.in_view), "source": self.source, "z_mm": float(self.z_mm),
                "center_lps": [float(v) for v in self.center_lps], "slice_index": int(self.slice_index),
                "review": bool(self.review), "review_reason": self.review_reason, "count_anchor": self.count_anchor,
                "lumbar_count": None if self.lumbar_count is None else int(self.lumbar_count),
                "count_z_mm": f(self.count_z_mm), "network_z_mm": f(self.network_z_mm),
                "difference_mm": f(self.difference_mm), "network": self.network.to_dict(),
                "notes": [str(n) for n in self.notes]}

    @classmethod
    def from_dict(cls, data: dict) -> "L3Check":
        """The inverse of `to_dict` (levels None); unknown or missing keys raise a ValueError."""
        names = {"check", "in_view", "source", "z_mm", "center_lps", "slice_index", "review", "review_reason",
                 "count_anchor", "lumbar_count", "count_z_mm", "network_z_mm", "difference_mm", "network", "notes"}
        if set(data) != names:
            raise ValueError(f"Not an L3Check: keys {sorted(set(data) ^ names)} differ from {sorted(names)}.")
        f = lambda v: None if v is None else float(v)  # noqa: E731
        return cls(in_view=bool(data["in_view"]), source=str(data["source"]), z_mm=float(data["z_mm"]),
                   center_lps=tuple(float(v) for v in data["center_lps"]), slice_index=int(data["slice_index"]),
                   review=bool(data["review"]), review_reason=str(data["review_reason"]),
                   count_anchor=str(data["count_anchor"]),
                   lumbar_count=None if data["lumbar_count"] is None else int(data["lumbar_count"]),
                   count_z_mm=f(data["count_z_mm"]), network_z_mm=f(data["network_z_mm"]),
                   difference_mm=f(data["difference_mm"]), network=L3Result.from_dict(data["network"]),
                   notes=[str(n) for n in data["notes"]])

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
    """(L3 vertebra or None, whether the count shows L3 outside the CT (None: cannot tell), L3 height).

    Outside only when the named bodies run to the CT's edge on L3's side: the bodies below T12 (or
    above L4) may be unnamed for another reason (a break in the disc spacing) while L3 is in view."""
    l3 = levels.by_name("L3") if levels is not None else None
    named = [v for v in levels.vertebrae if v.name] if levels is not None else []
    heights = [v.height_mm for v in levels.vertebrae if v.complete] if levels is not None else []
    height = l3.height_mm if l3 is not None and l3.complete else (max(heights) if heights else 35.0)
    if l3 is not None:
        return l3, False, height
    if not named:
        return None, None, height
    from RibFracSegLib.spine.levels import SEQUENCE  # here: reading an L3Check back needs no spine code

    order = {n: i for i, n in enumerate(SEQUENCE)}
    below = all(order[v.name] < order["L3"] for v in named)  # every named body above L3: L3 lies below them
    above = all(order[v.name] > order["L3"] for v in named)
    bodies = levels.vertebrae  # bottom to top
    if below and bodies[0].name is not None and bodies[0].z_bottom_mm - levels.fov_mm[0] < height:
        return None, True, height  # the lowest body found is named, at the CT's bottom: L3 below the CT
    if above and bodies[-1].name is not None and levels.fov_mm[1] - bodies[-1].z_top_mm < height:
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
    # ribs numbered from the bottom of a cut cage (ambiguous: ../shared/reference/ribs.md), of one side
    # only, or overruled by the sacrum are the count's weak case (SpineLevels.weak): when it and the
    # network disagree, the network's answer stands (flagged); the sacrum, or both sides' ribs counted
    # from rib 1, outweigh the network
    weak = net_z is not None and levels is not None and levels.weak
    if l3 is not None:
        diff = None if net_z is None else l3.centre_lps[2] - net_z
        if net_z is None:  # one source: sure only when the count is (a count up from the lowest ribs is not)
            review = levels.weak
            reason = (f"network found no L3 (confidence {network.confidence:.2f}); L3 from the count ({anchor})"
                      + ("; a weak count (ribs counted from the bottom of the cage or on one side, 11 or 13 "
                         "rib pairs would move it a vertebra) and nothing to check it against" if review else ""))
        elif abs(diff) <= half:
            review, reason = False, ""
        else:
            review, reason = True, (f"count ({anchor}) and network disagree by {abs(diff):.0f} mm "
                                    f"(more than half a vertebra, {half:.0f} mm)")
        if lumbar is not None and lumbar != 5:
            review, reason = True, "; ".join(s for s in (reason, f"{lumbar} lumbar vertebrae (transitional)") if s)
        agree = net_z is not None and abs(diff) <= half
        if weak and not agree:
            reason += "; a weak count (ribs counted from the bottom, on one side, or against the sacrum): the network's L3"
        point = network.center_lps if agree or weak else l3.centre_lps  # the network's row is finer when right
        source = "count+network" if agree else "network" if weak else "count"
        return L3Check(True, source, point[2], point, _slice_index(image, point),
                       review, reason, anchor, lumbar, l3.centre_lps[2], net_z, diff, network, levels, notes)
    if outside and weak:
        reason = (f"a weak count ({anchor}) shows L3 outside the CT but the network places it at z {net_z:.0f} mm: "
                  "the network's L3")
        return L3Check(True, "network", network.z_mm, network.center_lps, network.slice_index, True, reason,
                       anchor, lumbar, None, net_z, None, network, levels, notes)
    if outside:
        review = net_z is not None
        reason = (f"count ({anchor}) shows L3 outside the CT but the network places it at z {net_z:.0f} mm"
                  if review else "")
        return L3Check(False, "count", network.z_mm, network.center_lps, network.slice_index, review, reason,
                       anchor, lumbar, None, net_z, None, network, levels, notes)
    reason = (f"{lumbar} bodies between the ribs' T12 and the sacrum (transitional, or miscounted): no lumbar "
              "body named; network alone" if lumbar is not None and lumbar != 5 else
              f"no vertebral count ({anchor if anchor != 'none' else 'no anchor in view'}): network alone")
    return L3Check(network.in_view, "network" if network.in_view else "none", network.z_mm, network.center_lps,
                   network.slice_index, network.in_view, reason, anchor, lumbar, None, net_z, None, network, levels,
                   notes)


def locate_l3_checked(image: sitk.Image, checkpoint=None, ribs=None, count: str = "ribs") -> L3Check:
    """L3 by count and network. `count`: "ribs" names the bodies from the rib heads and the sacrum,
    "sacrum" from the sacrum alone, "none" leaves the network alone. The heads come from `ribs` (a
    RibLabels, when the ribs are segmented anyway), else from `ribs.heads.rib_heads` (a box along the
    spine, a fraction of the rib step's time), and when neither they, being few, nor the sacrum give a
    count, from the full rib step."""
    from RibFracSegLib.ribs import segment_ribs
    from RibFracSegLib.ribs.anatomy import column_landmarks, working_factors
    from RibFracSegLib.ribs.heads import rib_heads
    from RibFracSegLib.spine import vertebral_levels

    if count not in ("ribs", "sacrum", "none"):
        raise ValueError(f"count must be 'ribs', 'sacrum' or 'none', got {count!r}")
    network = locate_l3(image, checkpoint)
    if count == "none":
        return check_l3(image, network, None)
    # one working grid and spine track for the rib heads and the count, slices no finer than the count needs
    marks = column_landmarks(image, slice_mm=defaults.SPINE_WORK_SLICE_MM)
    if count == "sacrum":
        return check_l3(image, network, vertebral_levels(image, None, landmarks=marks))
    heads = ribs if ribs is not None else rib_heads(image, landmarks=marks)
    levels = vertebral_levels(image, heads, landmarks=marks)
    few = ribs is None and sum(h.number is not None for h in heads.heads) < defaults.SPINE_FEW_HEADS
    if few and levels.anchor == "none":  # a cut cage the box saw little of: the segmented ribs may say more
        # the rib step's heads (grown: the count needs heads, not whole ribs), on the count's grid when that
        # is the rib step's own (slices of 2.5 mm and more), else on its own
        own = working_factors(marks.canon.array.shape, marks.canon.spacing_zyx) == tuple(marks.grid.factors)
        full = vertebral_levels(image, segment_ribs(image, landmarks=marks if own else None, method="grow"),
                                landmarks=marks)
        if full.anchor.startswith("rib"):
            full.notes.insert(0, "the rib heads near the spine gave no count: counted from the segmented ribs")
            levels = full
    return check_l3(image, network, levels)

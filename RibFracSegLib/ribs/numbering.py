"""Rib numbers: count from rib 1 when the top of the cage is in view, else from rib 12 at the bottom.

Radiologists count from the top because counting from below is ambiguous (11 or 13 pairs, a
hypoplastic 12th rib). Ribs are nested, so their heights order them; a gap of about two rib
pitches means a rib was not found there, and numbers beyond such a gap are not given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import defaults


@dataclass
class RibRegion:
    """One rib found on the working grid, before numbering."""

    label: int  # value in the working-grid partition
    side: str
    z_mean_mm: float  # mean height (working-grid z in mm)
    z_top_mm: float
    z_bottom_mm: float
    voxels: int
    number: Optional[int] = None
    confidence: float = 0.0
    anchor: str = ""  # "top" (counted from rib 1) or "bottom" (from rib 12)


def number_ribs(regions: list[RibRegion], fov_top_mm: float, fov_bottom_mm: float,
                lung_top_mm: Optional[float], apex_in_view: bool, local_pitch: bool = False) -> tuple[str, list[str]]:
    """Set `number`/`confidence` on each region in place; return the anchor used and notes.
    `local_pitch`: judge each gap against its neighbouring gaps (heights of traced ribs, which spread
    towards ribs 11-12) rather than against the median gap (seed heights)."""
    notes: list[str] = []
    anchors = set()
    for side in ("L", "R"):
        ribs = _ordered([r for r in regions if r.side == side])
        if not ribs:
            notes.append(f"no {side} ribs found")
            continue
        heights = np.array([r.z_mean_mm for r in ribs])
        # ribs 1 and 2 can cross the paravertebral band at one height: a tie counts as one step
        gaps = np.maximum(-np.diff(heights), defaults.RIB_SEED_TIE_MM)
        pitch = float(np.median(gaps)) if gaps.size else defaults.RIB_TYPICAL_PITCH_MM
        pitch = float(np.clip(pitch, 0.5 * defaults.RIB_TYPICAL_PITCH_MM, 1.5 * defaults.RIB_TYPICAL_PITCH_MM))
        # step k between neighbours: 1 normally, 2 where a rib is missing; larger gaps stop the count
        steps = _steps(gaps, pitch) if local_pitch else \
            [max(1, int(round(g / pitch))) for g in np.where(gaps <= defaults.RIB_SEED_TIE_MM, pitch, gaps)]
        # rib 1 rings the lung apex: when the lungs narrow to their apex inside the CT, the top rib is rib 1
        top_in_view = (apex_in_view and lung_top_mm is not None
                       and ribs[0].z_mean_mm >= lung_top_mm - defaults.RIB_TOP_MARGIN_MM)
        bottom_in_view = ribs[-1].z_mean_mm - fov_bottom_mm >= defaults.RIB_BOTTOM_MARGIN_MM
        if top_in_view:
            anchors.add("rib 1")
            number, ok = 1, True
            for i, rib in enumerate(ribs):
                if i:
                    ok = ok and 1 <= steps[i - 1] <= 2
                    number += max(1, steps[i - 1])
                if ok and number <= 12:
                    rib.number, rib.confidence = number, 0.9 if all(s == 1 for s in steps[:i]) else 0.6
                    rib.anchor = "top"
            extra = [r for r in ribs if r.number is None]
            if extra:
                notes.append(f"{side}: {len(extra)} rib(s) below the count from rib 1 left unnumbered "
                             "(13th rib, lumbar rib, or a gap in the count)")
        elif bottom_in_view:
            anchors.add("rib 12")
            number, ok = 12, True
            for i in range(len(ribs) - 1, -1, -1):
                if i < len(ribs) - 1:
                    ok = ok and 1 <= steps[i] <= 2
                    number -= max(1, steps[i])
                if ok and number >= 1:
                    ribs[i].number, ribs[i].confidence, ribs[i].anchor = number, 0.6, "bottom"
            notes.append(f"{side}: the top of the rib cage is not in view; counted up from the lowest rib as rib 12 "
                         "(wrong if this patient has 11 or 13 rib pairs)")
        else:
            notes.append(f"{side}: neither rib 1 nor rib 12 is in view with margin; ribs left unnumbered")
    _cross_check(regions, notes)
    anchor = " and ".join(sorted(anchors)) if anchors else "none"
    if not any(r.number for r in regions):
        anchor = "none"
    return anchor, notes


def _steps(gaps: np.ndarray, pitch: float) -> list[int]:
    """Ribs between neighbours found: 1, or 2+ where a rib was missed. Each gap is judged against its
    neighbouring gaps (the local pitch: ribs spread towards 11-12), never below half the typical one."""
    steps = []
    tie = gaps <= defaults.RIB_SEED_TIE_MM
    for i, g in enumerate(gaps):
        if tie[i]:
            steps.append(1)
            continue
        near = [gaps[j] for j in (i - 2, i - 1, i + 1, i + 2) if 0 <= j < len(gaps) and not tie[j]]
        local = float(np.median(near)) if near else pitch
        local = max(local, 0.5 * defaults.RIB_TYPICAL_PITCH_MM)
        steps.append(1 if g < defaults.RIB_MISSING_GAP * local else max(2, int(round(g / local))))
    return steps


def _ordered(ribs: list[RibRegion]) -> list[RibRegion]:
    """Top to bottom by seed height; seeds within RIB_SEED_TIE_MM are ordered by their ribs' tops
    (rib 1's neck, rising to T1, is the highest point of the cage)."""
    ribs = sorted(ribs, key=lambda r: -r.z_mean_mm)
    for i in range(len(ribs) - 1):
        a, b = ribs[i], ribs[i + 1]
        if a.z_mean_mm - b.z_mean_mm <= defaults.RIB_SEED_TIE_MM and b.z_top_mm > a.z_top_mm:
            ribs[i], ribs[i + 1] = b, a
    return ribs


def _cross_check(regions: list[RibRegion], notes: list[str]) -> None:
    """Left and right must agree: the height difference between left and right rib k stays about
    constant (a tilted or bent spine moves it a little, crowded upper ribs briefly), while a rib
    missed or merged on one side shifts it by a rib pitch for every rib below. Where that shift
    holds to the last rib, those ribs lose their numbers on both sides rather than keep wrong ones."""
    numbered = {s: {r.number: r for r in regions if r.side == s and r.number} for s in ("L", "R")}
    common = sorted(set(numbered["L"]) & set(numbered["R"]))
    if len(common) < 3:
        return
    d = np.array([numbered["L"][k].z_mean_mm - numbered["R"][k].z_mean_mm for k in common])
    offset = float(np.median(d))
    flagged = []
    for i, k in enumerate(common):
        gaps = [numbered[s][common[i - 1]].z_mean_mm - numbered[s][k].z_mean_mm for s in ("L", "R")] if i else [0.0]
        pitch = max(float(np.mean(gaps)), defaults.RIB_MIN_LOCAL_PITCH_MM)
        flagged.append(abs(d[i] - offset) > defaults.RIB_SHIFT_FRACTION * pitch)
    first_bad = None
    for i in range(len(common) - 1, -1, -1):  # the run of flagged ribs that reaches the last one
        if not flagged[i]:
            break
        first_bad = common[i]
    if first_bad is not None and first_bad != common[-1]:
        for rib in regions:
            if rib.number is not None and rib.number >= first_bad:
                rib.number, rib.confidence = None, 0.0
        notes.append(f"left and right counts disagree from rib {first_bad} down: those ribs are left unnumbered")
    elif first_bad is not None:  # only the last pair disagrees
        for side in ("L", "R"):
            numbered[side][first_bad].number, numbered[side][first_bad].confidence = None, 0.0
        notes.append(f"left and right rib {first_bad} lie at different heights: left unnumbered")

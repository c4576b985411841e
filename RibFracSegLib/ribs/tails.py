"""A traced rib ends where its bone ends: a boneless anterior tail is cut from its centreline.

The rib step takes voxels above RIB_BONE_HU, which costal cartilage (and calcified cartilage's
partial volume) can pass, so a trace may run on past the costochondral junction along cartilage:
on CPTAC-LSCC-C3N-00247 L7 ran 27 mm on soft tissue (343 mm against R7's 302 mm). Everything
downstream reads the centreline's length (the breaks' support and the rib ends, the rib frame
detector's windows, the unfolded view), so a run-on tail puts the bony end inside the stretch where
breaks are expected, and the network fires there. Per 1 mm section of the straightened rib the
bony area (above RIB_TAIL_BONE_HU within RIB_TAIL_RADIUS_MM of the centreline) is read; the rib
ends at the last section, from the anterior tip back, holding at least RIB_TAIL_MIN_AREA_MM2 and
RIB_TAIL_AREA_FRACTION of the rib's median over its middle third. A tail of RIB_TAIL_MIN_MM or more
beyond it is cut; shorter ones are the bony end's own taper. The head's end is left alone (the
head sits in its joint, always bone).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np
import SimpleITK as sitk

from .. import defaults
from .frame_build import body_centre, rib_frame
from .labels import Rib

_STEP_MM = 1.0  # section spacing along the rib


def bony_length_mm(rib: Rib, ct: sitk.Image, centre_lps: np.ndarray, array: Optional[np.ndarray] = None) -> float:
    """Arc length (mm, on the rib's own centreline) from its head to its last bony section."""
    frame = rib_frame(rib, centre_lps, voxel_mm=_STEP_MM, half_mm=defaults.RIB_TAIL_RADIUS_MM + _STEP_MM,
                      end_mm=0.0)
    if frame is None or len(frame.points_lps) < 6:
        return rib.length_mm
    volume = frame.sample(ct, array)
    n = volume.shape[1]
    offsets = (np.arange(n) - (n - 1) / 2) * frame.voxel_mm
    disk = np.hypot(offsets[:, None], offsets[None, :]) <= defaults.RIB_TAIL_RADIUS_MM
    area = ((volume > defaults.RIB_TAIL_BONE_HU) & disk).sum(axis=(1, 2)) * frame.voxel_mm ** 2
    third = len(area) // 3
    floor = max(defaults.RIB_TAIL_MIN_AREA_MM2, defaults.RIB_TAIL_AREA_FRACTION * float(np.median(area[third:2 * third])))
    bony = np.nonzero(area >= floor)[0]
    if not bony.size:
        return rib.length_mm
    frame_length = float(frame.arc_mm(len(area) - 1))
    # the frame's arc runs along the smoothed line: scale to the centreline's own
    return min(rib.length_mm, float(frame.arc_mm(bony[-1])) * rib.length_mm / max(frame_length, 1e-6))


def cut_at(rib: Rib, length_mm: float) -> Rib:
    """The rib with its centreline ending `length_mm` of arc from its head (the end point interpolated)."""
    arc = rib.arc_mm
    keep = int(np.searchsorted(arc, length_mm, side="right"))
    line = rib.centreline_lps[:keep]
    if keep < len(arc) and length_mm > arc[keep - 1]:
        f = (length_mm - arc[keep - 1]) / (arc[keep] - arc[keep - 1])
        line = np.vstack([line, rib.centreline_lps[keep - 1] + f * (rib.centreline_lps[keep] - rib.centreline_lps[keep - 1])])
    return replace(rib, centreline_lps=np.ascontiguousarray(line))


def cut_boneless_tails(ribs: list[Rib], ct: sitk.Image) -> list[Rib]:
    """Each rib with an anterior tail of RIB_TAIL_MIN_MM or more past its bone cut off (others as they are)."""
    if not ribs:
        return ribs
    centre, array = body_centre(ribs), sitk.GetArrayViewFromImage(ct)
    out = []
    for rib in ribs:
        bony = bony_length_mm(rib, ct, centre, array)
        out.append(cut_at(rib, bony) if rib.length_mm - bony >= defaults.RIB_TAIL_MIN_MM else rib)
    return out

"""Rib label maps from other tools, converted to our values (0 background, 1-12 left, 13-24 right).

TotalSegmentator v2 writes rib_left_1..12 = 92..103 and rib_right_1..12 = 104..115 beside many other
structures; our phantoms write 1..12 right and 13..24 left. Both are mapped here, once, so every
consumer (fracture simulation, rib evaluation) reads one convention.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .. import defaults
from ..io import InputError

TOTALSEG_FIRST_RIB = 92  # rib_left_1; rib_right_12 is 115
TOTALSEG_LAST_RIB = 115


def _with_values(labels: sitk.Image, values: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(values.astype(np.uint8))
    out.CopyInformation(labels)
    return out


def label_convention(values: np.ndarray) -> str:
    """'ribfracseg' (1-26 only) or 'totalsegmentator' (rib ids 92-115 present); InputError otherwise."""
    present = np.unique(values)
    present = present[present != 0]
    if present.size and present.min() >= 1 and present.max() <= defaults.RIB_UNNUMBERED_RIGHT:
        return "ribfracseg"
    if np.any((present >= TOTALSEG_FIRST_RIB) & (present <= TOTALSEG_LAST_RIB)):
        return "totalsegmentator"
    raise InputError(f"Rib label map holds values {present[:12].tolist()}{'...' if present.size > 12 else ''}: "
                     "neither our convention (1-12 left ribs, 13-24 right ribs) nor TotalSegmentator's "
                     "(92-103 left ribs, 104-115 right ribs). Give a rib label map in one of these.")


def to_rib_labels(labels: sitk.Image) -> sitk.Image:
    """Any supported rib label map -> UInt8 in our convention on the same grid (other structures dropped)."""
    arr = sitk.GetArrayViewFromImage(labels)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.rint(arr)
    arr = arr.astype(np.int64)
    if label_convention(arr) == "ribfracseg":
        return _with_values(labels, arr)
    ribs = (arr >= TOTALSEG_FIRST_RIB) & (arr <= TOTALSEG_LAST_RIB)
    return _with_values(labels, np.where(ribs, arr - (TOTALSEG_FIRST_RIB - 1), 0))


def phantom_to_rib_labels(phantom_ribs: sitk.Image) -> sitk.Image:
    """A phantom's `rib_labels` (1-12 right, 13-24 left) in our convention (1-12 left, 13-24 right)."""
    arr = sitk.GetArrayViewFromImage(phantom_ribs).astype(np.int64)
    swapped = np.where(arr == 0, 0, np.where(arr <= 12, arr + 12, arr - 12))
    return _with_values(phantom_ribs, swapped)

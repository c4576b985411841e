"""`segment_ribs(image) -> RibLabels`: the 24 ribs from the CT alone, on any grid and orientation.

Two ways to the ribs from the same landmarks (working grid, body, bone, spine track) and seeds:
grown through the rib-cage bone (`ribs/grow.py`, which holds on phantoms and clean chests) and
traced as curves on full-resolution cross-sections (`ribs/traced.py`, which holds where scapulae,
cartilage, effusions and touching neighbours break the grown regions on real chests). The traced set
is made beside the grown one (on the other core); the grown set is kept when it is complete, else the
traced one replaces it where its left and right ribs agree clearly better (RIB_TRACED_MIN_GAIN_PAIRS
more numbered pairs of like length, and at least RIB_SKIP_MIN_PAIRS: a few traced pairs on a small or
coarse CT are no better evidence); the notes say which set was set aside. The kept set's traces end
where their bone ends (`ribs/tails.py`: a tail run on along costal cartilage is cut).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import defaults
from ..orientation import canonical_volume
from .anatomy import ColumnLandmarks, column_landmarks, lungs_of, too_coarse_for_ribs
from .cage import cage_start
from .grow import grow_ribs, working_geometry
from .labels import RibLabels, like_lengths
from .tails import cut_boneless_tails
from .traced import trace_ribs


def segment_ribs(image: sitk.Image, landmarks: Optional[ColumnLandmarks] = None, method: str = "auto") -> RibLabels:
    """Segment and number the ribs of a CT (HU); unnumbered ribs keep their side. `landmarks`: the
    CT's `column_landmarks`, when the caller has them already (the vertebral count uses them too).
    `method`: "auto" (see the module docstring), "grow" or "trace"."""
    if method not in ("auto", "grow", "trace"):
        raise ValueError(f"method must be auto, grow or trace, got {method!r}")
    coarse = too_coarse_for_ribs(canonical_volume(image).spacing_zyx)
    if coarse:
        empty = sitk.Image(image.GetSize(), sitk.sitkUInt8)
        empty.CopyInformation(image)
        return RibLabels(labels=empty, ribs=[], numbering="none", notes=[coarse])
    t0 = time.perf_counter()
    marks = landmarks if landmarks is not None else column_landmarks(image)
    lungs = lungs_of(marks)
    start = cage_start(marks, lungs)  # both methods start from the same cage and seeds
    shared = time.perf_counter() - t0
    cage = cage_image(start.cage, marks)
    if method == "trace":
        kept = _timed(trace_ribs(image, marks, lungs, start), shared, cage)
    elif method == "grow":
        kept = _labelled(_timed(grow_ribs(image, marks, lungs, start, labelled=False), shared, cage))
    else:
        kept = _labelled(_timed(_either(image, marks, lungs, start), shared, cage))
    return _tails_cut(kept, image)


def _either(image: sitk.Image, marks: ColumnLandmarks, lungs, start) -> RibLabels:
    """The grown set when complete, else the traced one where it agrees clearly better (labels deferred)."""
    # the traced set is needed whenever the grown one is incomplete (five of six real CTs here): traced
    # beside the growing, on the other core (largely numpy and SimpleITK, which free the GIL: 2.1 -> 1.4 s
    # on LIDC-IDRI-0314; 0.5 s lost where the grown set is complete); labels only for the set kept
    with ThreadPoolExecutor(1) as pool:
        tracing = pool.submit(trace_ribs, image, marks, lungs, start, labelled=False)
        grown = grow_ribs(image, marks, lungs, start, labelled=False)
        traced = tracing.result()
    if grown.complete():
        return grown
    better = agreement(traced) >= max(agreement(grown) + defaults.RIB_TRACED_MIN_GAIN_PAIRS, defaults.RIB_SKIP_MIN_PAIRS)
    keep, other, name = (traced, grown, "grown") if better else (grown, traced, "traced")
    keep.notes.append(f"the {name} rib set was set aside ({agreement(other)} numbered left/right pairs of like "
                      f"length, against {agreement(keep)})")
    keep.timings_s.update({f"other {k}": v for k, v in other.timings_s.items()})
    return keep


def cage_image(cage: np.ndarray, marks: ColumnLandmarks) -> sitk.Image:
    """The cage bone (working grid [z, y, x]) grown by one working voxel (a rib's surface that the
    thick-structure rim trimmed), as an image on the working grid's geometry (`RibLabels.cage`)."""
    grown = ndimage.binary_dilation(cage, ndimage.generate_binary_structure(3, 1))
    out = sitk.GetImageFromArray(grown.astype(np.uint8))
    geometry = working_geometry(marks.grid, marks.canon)
    out.SetOrigin(geometry.GetOrigin())
    out.SetSpacing(geometry.GetSpacing())
    out.SetDirection(geometry.GetDirection())
    return out


def agreement(ribs: RibLabels) -> int:
    """Numbered left/right pairs whose centreline lengths are within RIB_PAIR_LENGTH_RATIO of each
    other: a rib missed, cut short, run into a neighbour or misnumbered on one side breaks its pair."""
    length = {(r.side, r.number): r.length_mm for r in ribs.ribs if r.number}
    pairs = 0
    for k in range(1, 13):
        a, b = length.get(("L", k)), length.get(("R", k))
        pairs += bool(a and b and like_lengths(a, b))
    return pairs


def _labelled(ribs: RibLabels) -> RibLabels:
    """The kept set with its label image made (deferred until the choice), timed as "labels"."""
    t = time.perf_counter()
    ribs.finish_labels()
    ribs.timings_s["labels"] = ribs.timings_s.get("labels", 0.0) + time.perf_counter() - t
    return ribs


def _tails_cut(ribs: RibLabels, image: sitk.Image) -> RibLabels:
    """The kept set's centrelines ending where their bone ends (`tails.cut_boneless_tails`), timed as "tails"."""
    t = time.perf_counter()
    ribs.ribs = cut_boneless_tails(ribs.ribs, image)
    ribs.timings_s["tails"] = time.perf_counter() - t
    return ribs


def _timed(ribs: RibLabels, shared_s: float, cage: sitk.Image) -> RibLabels:
    ribs.timings_s["landmarks"] = ribs.timings_s.get("landmarks", 0.0) + shared_s
    ribs.cage = cage
    return ribs

"""Phantom truth in the rib step's own types, so tests and benchmarks can compare like with like.

The phantom numbers its rib bones 1..12 = right, 13..24 = left (`RibPath.rib_id`); our files use
1..12 = left, 13..24 = right (`ribs.label_maps.phantom_to_rib_labels` converts). Rib *names*
("R5", "L11") agree in both, so fracture truths' `rib` needs no conversion. The phantom's
centrelines run on into the costal cartilage and beyond the field of view; the rib step reports
bone in view only, so each centreline is cut to the stretch that lies on (or within `near_mm` of)
its own labelled bone.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from RibFracSegLib.detections import Detection
from RibFracSegLib.geometry import lps_to_ras
from RibFracSegLib.geometry import indices_to_lps
from RibFracSegLib.ribs.label_maps import phantom_to_rib_labels
from RibFracSegLib.ribs.labels import Rib, RibLabels, rib_label_value


def rib_labels_from_phantom(case, near_mm: float | None = None) -> RibLabels:
    """A `RibLabels` from a `PhantomCase`'s truth: label image in our convention, centrelines cut to
    the bone in view (ribs without bone in view are left out, as the rib step would miss them)."""
    labels = phantom_to_rib_labels(case.rib_labels)
    ours = sitk.GetArrayViewFromImage(labels)
    spacing = np.array(case.rib_labels.GetSpacing())
    near = float(near_mm) if near_mm is not None else float(spacing.max())
    boxes = ndimage.find_objects(ours, max_label=24)
    ribs = []
    for name, line in sorted(case.rib_centerlines_lps.items(), key=lambda kv: (kv[0][0], int(kv[0][1:]))):
        side, number = name[0], int(name[1:])
        value = rib_label_value(side, number)
        box = boxes[value - 1]
        if box is None:
            continue
        kji = np.argwhere(ours[box] == value) + [s.start for s in box]
        dist, _ = cKDTree(indices_to_lps(case.rib_labels, kji[:, ::-1])).query(np.asarray(line, float))
        on_bone = np.flatnonzero(dist <= near)
        if len(on_bone) < 2:
            continue
        ribs.append(Rib(side, number, np.array(line[on_bone[0]:on_bone[-1] + 1], float),
                        voxel_count=len(kji), number_confidence=1.0))
    return RibLabels(labels, ribs, numbering="truth", notes=["phantom truth"])


def truth_arc_mm(centreline_lps: np.ndarray, point_lps) -> float:
    """Arc length from the head of the centreline point nearest to `point_lps` (brute force)."""
    line = np.asarray(centreline_lps, float)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))]
    return float(arc[np.argmin(np.linalg.norm(line - np.asarray(point_lps, float), axis=1))])


def detections_from_phantom(case, rib_labels: RibLabels | None = None) -> list[Detection]:
    """The phantom's fracture truths as `Detection`s (confidence 1, box and size from the truth
    labels, rib name and arc length filled) — what a perfect detector would report. Arc lengths are
    measured on `rib_labels`' centrelines when given (they may start later: cut to the view)."""
    arr = sitk.GetArrayViewFromImage(case.fracture_labels)
    boxes = ndimage.find_objects(arr)
    voxel_mm3 = float(np.prod(case.fracture_labels.GetSpacing()))
    out = []
    for f in case.fractures:
        rib = rib_labels.by_name(f.rib) if rib_labels is not None else None
        line = rib.centreline_lps if rib is not None else case.rib_centerlines_lps[f.rib]
        box = boxes[f.label_id - 1]
        lo = tuple(int(s.start) for s in box[::-1])
        hi = tuple(int(s.stop) - 1 for s in box[::-1])
        out.append(Detection(id=f.label_id, confidence=1.0, voxel_count=f.voxel_count,
                             volume_mm3=f.voxel_count * voxel_mm3, centroid_ijk=f.center_ijk,
                             center_ras=lps_to_ras(f.center_lps), center_lps=f.center_lps, bbox_ijk=(lo, hi),
                             label_code=f.code, rib=f.rib, rib_arc_mm=truth_arc_mm(line, f.center_lps)))
    return out

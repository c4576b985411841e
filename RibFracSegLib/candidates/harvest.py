"""Candidates for the second stage: what the segmentation network detects in a CT, each marked as a
true fracture (with its type) or not, plus the true fractures themselves.

Why: the candidate classifier must learn the segmentation network's own false positives (spine,
scapula, costal cartilage, vessels on real CTs) next to real-looking fractures; the detections of
the first stage on phantoms, on real fracture-free CTs and on real CTs with simulated fractures
are exactly those. A case's harvest is plain JSON (positions in LPS mm), so crops can be cut again
at any size without re-running the network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import SimpleITK as sitk

from ..evaluation.matching import iou_cells

TRUE_IOU = 0.1  # a detection overlapping a fracture at least this much is that fracture
# (the RibFrac evaluator counts a hit from IoU 0.2; slightly lower keeps borderline hits positive)


@dataclass
class Candidate:
    center_lps: tuple[float, float, float]
    confidence: float  # the segmentation network's mean probability
    volume_mm3: float
    truth: int = 0  # id of the true fracture it matches, 0 none, -1 touches one too little to say
    kind: int = 0  # that fracture's morphology 1-4 (0: not a fracture)


@dataclass
class Harvest:
    case: str
    image: str  # the CT file the positions refer to
    source: str  # "phantom", "real", "real+simulated"
    candidates: list[Candidate] = field(default_factory=list)
    truths: list[dict] = field(default_factory=list)  # {"id", "kind", "center_lps"}
    seconds: float = 0.0
    ribs: str = ""  # rib source for intact-rib negatives: a label map, "auto", or "" (none drawn)
    network_run: Optional[bool] = None  # the network ran on this CT (no candidates then means it missed
    # everything); False: truth-only harvest; None: written before this was recorded (`corpus` fills it in)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Harvest":
        return cls(**{**d, "candidates": [Candidate(**{**c, "center_lps": tuple(c["center_lps"])})
                                          for c in d["candidates"]]})


def truth_centres(labels: sitk.Image, kinds: dict[int, int]) -> list[dict]:
    """Centre (LPS mm) of each true fracture instance of a label image, with its morphology."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(labels, sitk.sitkUInt32))
    return [{"id": int(i), "kind": int(kinds.get(int(i), 0)), "center_lps": list(stats.GetCentroid(i))}
            for i in stats.GetLabels()]


def match_candidates(instances: sitk.Image, truth: Optional[sitk.Image], detections: list,
                     kinds: dict[int, int]) -> list[Candidate]:
    """One Candidate per detection, marked with the true fracture it overlaps (IoU >= TRUE_IOU)."""
    best: dict[int, tuple[float, int]] = {}
    if truth is not None:
        cells, _, _ = iou_cells(sitk.GetArrayViewFromImage(truth), sitk.GetArrayViewFromImage(instances))
        for (gt, pred), iou in cells.items():
            if iou > best.get(pred, (0.0, 0))[0]:
                best[pred] = (iou, gt)
    out = []
    for d in detections:
        iou, gt = best.get(d.id, (0.0, 0))
        truth_id = gt if iou >= TRUE_IOU else (-1 if iou > 0 else 0)
        out.append(Candidate(tuple(d.center_lps), float(d.confidence), float(d.volume_mm3), truth_id,
                             int(kinds.get(gt, 0)) if truth_id > 0 else 0))
    return out

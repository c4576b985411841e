"""RibFrac FROC: recall at 0.5/1/2/4/8 false positives per scan, with the official edge rules.

Kept literal because small details move the score: thresholds are numpy's arange(0, 1, 0.01) (so
0.70 is really 0.7000000000000001 and a confidence of exactly 0.7 does not pass it), FP/scan and
recall carry a 1e-8 epsilon, points are sorted by FP before interpolating, a key level below every
point gives recall 0 and above every point gives the max recall.

Tie order: the official code sorts with pandas `sort_values`, i.e. numpy's argsort(kind="quicksort"),
which is not stable and whose order of equal FP values depends on the CPU's SIMD sort. We call the
same numpy sort by default, so on one machine we give the official number bit for bit (checked on
200 random multi-scan cases); `sort_kind="stable"` is the portable, deterministic alternative (it
differed from the official score in 2 of those 200 cases, by up to 0.05).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .matching import CaseMatch

IOU_THRESHOLD = 0.2  # strict: a hit needs IoU > 0.2 (the challenge's current rule)
KEY_FP = (0.5, 1, 2, 4, 8)
EPS = 1e-8


def confidence_thresholds() -> np.ndarray:
    """The 100 thresholds 0.00 .. 0.99, bit-identical to the official np.arange(0, 1, 0.01)."""
    return np.arange(0, 1, 0.01)


def froc_point(cases: Sequence[CaseMatch], threshold: float,
               iou_threshold: float = IOU_THRESHOLD) -> tuple[float, float]:
    """(FP per scan, recall) at one confidence threshold, epsilons included."""
    total_gt = sum(c.num_gt for c in cases)
    total_tp = total_fp = 0
    for case in cases:
        counted = [r for r in case.rows if r.prob >= threshold]  # NaN confidence never counts
        hits = [r for r in counted if r.max_iou > iou_threshold]
        total_tp += len({r.hit_label for r in hits})
        total_fp += len(counted) - len(hits)
    return (total_fp + EPS) / (len(cases) + EPS), (total_tp + EPS) / (total_gt + EPS)


def recall_at_fp(fp: np.ndarray, recall: np.ndarray, key_fp: float) -> float:
    """Interpolated recall at one key FP level; fp/recall already sorted by fp."""
    below = np.flatnonzero(fp <= key_fp)
    above = np.flatnonzero(fp >= key_fp)
    if below.size == 0:
        return 0.0
    if above.size == 0:
        return float(recall.max())
    fp0, r0 = fp[below[-1]], recall[below[-1]]
    fp1, r1 = fp[above[0]], recall[above[0]]
    return float(r0 + (r1 - r0) * ((key_fp - fp0) / (fp1 - fp0 + EPS)))


def key_recalls(fp: Sequence[float], recall: Sequence[float], key_fp: Sequence[float] = KEY_FP,
                sort_kind: str = "quicksort") -> list[float]:
    """Recall at each key FP level after sorting the points by FP."""
    fp_arr = np.asarray(fp, dtype=np.float64)
    rec_arr = np.asarray(recall, dtype=np.float64)
    order = np.argsort(fp_arr, kind=sort_kind)
    return [recall_at_fp(fp_arr[order], rec_arr[order], k) for k in key_fp]


def froc(cases: Sequence[CaseMatch], iou_threshold: float = IOU_THRESHOLD,
         key_fp: Sequence[float] = KEY_FP, sort_kind: str = "quicksort"
         ) -> tuple[list[float], list[float], list[float], float]:
    """(fp per threshold, recall per threshold, recall at key FPs, FROC score = their mean)."""
    if not cases:
        raise ValueError("FROC needs at least one scan.")
    points = [froc_point(cases, float(p), iou_threshold) for p in confidence_thresholds()]
    fp = [p[0] for p in points]
    recall = [p[1] for p in points]
    keys = key_recalls(fp, recall, key_fp, sort_kind)
    return fp, recall, keys, float(np.mean(keys))

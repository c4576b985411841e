"""RibFrac classification track: confusion matrix of predicted vs hit-GT fracture types, macro-F1.

A prediction takes the class of the GT it overlaps at all (IoU > 0), whatever its confidence;
predictions labelled background (0) or undefined (-1) are skipped; GTs no prediction touches go to
the FN row. Rows are predicted classes (+FN), columns GT classes (+FP, +Ignore), as the official
table; F1 drops the Ignore column.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .froc import IOU_THRESHOLD
from .matching import CaseMatch, is_nan

CLASS_NAMES = ("Buckle", "Displaced", "Nondisplaced", "Segmental")
ROWS = CLASS_NAMES + ("FN",)
COLUMNS = CLASS_NAMES + ("FP", "Ignore")
CODE_TO_NAME = {0: "Background", 1: "Displaced", 2: "Nondisplaced", 3: "Buckle", 4: "Segmental", -1: "Ignore"}


def code_name(code: float) -> str | None:
    """Official name of a RibFrac label code; None for NaN or an unknown code."""
    if is_nan(code):
        return None
    return CODE_TO_NAME.get(int(code))


def confusion_matrix(cases: Sequence[CaseMatch]) -> np.ndarray:
    """5 x 6 counts (ROWS x COLUMNS) summed over the scans."""
    mat = np.zeros((len(ROWS), len(COLUMNS)), dtype=np.int64)
    for case in cases:
        for row in case.rows:
            pred_name = code_name(row.pred_code)
            if pred_name in (None, "Background", "Ignore"):
                continue  # the official code skips these (and would crash on an unknown code)
            gt_name = code_name(row.gt_code)
            if gt_name in (None, "Background"):
                gt_name = "FP"
            mat[ROWS.index(pred_name), COLUMNS.index(gt_name)] += 1
        hit = {r.hit_label for r in case.rows}
        for label_id, code in case.gt_info:
            name = code_name(code)
            if label_id not in hit and name not in (None, "Background"):
                mat[ROWS.index("FN"), COLUMNS.index(name)] += 1
    return mat


def macro_f1(mat: np.ndarray) -> tuple[float, float, float]:
    """(F1 with FP and FN, target-aware F1 without FP, prediction-aware F1 without FP and FN)."""
    m = mat[:, :-1].astype(np.float64)  # drop Ignore
    n = len(CLASS_NAMES)
    tp = np.diag(m)[:n]
    fp = np.array([m[i, :].sum() - tp[i] for i in range(n)])
    fn = np.array([m[:, i].sum() - tp[i] for i in range(n)])

    def f1(p_den: np.ndarray, r_den: np.ndarray) -> float:
        precision = tp / (tp + p_den + 1e-8)
        recall = tp / (tp + r_den + 1e-8)
        return float(np.mean((2 * precision * recall) / (precision + recall + 1e-8)))

    fp_detect = m[:n, -1]
    fn_detect = m[-1, :n]
    return f1(fp, fn), f1(fp - fp_detect, fn), f1(fp - fp_detect, fn - fn_detect)


def recall_by_type(cases: Sequence[CaseMatch], threshold: float = 0.0,
                   iou_threshold: float = IOU_THRESHOLD) -> dict[str, tuple[int, int]]:
    """{type name: (found, total)} of the true fractures: found = hit (IoU > `iou_threshold`) by a
    prediction of confidence >= `threshold` (the FROC's rule for a hit, per GT type)."""
    out = {name: [0, 0] for name in CLASS_NAMES}
    for case in cases:
        hit = {r.hit_label for r in case.rows if r.prob >= threshold and r.max_iou > iou_threshold}
        for label_id, code in case.gt_info:
            name = code_name(code)
            if name in out:
                out[name][1] += 1
                out[name][0] += int(label_id) in hit
    return {name: (found, total) for name, (found, total) in out.items()}

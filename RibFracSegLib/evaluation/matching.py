"""Per-case matching of predicted and true fracture instances, exactly as the RibFrac evaluator does.

Why so literal: the challenge's IoU is not a pairwise IoU. For every connected component of
(GT ∩ prediction) it takes the first voxel in (x, y, z) raster order as an anchor, reads the GT id,
prediction id and union component there, and writes intersection / union-component size into the
(gt, pred) cell — later components overwrite earlier ones ("last wins"). Touching objects merge in
the union and lower the IoU. Arrays given here must already be in the file's (x, y, z) order.
Unlike the official code, labels are never cast to uint8, so more than 255 instances stay distinct.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

NAN = float("nan")
FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class PredictionRow:
    """One row of the official `pred_metrics` table (a prediction id joined with its csv rows)."""

    pred_label: int
    max_iou: float
    hit_label: int  # GT id with the highest IoU (first on ties), 0 when it overlaps nothing
    prob: float  # NaN when the csv has no row for this id: such a prediction is never counted
    pred_code: float  # RibFrac label_code from the prediction csv (NaN when missing)
    gt_code: float  # label_code of the hit GT from the info csv; NaN when no GT or no row


@dataclass
class CaseMatch:
    """Everything the FROC, classification and segmentation metrics need from one scan."""

    public_id: str
    num_gt: int  # max GT id in the volume, as the official code counts
    rows: list[PredictionRow]
    gt_info: list[tuple[int, float]]  # (label_id, label_code) rows of the info csv for this case
    inter_sum: int = 0
    union_sum: int = 0
    gt_sum: int = 0
    pred_sum: int = 0
    iou_cells: dict[tuple[int, int], float] = field(default_factory=dict)  # (gt, pred) -> IoU


def _first_voxels(labels: np.ndarray, count: int) -> np.ndarray:
    """Flat index (C order) of the first voxel of each component 1..count."""
    flat = labels.ravel()
    nonzero = np.flatnonzero(flat)
    ids, first = np.unique(flat[nonzero], return_index=True)
    out = np.empty(count + 1, dtype=np.int64)
    out[ids] = nonzero[first]
    return out[1:]


def iou_cells(gt: np.ndarray, pred: np.ndarray) -> tuple[dict[tuple[int, int], float], int, int]:
    """The official sparse IoU matrix {(gt_id, pred_id): iou}, plus |GT∩P| and |GT∪P| voxel counts."""
    gt_bin = gt > 0
    pred_bin = pred > 0
    inter = gt_bin & pred_bin
    union_mask = gt_bin | pred_bin
    inter_lab, n_inter = ndimage.label(inter, structure=FULL_CONNECTIVITY)
    cells: dict[tuple[int, int], float] = {}
    if n_inter:
        union_lab, _ = ndimage.label(union_mask, structure=FULL_CONNECTIVITY)
        inter_area = np.bincount(inter_lab.ravel(), minlength=n_inter + 1)[1:]
        union_area = np.bincount(union_lab.ravel())
        anchors = _first_voxels(inter_lab, n_inter)  # labels are numbered in raster order of first voxel
        gt_ids = gt.ravel()[anchors]
        pred_ids = pred.ravel()[anchors]
        union_ids = union_lab.ravel()[anchors]
        for g, p, u, a in zip(gt_ids.tolist(), pred_ids.tolist(), union_ids.tolist(), inter_area.tolist()):
            if g == 0 or p == 0 or u == 0:
                continue
            cells[(int(g), int(p))] = a / (int(union_area[u]) + 1e-8)  # last component wins
    return cells, int(inter.sum()), int(union_mask.sum())


def _left_join(key: int, table: list[tuple], width: int) -> list[tuple]:
    """Rows of `table` whose first field equals key, or one NaN-filled row (a pandas left merge)."""
    hits = [row for row in table if row[0] == key]
    return hits or [(key,) + (NAN,) * (width - 1)]


def match_case(public_id: str, gt: np.ndarray, pred: np.ndarray,
               gt_info: list[tuple[int, float]],
               pred_info: list[tuple[int, float, float]]) -> CaseMatch:
    """Match one scan. gt/pred: integer instance arrays in (x, y, z) order, same shape.

    gt_info rows: (label_id, label_code); pred_info rows: (label_id, confidence, label_code).
    """
    if gt.shape != pred.shape:
        raise ValueError(f"{public_id}: prediction shape {pred.shape} differs from ground truth {gt.shape}; "
                         "predictions must be on the ground-truth grid.")
    num_gt = int(gt.max()) if gt.size else 0
    num_pred = int(pred.max()) if pred.size else 0
    case = CaseMatch(public_id, max(num_gt, 0), [], list(gt_info))
    case.gt_sum = int((gt > 0).sum())
    case.pred_sum = int((pred > 0).sum())
    if num_pred <= 0:
        case.union_sum = case.gt_sum
        return case
    if num_gt <= 0:
        cells, case.union_sum = {}, case.pred_sum
    else:
        cells, case.inter_sum, case.union_sum = iou_cells(gt, pred)
    case.iou_cells = cells
    best: dict[int, tuple[float, int]] = {}  # pred -> (max iou, smallest gt id reaching it)
    for (g, p), v in cells.items():
        cur = best.get(p)
        if cur is None or v > cur[0] or (v == cur[0] and g < cur[1]):
            best[p] = (v, g)
    for p in range(1, num_pred + 1):
        max_iou, hit = best.get(p, (0.0, 0))
        if not max_iou > 0:
            hit = 0
        # With no GT in the scan the official code skips the GT join: every prediction is an FP.
        gt_rows = _left_join(hit, gt_info, 2) if num_gt > 0 else [(0, NAN)]
        for _, prob, pred_code in _left_join(p, pred_info, 3):
            for _, gt_code in gt_rows:
                case.rows.append(PredictionRow(p, float(max_iou), hit, float(prob), float(pred_code),
                                               float(gt_code)))
    return case


def is_nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)

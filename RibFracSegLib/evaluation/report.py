"""The full RibFrac evaluation of a prediction folder against a ground-truth folder.

One `FrocReport` holds detection (FROC curve, recall at the key FP levels, score, max recall),
classification (confusion matrix, three macro-F1 variants) and segmentation (global Dice/IoU).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..progress import Progress
from . import classification
from .froc import IOU_THRESHOLD, KEY_FP, confidence_thresholds, froc
from .matching import CaseMatch, match_case
from .reading import GT_COLUMNS, PRED_COLUMNS, read_info_csvs, read_labels_xyz, volume_files

UINT8_MAX = 255


@dataclass
class FrocReport:
    fp_per_scan: list[float]  # one value per confidence threshold 0.00 .. 0.99
    recall: list[float]
    thresholds: list[float]
    key_fp: list[float]
    key_recall: list[float]
    froc: float  # mean recall at the key FP levels: the challenge's detection score
    max_recall: float
    fp_at_max_recall: float  # the official "average FP per scan at maximum recall" = max FP/scan
    n_scans: int
    n_gt: int
    n_predictions: int
    dice: float
    iou: float
    confusion: list[list[int]]  # classification.ROWS x classification.COLUMNS
    f1_total: float
    f1_target: float
    f1_pred: float
    per_case: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        keys = "  ".join(f"FP={k:g}: {r:.4f}" for k, r in zip(self.key_fp, self.key_recall))
        lines = [
            f"Scans {self.n_scans}, GT fractures {self.n_gt}, predictions {self.n_predictions}",
            f"Recall at key FP  {keys}",
            f"FROC (average recall): {self.froc:.4f}",
            f"Maximum recall: {self.max_recall:.4f}   FP per scan at maximum recall: {self.fp_at_max_recall:.4f}",
            f"Dice: {self.dice:.4f}   IoU: {self.iou:.4f}",
            f"Classification macro-F1: {self.f1_total:.4f}  target-aware: {self.f1_target:.4f}  "
            f"prediction-aware: {self.f1_pred:.4f}",
            "Confusion matrix (rows predicted, columns GT): " + " ".join(classification.COLUMNS),
        ]
        for name, row in zip(classification.ROWS, self.confusion):
            lines.append(f"  {name:<13}" + " ".join(f"{v:>6d}" for v in row))
        return "\n".join(lines)


def evaluate_cases(cases: Sequence[CaseMatch], iou_threshold: float = IOU_THRESHOLD,
                   key_fp: Sequence[float] = KEY_FP, sort_kind: str = "quicksort") -> FrocReport:
    """Combine matched scans into the challenge's figures."""
    fp, recall, key_recall, score = froc(cases, iou_threshold, key_fp, sort_kind)
    inter = sum(c.inter_sum for c in cases)
    union = sum(c.union_sum for c in cases)
    sums = sum(c.gt_sum + c.pred_sum for c in cases)
    mat = classification.confusion_matrix(cases)
    f1s = classification.macro_f1(mat)
    per_case = [{"public_id": c.public_id, "num_gt": c.num_gt, "num_pred": len({r.pred_label for r in c.rows}),
                 "hits_iou_gt_0.2": len({r.hit_label for r in c.rows if r.max_iou > iou_threshold})}
                for c in cases]
    return FrocReport(
        fp_per_scan=fp, recall=recall, thresholds=[float(t) for t in confidence_thresholds()],
        key_fp=[float(k) for k in key_fp], key_recall=key_recall, froc=score,
        max_recall=max(recall), fp_at_max_recall=max(fp), n_scans=len(cases),
        n_gt=sum(c.num_gt for c in cases), n_predictions=sum(p["num_pred"] for p in per_case),
        dice=2 * inter / (sums + 1e-8), iou=inter / (union + 1e-8), confusion=mat.tolist(),
        f1_total=f1s[0], f1_target=f1s[1], f1_pred=f1s[2], per_case=per_case)


def evaluate_dirs(pred_dir: str | Path, gt_dir: str | Path, *, iou_threshold: float = IOU_THRESHOLD,
                  sort_kind: str = "quicksort",
                  progress: Optional[Progress] = None) -> FrocReport:
    """Evaluate a RibFrac submission folder against a ground-truth folder (every GT case needs a prediction)."""
    return evaluate_cases(match_dirs(pred_dir, gt_dir, progress=progress), iou_threshold, sort_kind=sort_kind)


def match_dirs(pred_dir: str | Path, gt_dir: str | Path, *,
               progress: Optional[Progress] = None) -> list[CaseMatch]:
    """Every scan of a ground-truth folder matched with its prediction (for figures beyond the report's,
    e.g. recall per type: `classification.recall_by_type`)."""
    gt_files = volume_files(Path(gt_dir), ground_truth=True)
    pred_files = volume_files(Path(pred_dir), ground_truth=False)
    missing = sorted(set(gt_files) - set(pred_files))
    extra = sorted(set(pred_files) - set(gt_files))
    if missing or extra:
        raise InputError(f"Prediction and ground-truth cases differ: missing predictions {missing[:5]}, "
                         f"predictions without ground truth {extra[:5]}. Give one prediction per GT case.")
    gt_info = read_info_csvs(Path(gt_dir), GT_COLUMNS)
    pred_info = read_info_csvs(Path(pred_dir), PRED_COLUMNS)
    cases = []
    for i, pid in enumerate(sorted(gt_files)):
        gt = read_labels_xyz(gt_files[pid])
        pred = read_labels_xyz(pred_files[pid])
        for what, arr in (("ground truth", gt), ("prediction", pred)):
            if arr.size and arr.max() > UINT8_MAX:
                warnings.warn(f"{pid}: {what} has {int(arr.max())} instances; the official RibFrac evaluator "
                              "casts labels to uint8 and would misread it (ids wrap past 255). "
                              "This evaluator does not.", stacklevel=2)
        cases.append(match_case(pid, gt, pred, gt_info.get(pid, []), pred_info.get(pid, [])))
        if progress:
            progress(i + 1, len(gt_files))
    return cases


def write_report_json(report: FrocReport, path: str | Path) -> Path:
    from ..io import write_text

    return write_text(json.dumps(report.to_dict(), indent=1), path)


def as_arrays(report: FrocReport) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(report.fp_per_scan), np.asarray(report.recall)

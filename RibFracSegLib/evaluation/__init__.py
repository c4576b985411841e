"""RibFrac-challenge evaluation (FROC, classification, segmentation), same numbers as the official code."""

from .classification import confusion_matrix, macro_f1, recall_by_type
from .froc import IOU_THRESHOLD, KEY_FP, confidence_thresholds, froc, froc_point, key_recalls, recall_at_fp
from .matching import CaseMatch, PredictionRow, iou_cells, match_case
from .report import FrocReport, evaluate_cases, evaluate_dirs, match_dirs, write_report_json

__all__ = [
    "CaseMatch", "FrocReport", "IOU_THRESHOLD", "KEY_FP", "PredictionRow", "confidence_thresholds",
    "confusion_matrix", "evaluate_cases", "evaluate_dirs", "froc", "froc_point", "iou_cells",
    "key_recalls", "macro_f1", "match_case", "match_dirs", "recall_at_fp", "recall_by_type", "write_report_json",
]

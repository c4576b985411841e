"""Validation the way users will judge a checkpoint: `segment_case` on whole held-out CTs, RibFrac FROC.

Patch losses say little about detection; the best checkpoint is the one with the best challenge
score on scans it never saw, so validation runs the same per-case pipeline users run (in memory,
nothing written) and the exact evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..cases import labelled_cases
from ..checkpoint import Checkpoint
from ..evaluation import CaseMatch, FrocReport, evaluate_cases, match_case
from ..evaluation.reading import GT_COLUMNS, read_info_csvs
from ..options import SegmentOptions
from ..pipeline import FAILED, segment_case


@dataclass
class ValidationCase:
    public_id: str
    image: Path  # the CT file, read by segment_case like any user's input
    gt_xyz: np.ndarray  # instance labels in the file's (x, y, z) order
    gt_info: list[tuple[int, float]]


def load_validation_cases(data_dir: str | Path, limit: Optional[int] = None) -> list[ValidationCase]:
    data_dir = Path(data_dir)
    try:
        info = read_info_csvs(data_dir, GT_COLUMNS)
    except ValueError:
        info = {}
    out = []
    for files in labelled_cases(data_dir)[:limit]:
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(files.label))).transpose(2, 1, 0).astype(np.int64)
        rows = info.get(files.public_id) or [(i, -1.0) for i in range(1, int(labels.max()) + 1)]
        out.append(ValidationCase(files.public_id, files.image, labels, rows))
    return out


def predict_case(case: ValidationCase, ckpt: Checkpoint, device: str = "auto",
                 threshold: Optional[float] = None) -> CaseMatch:
    """Segment one held-out CT and match its detections with the official rules."""
    report = segment_case(case.image, None, SegmentOptions(device=device, threshold=threshold), checkpoint=ckpt)
    if report.status == FAILED:
        raise RuntimeError(f"validation case {case.public_id}: {report.error}")
    result = report.result
    pred = sitk.GetArrayFromImage(result.instances).transpose(2, 1, 0).astype(np.int64)
    rows = [(d.id, float(d.confidence), float(d.label_code)) for d in result.detections]
    return match_case(case.public_id, case.gt_xyz, pred, case.gt_info, rows)


def validate(cases: Sequence[ValidationCase], ckpt: Checkpoint, device: str = "auto",
             threshold: Optional[float] = None) -> FrocReport:
    return evaluate_cases([predict_case(c, ckpt, device, threshold) for c in cases])

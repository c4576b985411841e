"""The classifier's operating point, read off validation candidates (never the test data).

Per validation scan, the segmentation network's detections are marked true (they hit a fracture)
or false; the floor on the classifier's fracture probability is the highest that keeps the
validation recall within `tolerance` of the recall with no floor. The curve is returned for the
model card.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOORS = np.round(np.arange(0.0, 1.0, 0.01), 2)


@dataclass(frozen=True)
class CurvePoint:
    floor: float
    recall: float
    fp_per_scan: float


def curve(scans: list[tuple[np.ndarray, np.ndarray, int]]) -> list[CurvePoint]:
    """`scans`: (fracture probability per detection, true-fracture id per detection (0 none), number of
    true fractures) per scan -> recall and false positives per scan at every floor."""
    total = sum(n for _, _, n in scans)
    out = []
    for floor in FLOORS:
        hits, fps = 0, 0
        for prob, truth, _ in scans:
            kept = prob >= floor
            hits += len(np.unique(truth[kept & (truth > 0)]))
            fps += int((kept & (truth == 0)).sum())
        out.append(CurvePoint(float(floor), hits / total if total else float("nan"), fps / max(len(scans), 1)))
    return out


def choose_floor(points: list[CurvePoint], tolerance: float = 0.05) -> CurvePoint:
    """The highest floor whose recall stays within `tolerance` of the recall at floor 0."""
    best = points[0].recall
    ok = [p for p in points if p.recall >= best - tolerance - 1e-9]
    return max(ok, key=lambda p: p.floor)

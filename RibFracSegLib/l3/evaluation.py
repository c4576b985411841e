"""L3 localisation error in mm, per view and combined, and the "not in view" verdicts.

Figures as the literature reports them: mean, median, std, and the share of CTs within 5 and 10 mm.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from RibFracSegLib import defaults
from RibFracSegLib.l3 import decoding
from RibFracSegLib.l3.dataset import MipSample
from RibFracSegLib.l3.locator import VIEWS, view_profiles


def error_stats(errors_mm: Iterable[float]) -> dict:
    """n, mean, median, std, within_5mm, within_10mm of absolute errors (NaN figures when empty)."""
    e = np.abs(np.asarray(list(errors_mm), dtype=float))
    if e.size == 0:
        return {"n": 0, "mean": float("nan"), "median": float("nan"), "std": float("nan"),
                "within_5mm": float("nan"), "within_10mm": float("nan")}
    return {"n": int(e.size), "mean": float(e.mean()), "median": float(np.median(e)), "std": float(e.std()),
            "within_5mm": float((e <= 5).mean()), "within_10mm": float((e <= 10).mean())}


def predict_rows(model, sample: MipSample) -> dict[str, tuple[float, float]]:
    """view (and "combined") -> (row in mm, confidence) for one sample."""
    profiles = view_profiles(model, sample.frontal, sample.sagittal)
    peaks = {v: decoding.peak(p) for v, p in profiles.items()}
    peaks["combined"] = decoding.peak(np.mean([profiles[v] for v in VIEWS], axis=0))
    return {v: (r * defaults.L3_MIP_SPACING_MM, c) for v, (r, c) in peaks.items()}


def predict_cases(model, samples: list[MipSample]) -> list[dict]:
    """Per CT: name, true row (None without L3), each view's row in mm and the combined confidence."""
    cases = []
    for sample in samples:
        pred = predict_rows(model, sample)
        cases.append({"name": sample.name, "truth_mm": sample.row_mm, **{f"{v}_mm": r for v, (r, _) in pred.items()},
                      "confidence": pred["combined"][1]})
    return cases


def summarise(cases: list[dict], threshold: float = defaults.L3_MIN_CONFIDENCE) -> dict:
    """Errors per view for CTs with L3; for all CTs, whether the in-view verdict was right."""
    with_l3 = [c for c in cases if c["truth_mm"] is not None]
    views = {v: error_stats([c[f"{v}_mm"] - c["truth_mm"] for c in with_l3]) for v in (*VIEWS, "combined")}
    missed = sum(c["confidence"] < threshold for c in with_l3)
    false_found = sum(c["confidence"] >= threshold for c in cases if c["truth_mm"] is None)
    return {"views": views, "n": len(cases), "threshold": threshold,
            "verdict_accuracy": 1 - (missed + false_found) / max(1, len(cases)), "missed": int(missed),
            "false_in_view": int(false_found), "cases": cases}


def evaluate_samples(model, samples: list[MipSample], threshold: float = defaults.L3_MIN_CONFIDENCE) -> dict:
    return summarise(predict_cases(model, samples), threshold)


def format_report(report: dict) -> str:
    """Human-readable table of evaluate_samples' figures."""
    lines = [f"{'view':<10}{'n':>4}{'mean':>8}{'median':>8}{'std':>8}{'<=5mm':>8}{'<=10mm':>8}"]
    for view, s in report["views"].items():
        lines.append(f"{view:<10}{s['n']:>4}{s['mean']:>8.2f}{s['median']:>8.2f}{s['std']:>8.2f}"
                     f"{s['within_5mm']:>8.0%}{s['within_10mm']:>8.0%}")
    lines.append(f"in-view verdict (threshold {report['threshold']:.2f}) right for {report['verdict_accuracy']:.0%} "
                 f"of {report['n']} CTs "
                 f"(L3 missed: {report['missed']}, L3 reported but absent: {report['false_in_view']})")
    return "\n".join(lines)


def calibrate_threshold(cases: list[dict], floor: float = defaults.L3_MIN_CONFIDENCE) -> float:
    """The "in view" confidence threshold that best separates CTs with L3 from CTs without it on a
    validation set's cases (midway in the widest gap that makes fewest wrong verdicts), never below `floor`."""
    pos = [c["confidence"] for c in cases if c["truth_mm"] is not None]
    neg = [c["confidence"] for c in cases if c["truth_mm"] is None]
    if not pos or not neg:
        return floor
    values = sorted(set(pos + neg))
    cuts = [floor] + [(a + b) / 2 for a, b in zip(values, values[1:]) if (a + b) / 2 > floor]

    def cost(t: float) -> tuple[int, float]:
        wrong = sum(c < t for c in pos) + sum(c >= t for c in neg)
        gap = min([abs(c - t) for c in pos + neg])
        return wrong, -gap

    return float(min(cuts, key=cost))

"""A rib-frame checkpoint's operating point, chosen on its training sources' real CTs, never on the
held-out CT (`defaults.FRAME_HELD_OUT`): the confidence floor (`thresholds["min_confidence"]`) with
the highest recall on simulated copies while the fracture-free originals keep at most
`defaults.FRAME_CALIBRATION_MAX_FP` false positives per scan of its own: the floor filters the frame's
detections only. Its fallback's (bone no frame covers) have a budget of their own,
`defaults.FRAME_FALLBACK_MAX_FP`: the lowest floor on the fallback classifier's fracture probability
(`inference["fallback_min_probability"]`, never below the classifier's own) that keeps them within it
on the fracture-free originals. Chosen by false positives alone: the fallback finds no simulated
fracture (they are simulated onto found ribs, which the frames cover). What it leaves is counted at
every frame floor, beside the frame's budget.

Each CT runs once (`first_stage`, cached with no floor), then the checkpoint's candidate classifier;
every floor is a filter on those detections (their first-stage confidence, `first_confidence`), matched
and counted by the RibFrac evaluation (`evaluation.match_case`, `froc_point`). Candidate floors lie
midway between consecutive detection confidences, so the one chosen sits in the widest margin it has.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from . import defaults
from .checkpoint import Checkpoint
from .errors import InputError
from .evaluation.froc import IOU_THRESHOLD

RULE = ("highest recall on the simulated copies with at most {max_fp} FP per fracture-free scan from the frames "
        "(the fallback's, kept at every floor, not charged); then fewest FP")
FALLBACK_RULE = ("lowest floor on the fallback classifier's fracture probability leaving at most {max_fp} FP per "
                 "fracture-free scan from the fallback (never below the classifier's own)")
ALWAYS = 2.0  # the confidence a fallback detection is matched with: above every candidate floor


@dataclass(frozen=True)
class FloorPoint:
    floor: float
    fp_per_free_scan: float
    recall: float
    fp_per_simulated_scan: float


@dataclass
class FrameCalibration:
    floor: float
    max_fp: float
    chosen: FloorPoint
    points: list[FloorPoint]
    free_cases: dict[str, int] = field(default_factory=dict)  # case -> detections at the chosen floor
    simulated_cases: dict[str, tuple[int, int]] = field(default_factory=dict)  # case -> (found, fractures)
    fallback_fp_per_free_scan: float = 0.0  # false positives the fallback leaves (at its floor) at every floor
    confidence: str = "mean"  # how a frame detection's confidence was read (`frame_inference.frame_confidence`)
    fallback_floor: float = 0.0  # on the fallback classifier's fracture probability (0: the classifier's own)
    fallback_max_fp: float = defaults.FRAME_FALLBACK_MAX_FP

    def to_dict(self) -> dict:
        return {"min_confidence": self.floor, "rule": RULE.format(max_fp=self.max_fp), "chosen": asdict(self.chosen),
                "free_cases": self.free_cases, "fallback_fp_per_free_scan": self.fallback_fp_per_free_scan,
                "fallback_min_probability": self.fallback_floor,
                "fallback_rule": FALLBACK_RULE.format(max_fp=self.fallback_max_fp),
                "confidence": self.confidence,
                "simulated_cases": {k: list(v) for k, v in self.simulated_cases.items()},
                "points": [asdict(p) for p in self.points]}


def _xyz(image: sitk.Image) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)).astype(np.int64))


def _matched(name: str, stage, truth: Optional[sitk.Image], codes: dict[int, int], fallback_floor: float = 0.0):
    """The RibFrac match of one scan, each prediction's confidence its first-stage confidence
    (`first_confidence`; a fallback detection's ALWAYS: no frame floor drops it; below `fallback_floor`
    on its classifier's probability it is left out, never counted, as is a rib-end detection, which
    above it counts at its first-stage confidence like any frame detection)."""
    from .evaluation import match_case
    from .first_stage import first_confidence
    from .frame_inference import JUDGED_BY_FALLBACK

    pred = _xyz(stage.instances)
    gt = np.zeros_like(pred) if truth is None else _xyz(truth)
    pred_info = [(d.id, ALWAYS if d.source == "fallback" else first_confidence(d), float(d.label_code))
                 for d in stage.detections if d.source not in JUDGED_BY_FALLBACK or d.confidence >= fallback_floor]
    return match_case(name, gt, pred, [(k, float(v)) for k, v in sorted(codes.items())], pred_info)


def candidate_floors(confidences: Sequence[float]) -> list[float]:
    """0, and the midpoints between consecutive distinct confidences, and just above the highest."""
    values = np.unique(np.round(np.asarray(confidences, float), 6))
    mids = (values[:-1] + values[1:]) / 2 if values.size > 1 else np.empty(0)
    top = [float(values[-1]) + 1e-6] if values.size else []
    return [0.0] + [float(v) for v in mids] + top


def choose_fallback_floor(free_confidences: Sequence[Sequence[float]], max_fp: float) -> float:
    """The lowest candidate floor on the fallback's (classifier) confidences of the fracture-free scans,
    one list per scan, that leaves at most `max_fp` of them per scan: FALLBACK_RULE."""
    values = [c for scan in free_confidences for c in scan]
    for floor in candidate_floors(values):
        if sum(c >= floor for c in values) <= max_fp * len(free_confidences) + 1e-9:
            return floor
    raise InputError(f"no fallback floor keeps the fracture-free scans at <= {max_fp} FP/scan")  # cannot happen


def choose_floor(free, simulated, max_fp: float) -> tuple[FloorPoint, list[FloorPoint], float]:
    """The floor by RULE over matched fracture-free and simulated scans (`CaseMatch` lists), and the
    fallback's FP per free scan (rows at ALWAYS: counted at every floor, outside the budget)."""
    from .evaluation import froc_point

    probs = [r.prob for c in list(free) + list(simulated) for r in c.rows if r.prob < ALWAYS]
    fallback_fp = froc_point(free, ALWAYS)[0] if free else 0.0
    points = []
    for f in candidate_floors(probs):
        fp_free = froc_point(free, f)[0] if free else 0.0
        fp_sim, recall = froc_point(simulated, f) if simulated else (0.0, 0.0)
        points.append(FloorPoint(round(f, 6), round(fp_free, 4), round(recall, 4), round(fp_sim, 4)))
    allowed = [p for p in points if p.fp_per_free_scan - fallback_fp <= max_fp + 1e-6]  # FROC's epsilons: ~1e-9 off
    if not allowed:  # cannot happen: above the highest confidence nothing is left
        raise InputError(f"no confidence floor keeps the fracture-free scans at <= {max_fp} FP/scan")
    best = max(allowed, key=lambda p: (p.recall, -(p.fp_per_free_scan + p.fp_per_simulated_scan), -p.floor))
    return best, points, round(fallback_fp, 4)


def calibrate_frame(ckpt: Checkpoint, cts: Sequence[tuple[str, str | Path]], cache_dir: str | Path, *,
                    seeds: Sequence[int] = defaults.FRAME_CALIBRATION_SEEDS,
                    n_fractures: int = defaults.FRAME_REAL_FRACTURES,
                    max_fp: float = defaults.FRAME_CALIBRATION_MAX_FP,
                    fallback_max_fp: float = defaults.FRAME_FALLBACK_MAX_FP,
                    ribs_of: Optional[Callable] = None, log: Callable[[str], None] = print) -> FrameCalibration:
    """Run `ckpt` on each fracture-free CT and on its copies with `n_fractures` simulated fractures per
    seed (the four types in turn, as training builds them; ribs from `ribs_of(image, name)`, default
    `segment_ribs`), then choose the fallback's floor by FALLBACK_RULE and the frame's by RULE.
    Refuses the held-out CT."""
    from .candidates.classifier import load_classifier
    from .first_stage import above_floor, fallback_classifier, first_stage, second_stage
    from .frame_inference import checkpoint_space, frame_confidence
    from .io import read_ct
    from .simulate import simulate_case
    from .training.frame_dataset import check_not_held_out

    for name, _ in cts:
        check_not_held_out(name)
    if not cts:
        raise InputError("calibrate-frame needs at least one fracture-free real CT (not the held-out one).")
    rule = "mean"
    if checkpoint_space(ckpt) == "rib_frame":  # the floor is set on the confidence the checkpoint will be run with
        inference = {k: v for k, v in ckpt.inference.items() if k != "fallback_min_probability"}  # chosen afresh
        inference["confidence"] = inference.get("confidence", defaults.FRAME_CONFIDENCE)
        ckpt = replace(ckpt, inference=inference)
        rule = frame_confidence(ckpt)
    spec, fallback_spec = load_classifier(ckpt.candidate_classifier), fallback_classifier(ckpt)

    def stage_of(image: sitk.Image, case: str):
        return second_stage(image, above_floor(first_stage(ckpt, image, case, cache_dir), 0.0), spec, fallback_spec)

    read = lambda path: read_ct(path) if not isinstance(path, sitk.Image) else path  # noqa: E731
    free_stages = []
    for name, path in cts:
        free_stages.append(stage_of(read(path), name))
        log(f"  {name}: {len(free_stages[-1].detections)} detections with no floor")
    fallback_floor = choose_fallback_floor(
        [[d.confidence for d in stage.detections if d.source == "fallback"] for stage in free_stages], fallback_max_fp)
    free = [_matched(name, stage, None, {}, fallback_floor) for (name, _), stage in zip(cts, free_stages)]
    del free_stages
    simulated = []
    for name, path in cts:
        image = read(path)
        ribs = (ribs_of or _segment_ribs)(image, name)
        for seed in seeds:
            sim = simulate_case(image, ribs, n_fractures, np.random.default_rng(int(seed)), kinds=(1, 2, 3, 4))
            case = f"{name}-sim{seed}-f{n_fractures}"
            stage = stage_of(sim.image, case)
            simulated.append(_matched(case, stage, sim.fracture_labels,
                                      {b.spec.label_id: b.spec.kind for b in sim.fractures}, fallback_floor))
            log(f"  {case}: {len(sim.fractures)} fractures, {len(stage.detections)} detections with no floor")
    chosen, points, fallback_fp = choose_floor(free, simulated, max_fp)
    hits = lambda c: len({r.hit_label for r in c.rows if r.prob >= chosen.floor and r.max_iou > IOU_THRESHOLD})  # noqa: E731
    return FrameCalibration(chosen.floor, max_fp, chosen, points,
                            {c.public_id: sum(r.prob >= chosen.floor for r in c.rows) for c in free},
                            {c.public_id: (hits(c), c.num_gt) for c in simulated}, fallback_fp, rule,
                            fallback_floor, fallback_max_fp)


def _segment_ribs(image: sitk.Image, name: str):
    from .ribs import segment_ribs

    return segment_ribs(image)


def store_floor(ckpt: Checkpoint, calibration: FrameCalibration) -> Checkpoint:
    """A copy of the checkpoint with the chosen floors (the frame's, the fallback's), the confidence it
    reads and the calibration record in `inference`."""
    from .frame_inference import checkpoint_space

    thresholds = {**ckpt.thresholds, "min_confidence": calibration.floor}
    inference = {**ckpt.inference, "floor_calibration": calibration.to_dict()}
    if checkpoint_space(ckpt) == "rib_frame":
        inference["confidence"] = calibration.confidence
        inference["fallback_min_probability"] = calibration.fallback_floor
    return replace(ckpt, thresholds=thresholds, inference=inference)

"""A rib-frame checkpoint's operating point, chosen on its training sources' real CTs, never on the
held-out CT (`defaults.FRAME_HELD_OUT`): the confidence floor (`thresholds["min_confidence"]`) with
the highest recall on simulated copies while the fracture-free originals keep at most
`defaults.FRAME_CALIBRATION_MAX_FP` false positives per scan of its own: the floor filters the frame's
detections only; its fallback's (bone no frame covers) are kept at the fallback's floor and counted at
every floor, and the false positives they leave are recorded beside the budget, not charged to it.

Each CT runs once (`first_stage`, cached with no floor), then the checkpoint's candidate classifier;
every floor is a filter on those detections (the first stage's mean probability), matched and counted
by the RibFrac evaluation (`evaluation.match_case`, `froc_point`). Candidate floors lie midway between
consecutive detection confidences, so the one chosen sits in the widest margin it has.
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
    fallback_fp_per_free_scan: float = 0.0  # false positives the fallback leaves at every floor
    confidence: str = "mean"  # how a frame detection's confidence was read (`frame_inference.frame_confidence`)

    def to_dict(self) -> dict:
        return {"min_confidence": self.floor, "rule": RULE.format(max_fp=self.max_fp), "chosen": asdict(self.chosen),
                "free_cases": self.free_cases, "fallback_fp_per_free_scan": self.fallback_fp_per_free_scan,
                "confidence": self.confidence,
                "simulated_cases": {k: list(v) for k, v in self.simulated_cases.items()},
                "points": [asdict(p) for p in self.points]}


def _xyz(image: sitk.Image) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)).astype(np.int64))


def _matched(name: str, stage, truth: Optional[sitk.Image], codes: dict[int, int]):
    """The RibFrac match of one scan, each prediction's confidence its first-stage confidence
    (`first_confidence`; a fallback detection's ALWAYS: no frame floor drops it)."""
    from .evaluation import match_case
    from .first_stage import first_confidence

    pred = _xyz(stage.instances)
    gt = np.zeros_like(pred) if truth is None else _xyz(truth)
    pred_info = [(d.id, ALWAYS if d.source == "fallback" else first_confidence(d), float(d.label_code))
                 for d in stage.detections]
    return match_case(name, gt, pred, [(k, float(v)) for k, v in sorted(codes.items())], pred_info)


def candidate_floors(confidences: Sequence[float]) -> list[float]:
    """0, and the midpoints between consecutive distinct confidences, and just above the highest."""
    values = np.unique(np.round(np.asarray(confidences, float), 6))
    mids = (values[:-1] + values[1:]) / 2 if values.size > 1 else np.empty(0)
    top = [float(values[-1]) + 1e-6] if values.size else []
    return [0.0] + [float(v) for v in mids] + top


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
    allowed = [p for p in points if p.fp_per_free_scan - fallback_fp <= max_fp + 1e-9]
    if not allowed:  # cannot happen: above the highest confidence nothing is left
        raise InputError(f"no confidence floor keeps the fracture-free scans at <= {max_fp} FP/scan")
    best = max(allowed, key=lambda p: (p.recall, -(p.fp_per_free_scan + p.fp_per_simulated_scan), -p.floor))
    return best, points, round(fallback_fp, 4)


def calibrate_frame(ckpt: Checkpoint, cts: Sequence[tuple[str, str | Path]], cache_dir: str | Path, *,
                    seeds: Sequence[int] = defaults.FRAME_CALIBRATION_SEEDS,
                    n_fractures: int = defaults.FRAME_REAL_FRACTURES,
                    max_fp: float = defaults.FRAME_CALIBRATION_MAX_FP,
                    ribs_of: Optional[Callable] = None, log: Callable[[str], None] = print) -> FrameCalibration:
    """Run `ckpt` on each fracture-free CT and on its copies with `n_fractures` simulated fractures per
    seed (the four types in turn, as training builds them; ribs from `ribs_of(image, name)`, default
    `segment_ribs`), then choose the floor by RULE. Refuses the held-out CT."""
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
        ckpt = replace(ckpt, inference={**ckpt.inference,
                                        "confidence": ckpt.inference.get("confidence", defaults.FRAME_CONFIDENCE)})
        rule = frame_confidence(ckpt)
    spec, fallback_spec = load_classifier(ckpt.candidate_classifier), fallback_classifier(ckpt)
    free, simulated = [], []
    for name, path in cts:
        image = read_ct(path) if not isinstance(path, sitk.Image) else path
        stage = second_stage(image, above_floor(first_stage(ckpt, image, name, cache_dir), 0.0), spec, fallback_spec)
        free.append(_matched(name, stage, None, {}))
        log(f"  {name}: {len(stage.detections)} detections with no floor")
        ribs = (ribs_of or _segment_ribs)(image, name)
        for seed in seeds:
            sim = simulate_case(image, ribs, n_fractures, np.random.default_rng(int(seed)), kinds=(1, 2, 3, 4))
            case = f"{name}-sim{seed}-f{n_fractures}"
            stage = second_stage(sim.image, above_floor(first_stage(ckpt, sim.image, case, cache_dir), 0.0), spec,
                                 fallback_spec)
            simulated.append(_matched(case, stage, sim.fracture_labels,
                                      {b.spec.label_id: b.spec.kind for b in sim.fractures}))
            log(f"  {case}: {len(sim.fractures)} fractures, {len(stage.detections)} detections with no floor")
    chosen, points, fallback_fp = choose_floor(free, simulated, max_fp)
    hits = lambda c: len({r.hit_label for r in c.rows if r.prob >= chosen.floor and r.max_iou > IOU_THRESHOLD})  # noqa: E731
    return FrameCalibration(chosen.floor, max_fp, chosen, points,
                            {c.public_id: sum(r.prob >= chosen.floor for r in c.rows) for c in free},
                            {c.public_id: (hits(c), c.num_gt) for c in simulated}, fallback_fp, rule)


def _segment_ribs(image: sitk.Image, name: str):
    from .ribs import segment_ribs

    return segment_ribs(image)


def store_floor(ckpt: Checkpoint, calibration: FrameCalibration) -> Checkpoint:
    """A copy of the checkpoint with the chosen floor, the confidence it reads and the calibration record
    in `inference`."""
    from .frame_inference import checkpoint_space

    thresholds = {**ckpt.thresholds, "min_confidence": calibration.floor}
    inference = {**ckpt.inference, "floor_calibration": calibration.to_dict()}
    if checkpoint_space(ckpt) == "rib_frame":
        inference["confidence"] = calibration.confidence
    return replace(ckpt, thresholds=thresholds, inference=inference)

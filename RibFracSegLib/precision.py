"""Which arithmetic precision a fracture checkpoint may run in: judged by the fractures a user sees.

bf16 (CPU) or fp16 (CUDA) roughly halves the network's time, and moves single probabilities by up
to ~0.2 where nothing is found. What matters is whether the *fractures* stay the same, so a
calibration run segments CTs once in fp32 and once in the faster precision and accepts it only if
every CT gives the same number of detections, each matched one to one with IoU >= 0.9 and a
confidence within 0.02 (`defaults.PRECISION_*`). The verdict and its figures are stored in the
checkpoint (`Checkpoint.inference`), where `segment_ct(precision="auto")` reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from . import defaults
from .checkpoint import Checkpoint, stored_precision  # noqa: F401 (its home is checkpoint.py: inference reads it)
from .detections import FractureResult
from .evaluation.matching import iou_cells


@dataclass
class Sameness:
    """How one CT's detections in a fast precision compare with its fp32 detections."""

    case: str
    precision: str
    count_fp32: int
    count_other: int
    matched: int  # one-to-one pairs with IoU >= the bound
    min_iou: float  # worst IoU over matched pairs (1.0 when nothing was found either way)
    max_confidence_diff: float  # over matched pairs
    max_probability_diff: float  # information only: the largest voxel difference of the maps
    seconds_fp32: float = 0.0
    seconds_other: float = 0.0

    @property
    def same(self) -> bool:
        return (self.count_fp32 == self.count_other == self.matched
                and self.max_confidence_diff <= defaults.PRECISION_CONFIDENCE_TOLERANCE)


def compare_results(case: str, precision: str, fp32: FractureResult, other: FractureResult) -> Sameness:
    """Match `other`'s detections to `fp32`'s by instance IoU (greedy, best first)."""
    a = sitk.GetArrayViewFromImage(fp32.instances)
    b = sitk.GetArrayViewFromImage(other.instances)
    cells, _, _ = iou_cells(np.asarray(a), np.asarray(b))
    conf_a = {d.id: d.confidence for d in fp32.detections}
    conf_b = {d.id: d.confidence for d in other.detections}
    used_a, used_b, ious, diffs = set(), set(), [], []
    for (ia, ib), iou in sorted(cells.items(), key=lambda kv: -kv[1]):
        if iou < defaults.PRECISION_MIN_IOU or ia in used_a or ib in used_b or ia not in conf_a or ib not in conf_b:
            continue
        used_a.add(ia), used_b.add(ib), ious.append(iou), diffs.append(abs(conf_a[ia] - conf_b[ib]))
    prob = 0.0
    if fp32.probability is not None and other.probability is not None:
        prob = float(np.abs(sitk.GetArrayViewFromImage(fp32.probability)
                            - sitk.GetArrayViewFromImage(other.probability)).max())
    return Sameness(case, precision, len(fp32.detections), len(other.detections), len(ious),
                    min(ious, default=1.0), max(diffs, default=0.0), prob,
                    fp32.timings_s.get("network", 0.0), other.timings_s.get("network", 0.0))


@dataclass
class PrecisionCalibration:
    """The verdict for one device type, with the per-CT comparisons behind it."""

    device: str  # "cpu" or "cuda"
    chosen: str  # the precision `auto` will use on that device
    cases: list[Sameness] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"device": self.device, "chosen": self.chosen,
                "rule": f"same count, IoU >= {defaults.PRECISION_MIN_IOU}, confidence within "
                        f"{defaults.PRECISION_CONFIDENCE_TOLERANCE} on every calibration CT",
                "cases": [asdict(c) | {"same": c.same} for c in self.cases]}


def calibrate_precision(checkpoint: Checkpoint, cases: Sequence[tuple[str, sitk.Image | Path]], *,
                        device: str = "cpu", candidates: Optional[Sequence[str]] = None,
                        log: Callable[[str], None] = print) -> PrecisionCalibration:
    """Segment each CT (an image, or a path read when its turn comes: one CT in memory at a time) in
    fp32 and in every candidate precision still standing; the fastest candidate that gives the same
    fractures on every CT wins, else fp32."""
    from .inference import resolve_device, segment_ct
    from .io import read_ct

    dev = resolve_device(device)
    standing = list(candidates or (["fp16"] if dev.type == "cuda" else ["bf16", "mixed"]))
    compared: dict[str, list[Sameness]] = {c: [] for c in standing}
    for name, source in cases:
        if not standing:
            break  # every candidate has already changed some CT's fractures
        image = source if isinstance(source, sitk.Image) else read_ct(source)
        reference = segment_ct(image, checkpoint, device=str(dev), precision="fp32", return_probability=True)
        log(f"  {name}: fp32 {len(reference.detections)} detections, network {reference.timings_s['network']:.1f} s")
        for candidate in list(standing):
            other = segment_ct(image, checkpoint, device=str(dev), precision=candidate, return_probability=True,
                               ribs=reference.ribs, find_ribs=False)  # the ribs do not depend on the precision
            c = compare_results(name, candidate, reference, other)
            compared[candidate].append(c)
            log(f"  {name}: {candidate} {c.count_other} vs {c.count_fp32} detections, {c.matched} matched, "
                f"min IoU {c.min_iou:.3f}, max confidence diff {c.max_confidence_diff:.4f}, max probability "
                f"diff {c.max_probability_diff:.3f}, network {c.seconds_other:.1f} s vs {c.seconds_fp32:.1f} s")
            if not c.same:
                standing.remove(candidate)
    if standing:
        return PrecisionCalibration(dev.type, standing[0], compared[standing[0]])
    return PrecisionCalibration(dev.type, "fp32", [c for cs in compared.values() for c in cs])


def store_calibration(checkpoint: Checkpoint, calibration: PrecisionCalibration) -> Checkpoint:
    """The checkpoint with `auto` precision on `calibration.device` set to its verdict."""
    inference = dict(checkpoint.inference)
    inference["precision"] = dict(inference.get("precision", {})) | {calibration.device: calibration.chosen}
    inference["precision_calibration"] = dict(inference.get("precision_calibration", {})) | {
        calibration.device: calibration.to_dict()}
    checkpoint.inference = inference
    return checkpoint

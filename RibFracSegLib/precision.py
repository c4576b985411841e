"""Which arithmetic precision a fracture checkpoint may run in: judged by the fractures a user sees.

bf16 (CPU) or fp16 (CUDA) roughly halves the network's time, and moves single probabilities by up
to ~0.2 where nothing is found. What matters is whether the *fractures* stay the same, so a
calibration run segments CTs once in fp32 and once in the faster precision and accepts it only if
every CT gives the same number of detections, each matched one to one with IoU >= 0.9 and a
confidence within 0.02 (`defaults.PRECISION_*`). The verdict and its figures are stored in the
checkpoint (`Checkpoint.inference`), where `segment_ct(precision="auto")` reads them.

A verdict says which precision keeps the fractures, not that it is faster: that depends on the
machine. `auto_precision` is the one place that decides what `auto` tries: reduced precision only
where the device computes it natively (`native_reduced_precision`; elsewhere it is emulated, e.g. a
bf16 Conv3d on an AVX2-only CPU runs ~100x slower than fp32), and the engine keeps it only when a
timed first batch shows it faster than fp32 (`inference._Runner`).
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import SimpleITK as sitk
import torch

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


def store_calibration(checkpoint: Checkpoint, calibration: PrecisionCalibration) -> Checkpoint:
    """The checkpoint with `auto` precision on `calibration.device` set to its verdict."""
    inference = dict(checkpoint.inference)
    inference["precision"] = dict(inference.get("precision", {})) | {calibration.device: calibration.chosen}
    inference["precision_calibration"] = dict(inference.get("precision_calibration", {})) | {
        calibration.device: calibration.to_dict()}
    checkpoint.inference = inference
    return checkpoint


def _cpu_runs_bf16() -> bool:
    """oneDNN may use bf16 instructions here: x86 AVX512-BF16 or AMX, or Arm BF16. oneDNN's own check
    honours ONEDNN_MAX_CPU_ISA; on x86 it also says yes for plain AVX-512, which only emulates bf16."""
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):  # a torch without the check: assume emulation
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86"):
        flags = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, f, lambda: False)() for f in flags)
    return True


def native_reduced_precision(device: torch.device) -> Optional[str]:
    """The reduced precision `device` computes in hardware: "fp16" on a CUDA GPU with tensor cores
    (compute capability 7.0+), "bf16" on a CPU with bf16 instructions, else None (emulated: slower)."""
    if device.type == "cuda":
        return "fp16" if torch.cuda.get_device_capability(device) >= (7, 0) else None
    if device.type == "cpu":
        return "bf16" if _cpu_runs_bf16() else None
    return None


@dataclass(frozen=True)
class AutoPrecision:
    """What `precision="auto"` tries on the first batch; fp32 when `candidates` is empty."""

    candidates: tuple[str, ...]  # in order; each kept only if its first batch is faster than fp32's
    check_output: bool  # the first batch must also stay within BF16_PROB_TOLERANCE (no stored verdict)
    reason: str


def auto_precision(checkpoint: Optional[Checkpoint], device: torch.device) -> AutoPrecision:
    """The one decision behind `auto`: a stored verdict of fp32 is final; a reduced precision (stored
    or not) is tried only where the device runs it natively; uncalibrated, the first batch also judges
    the output. A verdict stored on a machine with native bf16 does not make another machine emulate it."""
    verdict = stored_precision(checkpoint, device.type) if checkpoint is not None else None
    if verdict == "fp32":
        return AutoPrecision((), False, "calibrated: only fp32 keeps this checkpoint's fractures")
    native = native_reduced_precision(device)
    if native is None:
        ignored = f"; its stored verdict {verdict} is not used" if verdict else ""
        return AutoPrecision((), False, f"this {device.type} has no native reduced precision{ignored}")
    if verdict is not None:
        return AutoPrecision((verdict,), False, f"calibrated: {verdict} keeps the fractures")
    return AutoPrecision((native, "mixed"), True, "uncalibrated: judged on the first batch")

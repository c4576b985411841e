"""What a fracture run was asked for, validated in one place, JSON-able so it crosses processes.

`SegmentOptions` is what the CLI parses, what the Slicer Logic's run options embed and what a Dask
worker receives; its `validate()` is the only check of these values, and every message names the
option and what to give instead.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

from . import defaults


def worker_threads(workers: int, cpus: Optional[int] = None) -> int:
    """torch threads per worker so that workers x threads fits the cores this process may use (at least 1);
    here, torch- and dask-free, for the Dask runner and the frame sampler alike."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // max(1, workers))


def check_height(height_m: Optional[float], name: str = "height") -> Optional[float]:
    """A patient height in metres within human range, or None (unknown); centimetres are named as such."""
    if height_m is None:
        return None
    lo, hi = defaults.HEIGHT_RANGE_M
    if not lo <= height_m <= hi:  # also refuses NaN
        hint = f" - {height_m:g} looks like centimetres, give {height_m / 100:.2f}" if lo * 100 <= height_m <= hi * 100 else ""
        raise ValueError(f"{name} {height_m:g} is not a height in metres ({lo:g}-{hi:g}){hint}.")
    return float(height_m)


@dataclass(frozen=True)
class SegmentOptions:
    """One fracture run's settings; None means "the checkpoint's own value" (or the shipped model)."""

    checkpoint: Optional[str] = None  # None: the shipped default model
    device: str = "auto"
    overlap: Optional[float] = None
    threshold: Optional[float] = None  # probability threshold
    batch_size: Optional[int] = None
    precision: str = "auto"
    skip_empty: bool = True  # skip patches without bone inside the body
    on_rib: Optional[bool] = None  # drop detections off the ribs (None: the checkpoint's setting)
    probability: bool = False  # also write probabilities/<case>.nii.gz
    threads: Optional[int] = None  # torch CPU threads for this run
    force: bool = False  # redo a case whose summary already exists
    qc: bool = False  # also write the unfolded-rib QC pictures (RibFracSegLib.ribs.qc)
    dicom: bool = False  # also write the fractures DICOM SEG and the SR (a DICOM series input only)
    ribs: bool = False  # with dicom: also the ribs DICOM SEG
    report: bool = False  # also write the one-page HTML report (RibFracSegLib.case_report)
    l3: bool = False  # also locate L3 and measure body composition (JSON summary, SR, report)
    height_m: Optional[float] = None  # patient height for the SMI (with l3)

    def checkpoint_path(self) -> Path:
        """The checkpoint file this run uses."""
        if self.checkpoint is None:
            from .shipped import shipped_model

            return shipped_model("fracture")
        return Path(self.checkpoint)

    def validate(self, check_files: bool = True) -> "SegmentOptions":
        """Raise ValueError naming the bad option and what to give (before any work starts)."""
        if check_files and not self.checkpoint_path().is_file():
            raise ValueError(f"Checkpoint not found: {self.checkpoint_path()}. Check the path, or choose a .pt file made by "
                             "`ribfracseg train`, a FracNet model_weights.pth, or leave it empty for the shipped model.")
        if self.device not in defaults.DEVICES:
            raise ValueError(f"Device must be one of {', '.join(defaults.DEVICES)}, not {self.device!r} (device / --device).")
        if self.precision not in defaults.PRECISIONS:
            raise ValueError(f"Precision must be one of {', '.join(defaults.PRECISIONS)}, not {self.precision!r} "
                             "(precision / --precision).")
        if self.overlap is not None and not 0.0 <= float(self.overlap) < 1.0:
            raise ValueError(f"Overlap must be in [0, 1), not {self.overlap} (overlap / --overlap: share of a "
                             "patch shared with its neighbour).")
        if self.threshold is not None and not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"Probability threshold must be in [0, 1], not {self.threshold} (threshold / --threshold).")
        if self.ribs and not self.dicom:
            raise ValueError("ribs adds the ribs' DICOM SEG to the DICOM outputs; give dicom too (--ribs with --dicom).")
        check_height(self.height_m, "height / --height")
        for name in ("batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{name} must be a whole number of at least 1, not {value} "
                                 f"({name} / --{name.replace('_', '-')}).")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SegmentOptions":
        """Options from a dict (JSON, a Slicer parameter node); unknown keys are an error, not ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown segment option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**values)

    def segment_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `inference.segment_ct` for these options."""
        return {"device": self.device, "overlap": self.overlap, "threshold": self.threshold,
                "batch_size": self.batch_size, "return_probability": self.probability,
                "precision": self.precision, "skip_empty": self.skip_empty, "on_rib": self.on_rib}

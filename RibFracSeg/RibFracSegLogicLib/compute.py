"""The computation of one run — CT image in, results out — with no scene and no GUI.

Run in Slicer's process by the console/batch Logic and in a PythonSlicer subprocess by the panel,
so both paths produce the same `RunOutput`. Heavy packages (torch via the library) are imported
only here, inside `compute`, to keep module loading fast.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import SimpleITK as sitk

from RibFracSegLib import defaults
from RibFracSegLib.detections import FractureResult

logger = logging.getLogger("RibFracSeg")

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class RunOptions:
    """What the panel or the console asked for; JSON-able so it can cross a process boundary."""

    checkpoint: str = str(defaults.DEFAULT_FRACTURE_CHECKPOINT)
    device: str = "auto"
    overlap: Optional[float] = None  # None: the checkpoint's / library default
    threshold: Optional[float] = None
    l3: bool = False
    height_m: Optional[float] = None
    l3_checkpoint: Optional[str] = None  # None: the shipped L3 checkpoint
    ribs: bool = False  # also add the '<CT> ribs' segmentation (the rib step itself always runs)

    def validate(self) -> "RunOptions":
        """Raise ValueError naming the bad option and what to do (before any work starts)."""
        from pathlib import Path

        if not Path(self.checkpoint).is_file():
            raise ValueError(f"Checkpoint not found: {self.checkpoint}. Choose a .pt file made by "
                             "`ribfracseg train` or the shipped Resources/Models/ribfrac_default.pt.")
        if self.device not in DEVICES:
            raise ValueError(f"Device must be one of {DEVICES}, not {self.device!r}.")
        if self.overlap is not None and not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"Overlap must be in [0, 1), not {self.overlap}.")
        if self.threshold is not None and not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"Probability threshold must be in [0, 1), not {self.threshold}.")
        if self.l3:
            l3_path = Path(self.l3_checkpoint or defaults.DEFAULT_L3_CHECKPOINT)
            if not l3_path.is_file():
                raise ValueError(f"L3 checkpoint not found: {l3_path}. Train one with `ribfracseg train-l3` "
                                 "or choose the L3 model file.")
        if self.height_m is not None and not 0.5 <= self.height_m <= 2.6:
            raise ValueError(f"Patient height must be given in metres (0.5-2.6), not {self.height_m}.")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunOutput:
    """Everything one run produced, before any node exists."""

    fractures: FractureResult
    l3: Any = None  # RibFracSegLib.l3.L3Result when L3 was asked for
    body: Any = None  # RibFracSegLib.l3.BodyComposition when L3 was in view
    timings_s: dict[str, float] = field(default_factory=dict)


def cancelled_error() -> type[BaseException]:
    """The library's Cancelled exception (the one segment_ct raises)."""
    from RibFracSegLib.inference import Cancelled

    return Cancelled


def compute(image: sitk.Image, options: RunOptions, progress: Optional[Progress] = None,
            cancel: Optional[Cancel] = None) -> RunOutput:
    """Fractures (and L3 + body composition when asked) for one CT; raises Cancelled when cancelled."""
    from RibFracSegLib.inference import Cancelled, segment_ct

    timings: dict[str, float] = {}
    start = time.perf_counter()
    fractures = segment_ct(image, options.checkpoint, device=options.device, overlap=options.overlap,
                           threshold=options.threshold, progress=progress, cancel=cancel)
    timings["fractures"] = time.perf_counter() - start
    for stage, seconds in fractures.timings_s.items():
        logger.info("RibFracSeg: fractures/%s %.2f s", stage, seconds)
    logger.info("RibFracSeg: fracture detection %.2f s on %s, %d detections",
                timings["fractures"], fractures.device, len(fractures.detections))
    output = RunOutput(fractures=fractures, timings_s=timings)
    if options.l3:
        if cancel is not None and cancel():
            raise Cancelled()
        output.l3, output.body = _l3_and_body(image, options, timings)
    return output


def _l3_and_body(image: sitk.Image, options: RunOptions, timings: dict[str, float]) -> tuple:
    from RibFracSegLib.l3 import body_composition, locate_l3

    start = time.perf_counter()
    l3 = locate_l3(image, checkpoint=options.l3_checkpoint)
    timings["l3"] = time.perf_counter() - start
    logger.info("RibFracSeg: L3 localisation %.2f s (in view: %s)", timings["l3"], l3.in_view)
    if not l3.in_view:
        return l3, None
    start = time.perf_counter()
    body = body_composition(image, l3, height_m=options.height_m)
    timings["body_composition"] = time.perf_counter() - start
    logger.info("RibFracSeg: body composition %.2f s", timings["body_composition"])
    return l3, body

"""The computation of one run — CT image in, results out — with no scene and no GUI.

Run in Slicer's process by the console/batch Logic and in a PythonSlicer subprocess by the panel,
so both paths produce the same `RunOutput`. Heavy packages (torch via the library) are imported
only here, inside `compute`, to keep module loading fast.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import SimpleITK as sitk

from RibFracSegLib.detections import FractureResult
from RibFracSegLib.errors import Cancelled
from RibFracSegLib.options import SegmentOptions, check_height
from RibFracSegLib.progress import Cancel, Progress
from RibFracSegLib.shipped import shipped_model

logger = logging.getLogger("RibFracSeg")


@dataclass
class RunOptions:
    """What the panel or the console asked for; JSON-able so it can cross a process boundary."""

    checkpoint: str = str(shipped_model("fracture"))
    device: str = "auto"
    overlap: Optional[float] = None  # None: the checkpoint's / library default
    threshold: Optional[float] = None
    l3: bool = False
    height_m: Optional[float] = None
    l3_checkpoint: Optional[str] = None  # None: the shipped L3 checkpoint
    ribs: bool = False  # also add the '<CT> ribs' segmentation (the rib step itself always runs)

    def segment_options(self) -> SegmentOptions:
        """The fracture part of these options, as the library's command line and batch take them."""
        return SegmentOptions(checkpoint=self.checkpoint, device=self.device, overlap=self.overlap,
                              threshold=self.threshold)

    def validate(self) -> "RunOptions":
        """Raise ValueError naming the bad option and what to do (before any work starts).

        The fracture options are checked by the library's SegmentOptions (one validator for the
        CLI, the batch and the panel); only the L3 ones are checked here.
        """
        from pathlib import Path

        self.segment_options().validate()
        if self.l3:
            l3_path = Path(self.l3_checkpoint or shipped_model("l3"))
            if not l3_path.is_file():
                raise ValueError(f"L3 checkpoint not found: {l3_path}. Train one with `ribfracseg train-l3` "
                                 "or choose the L3 model file.")
        check_height(self.height_m)
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunOutput:
    """Everything one run produced, before any node exists."""

    fractures: FractureResult
    l3: Any = None  # RibFracSegLib.l3.check.L3Check (count + network) when L3 was asked for
    body: Any = None  # RibFracSegLib.l3.BodyComposition when L3 was in view
    tissues: Any = None  # its tissue mask as a label image on the CT's grid (body_composition.tissue_labels)
    levels: Optional[dict] = None  # the vertebral count behind L3: SpineLevels.to_dict() (plain data, crosses the worker)
    timings_s: dict[str, float] = field(default_factory=dict)


def compute(image: sitk.Image, options: RunOptions, progress: Optional[Progress] = None,
            cancel: Optional[Cancel] = None) -> RunOutput:
    """Fractures (and L3 + body composition when asked) for one CT; raises Cancelled when cancelled."""
    from RibFracSegLib.inference import segment_ct

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
        output.l3, output.body, output.tissues = _l3_and_body(image, options, timings, ribs=fractures.ribs)
        levels = getattr(output.l3, "levels", None)
        output.levels = None if levels is None else levels.to_dict()
    return output


def _l3_and_body(image: sitk.Image, options: RunOptions, timings: dict[str, float], ribs=None) -> tuple:
    """L3 from the vertebral count (the fracture run's ribs name it) checked against the MIP network, and
    body composition with its tissue label image when L3 is in view."""
    from RibFracSegLib.l3 import body_composition
    from RibFracSegLib.l3.body_composition import tissue_labels
    from RibFracSegLib.l3.check import locate_l3_checked

    start = time.perf_counter()
    l3 = locate_l3_checked(image, checkpoint=options.l3_checkpoint, ribs=ribs)
    timings["l3"] = time.perf_counter() - start
    logger.info("RibFracSeg: L3 localisation %.2f s (in view: %s, from %s%s)", timings["l3"], l3.in_view, l3.source,
                f"; review: {l3.review_reason}" if l3.review else "")
    if not l3.in_view:
        return l3, None, None
    start = time.perf_counter()
    body = body_composition(image, l3, height_m=options.height_m)
    tissues = tissue_labels(image, l3, body)
    timings["body_composition"] = time.perf_counter() - start
    logger.info("RibFracSeg: body composition %.2f s", timings["body_composition"])
    return l3, body, tissues

"""Which tool and model made a result, named the same way in the DICOM SEG/SR and the case report.

A reader of a segmentation weeks later, in a PACS or on paper, must be able to tell which model
(checkpoint file, network, second stage) and which RibFracSeg version produced it. Torch-free:
the report and the Slicer side build it from plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import __version__

TOOL_NAME = "RibFracSeg"


@dataclass(frozen=True)
class ModelInfo:
    checkpoint: str  # the checkpoint's file name (never a path: results travel)
    arch: str  # the registered network name
    second_stage: bool  # a candidate classifier re-scored and typed the detections
    version: str = __version__  # RibFracSeg's

    @classmethod
    def of(cls, checkpoint, path: str | Path) -> "ModelInfo":
        """From a loaded `checkpoint.Checkpoint` and the file it came from."""
        return cls(Path(path).name, checkpoint.arch, bool(checkpoint.candidate_classifier))

    @property
    def network(self) -> str:
        """'fracnet_unet + candidate classifier'."""
        return self.arch + (" + candidate classifier" if self.second_stage else "")

    def text(self) -> str:
        """'ribfrac_default.pt (fracnet_unet + candidate classifier), RibFracSeg 0.1.0'."""
        return f"{self.checkpoint} ({self.network}), {TOOL_NAME} {self.version}"

    def parameters(self) -> dict[str, str]:
        return {"checkpoint": self.checkpoint, "network": self.network}

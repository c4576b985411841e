"""Detections: what the fracture pipeline reports, in units a radiologist can check.

The same frozen objects feed the CLI, the JSON/CSV exporters, the evaluator and the Slicer Logic.
Positions are given three ways because each consumer wants a different one: voxel indices (i, j, k)
on the input grid, RAS mm (Slicer), LPS mm (ITK/DICOM).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Optional

import SimpleITK as sitk

if TYPE_CHECKING:
    from .ribs.labels import RibLabels


@dataclass(frozen=True)
class Detection:
    id: int  # instance label value in `FractureResult.instances` (1..n)
    confidence: float  # mean probability over the component
    voxel_count: int
    volume_mm3: float
    centroid_ijk: tuple[float, float, float]  # continuous index on the input grid (i, j, k)
    center_ras: tuple[float, float, float]
    center_lps: tuple[float, float, float]
    bbox_ijk: tuple[tuple[int, int, int], tuple[int, int, int]]  # inclusive (min ijk, max ijk)
    label_code: int = -1  # RibFrac code when a classifier predicts one, else -1 (undefined)
    rib: str = "none"  # "L6", "R11", "unnumbered L", or "none" when no rib is near (see RibFracSegLib.ribs)
    rib_arc_mm: Optional[float] = None  # distance along the rib's centreline from its head
    rib_region: str = ""  # "posterior" / "lateral" / "anterior": thirds of the rib's length
    # With the candidate classifier (RibFracSegLib.candidates): `confidence` is its fracture
    # probability, `label_code` its type (-1 when it abstains), and these keep the details.
    code_probabilities: tuple[float, ...] = ()  # P(code 1..4 | fracture): displaced, non-displaced, buckle, segmental
    network_confidence: Optional[float] = None  # the segmentation network's mean probability

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FractureResult:
    """One CT's fractures: detections plus the instance-label image on the input grid."""

    detections: list[Detection]
    instances: sitk.Image  # UInt16 labels 0..n on the input CT's grid
    probability: Optional[sitk.Image] = None  # float32 on the input grid, only when asked for
    timings_s: dict[str, float] = field(default_factory=dict)
    patches_total: int = 0
    patches_skipped: int = 0
    device: str = "cpu"
    ribs: Optional["RibLabels"] = None  # the ribs the detections were placed on (None: not looked for)
    skip_rule: str = "none"  # which patches were skipped: "ribs" (far from every rib), "bone" (no bone), "none"

"""Detections: what the fracture pipeline reports, in units a radiologist can check.

The same frozen objects feed the CLI, the JSON/CSV exporters, the evaluator and the Slicer Logic.
Positions are given three ways because each consumer wants a different one: voxel indices (i, j, k)
on the input grid, RAS mm (Slicer), LPS mm (ITK/DICOM).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Optional, Sequence

import SimpleITK as sitk

from . import defaults

if TYPE_CHECKING:
    from .ribs.labels import RibLabels


@dataclass(frozen=True)
class Detection:
    id: int  # instance label value in `FractureResult.instances` (1..n)
    confidence: float  # mean probability over the component (a rib-frame checkpoint's frame detection: its peak, by
    #   the checkpoint's inference["confidence"], reported over the floor's odds: `frame_inference.floor_odds`)
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
    network_confidence: Optional[float] = None  # the first-stage confidence, before the classifier or `floor_odds`
    # Measured in the rib's own frame (RibFracSegLib.ribs.frame_measure); None / () / -1 where not measured.
    gap_mm: Optional[float] = None  # along the rib, where the cortex is interrupted (0: no break seen)
    step_mm: Optional[float] = None  # cortical step-off across the break
    step_uv_mm: tuple[float, ...] = ()  # that step outward (u) and head-wards (v)
    angulation_deg: Optional[float] = None  # between the rib's axis either side of the break
    frame_code: int = -1  # the type the measurements alone give (label_code: the one reported)
    # A rib-frame checkpoint's detections: "frame" (found along a straightened rib), "fallback" (the
    # sliding window on bone no frame covers), each kept at its own detector's floor, or "rib end" (found
    # along a rib beyond where the frame network learned breaks: the fallback's classifier scores it;
    # `frame_inference.by_source`). "" for CT checkpoints.
    source: str = ""

    def __post_init__(self) -> None:
        # plain Python numbers, so the JSON summary and the Slicer exchange take them (numpy's do not)
        probabilities = tuple(float(p) for p in self.code_probabilities)
        if probabilities and len(probabilities) != len(TYPE_CODES):
            raise ValueError(f"Detection {self.id}: code_probabilities has {len(probabilities)} values; "
                             f"give one per RibFrac code {TYPE_CODES} or none (no classifier)")
        object.__setattr__(self, "code_probabilities", probabilities)
        object.__setattr__(self, "label_code", int(self.label_code))
        for name in ("network_confidence", "gap_mm", "step_mm", "angulation_deg"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "step_uv_mm", tuple(float(v) for v in self.step_uv_mm))
        object.__setattr__(self, "frame_code", int(self.frame_code))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Detection":
        """The inverse of `to_dict` after a JSON round trip (lists back to tuples; unknown keys, from
        a newer writer, ignored)."""
        return cls(**{k: _tuples(v) for k, v in data.items() if k in cls.__dataclass_fields__})


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


# --- The fracture type in words: every front-end (CLI tables, Slicer names, points, tables and
# terminology, the unfolded picture) says it through these, from a Detection's fields or their JSON.
TYPE_CODES = tuple(code for code in defaults.FRACTURE_CODES if code > 0)  # (1, 2, 3, 4): code_probabilities' order


def fracture_type(code: int) -> str:
    """'displaced' / 'non-displaced' / 'buckle' / 'segmental'; 'type undefined' when no type was given
    (-1: no classifier ran, or it abstained)."""
    code = int(code)
    return defaults.FRACTURE_CODES[code] if code in TYPE_CODES else f"type {defaults.FRACTURE_CODES[-1]}"


def known_type(code: int) -> str:
    """The type's name, '' when there is none: names and labels then say nothing about the type."""
    return fracture_type(code) if int(code) in TYPE_CODES else ""


def type_probability(code: int, probabilities: Sequence[float] = ()) -> Optional[float]:
    """The classifier's P(this type | fracture); None without a classifier or a type."""
    code = int(code)
    return float(probabilities[code - 1]) if code in TYPE_CODES and len(probabilities) == len(TYPE_CODES) else None


def type_text(code: int, probabilities: Sequence[float] = ()) -> str:
    """'displaced 0.82' (with the classifier's probability), 'displaced', or 'type undefined'."""
    p = type_probability(code, probabilities)
    return fracture_type(code) if p is None else f"{fracture_type(code)} {p:.2f}"


def measures_text(gap_mm: Optional[float] = None, step_mm: Optional[float] = None,
                  angulation_deg: Optional[float] = None) -> str:
    """'3.1 mm step, 1.7 mm gap, 8 deg': the rib-frame measurements that were made ('' for none)."""
    parts = [f"{step_mm:.1f} mm step" if step_mm is not None else "",
             f"{gap_mm:.1f} mm gap" if gap_mm is not None else "",
             f"{angulation_deg:.0f} deg" if angulation_deg is not None else ""]
    return ", ".join(p for p in parts if p)


def detection_type_text(d) -> str:
    """The type of a Detection or its JSON dict: 'displaced 0.82' with the classifier's probability when
    the classifier chose that type too, 'displaced' when the rib frame's measurements overruled it (the
    classifier's probability of the frame's type would read as doubt: 'displaced 0.00')."""
    get = d.get if isinstance(d, dict) else lambda k, default=None: getattr(d, k, default)
    code, frame = int(get("label_code", -1)), int(get("frame_code", -1) if get("frame_code") is not None else -1)
    probabilities = tuple(get("code_probabilities") or ())
    overruled = (frame == code and frame in TYPE_CODES and len(probabilities) == len(TYPE_CODES)
                 and TYPE_CODES[max(range(len(probabilities)), key=probabilities.__getitem__)] != code)  # the classifier chose another type
    return type_text(code, () if overruled else probabilities)


def fracture_text(d) -> str:
    """'displaced 0.82, 3.1 mm step, 1.7 mm gap, 8 deg': the type and the frame's measurements, from a
    Detection or its JSON dict (older summaries without measurements: the type alone)."""
    get = d.get if isinstance(d, dict) else lambda k, default=None: getattr(d, k, default)
    measured = measures_text(get("gap_mm"), get("step_mm"), get("angulation_deg"))
    kind = detection_type_text(d)
    return f"{kind}, {measured}" if measured else kind


def type_letter(code: int) -> str:
    """One letter for tight spaces (the unfolded picture's marks): D / N / B / S, '' when no type."""
    return fracture_type(code)[0].upper() if int(code) in TYPE_CODES else ""


def type_legend() -> str:
    """'D displaced, N non-displaced, B buckle, S segmental': the key to `type_letter`."""
    return ", ".join(f"{type_letter(c)} {fracture_type(c)}" for c in TYPE_CODES)


# --- Segment names: the Slicer segmentations and the DICOM SEG files name segments the same way.
def fracture_segment_name(d: Detection) -> str:
    """'Fracture 3 - right rib 6, lateral, displaced'; the rib is left out when the fracture is on no rib
    found, the type when it has none ('Fracture 3' with neither)."""
    from .ribs.assign import rib_phrase

    parts = [p for p in ("" if d.rib == "none" else rib_phrase(d.rib, d.rib_region), known_type(d.label_code)) if p]
    return f"Fracture {d.id} - {', '.join(parts)}" if parts else f"Fracture {d.id}"


def rib_segment_name(side: str, number: Optional[int]) -> str:
    """'Left rib 6', 'Right rib 11'; 'Left ribs, unnumbered' (all of a side's unnumbered ribs share a label)."""
    word = "Left" if side == "L" else "Right"
    return f"{word} rib {number}" if number else f"{word} ribs, unnumbered"


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
    skip_rule: str = "none"  # which patches were skipped: "ribs" (far from every rib), "bone (why not ribs)", "none"
    rib_frames: Optional[dict] = None  # a rib-frame checkpoint's coverage (`frame_inference.FrameProbability.summary`)
    notes: list[str] = field(default_factory=list)  # what a reader of the case should know (e.g. bone no frame covers)

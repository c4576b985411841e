"""Second stage of fracture detection: each detection's crop is classified as no fracture or one of
the four RibFrac types; detections below the checkpoint's fracture-probability floor are dropped.

The classifier travels inside the fracture checkpoint (`Checkpoint.candidate_classifier`: arch,
hparams, weights, crop grid and its operating point), so a checkpoint without one runs as before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from .. import defaults
from ..detections import TYPE_CODES, Detection
from ..networks import build_network
from .crops import extract_crops
from .training import predict


@dataclass(frozen=True)
class ClassifierSpec:
    """What a checkpoint's `candidate_classifier` section says, read once."""

    model: torch.nn.Module
    voxels: int
    spacing_mm: float
    min_probability: float  # fracture-probability floor: the operating point chosen on validation data
    min_type_probability: float


def load_classifier(section: dict, device: torch.device | str = "cpu") -> Optional[ClassifierSpec]:
    """The classifier of a checkpoint section, or None when the checkpoint has none."""
    if not section:
        return None
    model = build_network(section["arch"], **section.get("hparams", {}))
    model.load_state_dict(section["state_dict"])
    return ClassifierSpec(model.to(device).eval(), int(section.get("crop_voxels", defaults.CANDIDATE_CROP_VOXELS)),
                          float(section.get("crop_mm", defaults.CANDIDATE_CROP_MM)),
                          float(section.get("min_probability", 0.0)),
                          float(section.get("min_type_probability", defaults.CANDIDATE_MIN_TYPE_PROBABILITY)))


def type_code(code_probabilities: Sequence[float], min_type_probability: float) -> int:
    """RibFrac code 1..4 of the most probable type, or -1 when no type is probable enough."""
    best = int(np.argmax(code_probabilities))
    return TYPE_CODES[best] if code_probabilities[best] >= min_type_probability else -1


def classify(image: sitk.Image, detections: Sequence[Detection], spec: ClassifierSpec,
             device: torch.device | str = "cpu", min_probability: Optional[float] = None) -> list[Detection]:
    """Re-score and type each detection; keep those whose fracture probability reaches the floor
    (ids unchanged: the caller renumbers). `min_probability` overrides the checkpoint's floor."""
    if not detections:
        return []
    crops = extract_crops(image, [d.center_lps for d in detections], spec.voxels, spec.spacing_mm)
    probs = predict(spec.model, crops, spec.voxels, device=device)
    floor = spec.min_probability if min_probability is None else float(min_probability)
    kept = []
    for d, p in zip(detections, probs):
        fracture = float(1.0 - p[0])
        if fracture < floor:
            continue
        types = p[1:] / max(float(p[1:].sum()), 1e-12)
        kept.append(replace(d, confidence=fracture, network_confidence=d.confidence,
                            label_code=type_code(types, spec.min_type_probability),
                            code_probabilities=tuple(round(float(v), 4) for v in types)))
    return kept


def keep_detections(kept: Sequence[Detection], labels: np.ndarray) -> list[Detection]:
    """Erase from the instance array (in place) every instance not in `kept`; number the kept 1..n.
    Only the slices holding an instance are rewritten (a CT's whole array took 0.2 s a call)."""
    row_max = labels.reshape(len(labels), -1).max(axis=1) if labels.size else np.zeros(0, labels.dtype)
    lut = np.zeros(int(row_max.max(initial=0)) + 1, dtype=labels.dtype)
    for new_id, d in enumerate(kept, start=1):
        lut[d.id] = new_id
    for k in np.flatnonzero(row_max):
        labels[k] = lut[labels[k]]
    return [replace(d, id=new_id) for new_id, d in enumerate(kept, start=1)]

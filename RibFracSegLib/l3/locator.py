"""`locate_l3`: CT -> MIPs -> 2D U-Net confidence maps -> L3 slice, point and confidence.

Both views run through the same network as one batch; their row profiles are averaged, the peak
gives the L3 row and its height the confidence. Below the checkpoint's threshold, or with the peak at
the CT's first/last rows, the result says "not in view" (a thorax-only CT) but still carries the best
candidate, for QC pictures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from RibFracSegLib import defaults
from RibFracSegLib.l3 import decoding
from RibFracSegLib.l3.projections import Projections, compute_projections, fit_to_input
from RibFracSegLib.shipped import shipped_model

VIEWS = ("frontal", "sagittal")


@dataclass(frozen=True)
class L3Result:
    """Where L3 is. Positions are of the best candidate even when `in_view` is False."""

    in_view: bool
    confidence: float
    slice_index: int  # on the input grid, along its most superior-running axis
    z_mm: float  # superior (S) coordinate, same in LPS and RAS
    center_ras: tuple[float, float, float]  # at the vertebral body
    center_lps: tuple[float, float, float]
    row_mm: float  # distance from the top of the head-up MIP
    view_rows_mm: dict = field(default_factory=dict)  # view -> row from that view alone
    view_confidences: dict = field(default_factory=dict)
    projections: Projections | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        """JSON-ready summary (no arrays)."""
        return {
            "in_view": self.in_view, "confidence": round(self.confidence, 4), "slice_index": self.slice_index,
            "z_mm": round(self.z_mm, 2), "center_ras": [round(v, 2) for v in self.center_ras],
            "center_lps": [round(v, 2) for v in self.center_lps], "row_mm": round(self.row_mm, 2),
            "view_rows_mm": {k: round(v, 2) for k, v in self.view_rows_mm.items()},
            "view_confidences": {k: round(v, 4) for k, v in self.view_confidences.items()},
        }

    def to_dict(self) -> dict:
        """Every field, unrounded, as JSON types: what crosses the Slicer worker's process boundary.

        `projections` is left out on purpose: it holds a reoriented copy of the whole CT, and what it is
        needed for (body composition, QC pictures) happens where the CT is; `compute_projections` remakes it.
        """
        return {"in_view": bool(self.in_view), "confidence": float(self.confidence),
                "slice_index": int(self.slice_index), "z_mm": float(self.z_mm),
                "center_ras": [float(v) for v in self.center_ras], "center_lps": [float(v) for v in self.center_lps],
                "row_mm": float(self.row_mm),
                "view_rows_mm": {str(k): float(v) for k, v in self.view_rows_mm.items()},
                "view_confidences": {str(k): float(v) for k, v in self.view_confidences.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "L3Result":
        """The inverse of `to_dict` (projections None); unknown or missing keys raise a ValueError."""
        names = {"in_view", "confidence", "slice_index", "z_mm", "center_ras", "center_lps", "row_mm",
                 "view_rows_mm", "view_confidences"}
        if set(data) != names:
            raise ValueError(f"Not an L3Result: keys {sorted(set(data) ^ names)} differ from {sorted(names)}.")
        return cls(in_view=bool(data["in_view"]), confidence=float(data["confidence"]),
                   slice_index=int(data["slice_index"]), z_mm=float(data["z_mm"]),
                   center_ras=tuple(float(v) for v in data["center_ras"]),
                   center_lps=tuple(float(v) for v in data["center_lps"]), row_mm=float(data["row_mm"]),
                   view_rows_mm={str(k): float(v) for k, v in data["view_rows_mm"].items()},
                   view_confidences={str(k): float(v) for k, v in data["view_confidences"].items()})


def load_locator(checkpoint=None):
    """(Checkpoint, model in eval mode) from a path, a Checkpoint, or None for the shipped default."""
    if checkpoint is None:
        checkpoint = shipped_model("l3")
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint)
        if not path.exists():
            raise FileNotFoundError(f"L3 checkpoint not found: {path}. Train one with `ribfracseg train-l3` "
                                    "or give --checkpoint.")
        from RibFracSegLib.checkpoint import cached_model

        return cached_model(path)
    from RibFracSegLib.checkpoint import build_model

    return checkpoint, build_model(checkpoint)


def predict_maps(model, mips: list[np.ndarray], cols: int = defaults.L3_INPUT_COLS) -> list[np.ndarray]:
    """Sigmoid confidence maps of MIPs with equal row counts, on the padded network input's grid."""
    import torch

    batch = torch.from_numpy(np.stack([fit_to_input(m, cols=cols)[0] for m in mips])[:, None])
    device = next(model.parameters()).device
    with torch.inference_mode():
        return list(torch.sigmoid(model(batch.to(device))).float().cpu().numpy()[:, 0])


def view_profiles(model, frontal: np.ndarray, sagittal: np.ndarray, cols: int = defaults.L3_INPUT_COLS
                  ) -> dict[str, np.ndarray]:
    """Per-row confidence of each view over the input's central band (where training put the target)."""
    maps = predict_maps(model, [frontal, sagittal], cols=cols)
    return {view: decoding.row_profile(m, n_rows=frontal.shape[0]) for view, m in zip(VIEWS, maps)}


def locate_l3(image: sitk.Image, checkpoint=None) -> L3Result:
    """Find the L3 slice of a CT (any orientation and spacing) with the given or default checkpoint."""
    ckpt, model = load_locator(checkpoint)
    prep = dict(getattr(ckpt, "preprocessing", {}) or {})
    threshold = float((getattr(ckpt, "thresholds", {}) or {}).get("min_confidence", defaults.L3_MIN_CONFIDENCE))
    proj = compute_projections(image, slab_mm=float(prep.get("sagittal_slab_mm", defaults.L3_SAGITTAL_SLAB_MM)),
                               border_mm=float(prep.get("border_mm", defaults.L3_MIP_BORDER_MM)))
    profiles = view_profiles(model, proj.frontal, proj.sagittal, cols=int(prep.get("input_cols", defaults.L3_INPUT_COLS)))
    return decode(proj, image, profiles, threshold)


def decode(proj: Projections, image: sitk.Image, profiles: dict[str, np.ndarray],
           threshold: float = defaults.L3_MIN_CONFIDENCE) -> L3Result:
    """Combine the views' profiles into an L3Result (separate from the network for testing)."""
    view_peaks = {view: decoding.peak(p) for view, p in profiles.items()}
    combined = np.mean(list(profiles.values()), axis=0)
    row, confidence = decoding.peak(combined)
    # A peak pinned to the first/last row is no maximum: the network extrapolates to an L3 outside the CT.
    inside = min(row, len(combined) - 1 - row) * proj.spacing_mm >= defaults.L3_EDGE_MM
    slice_index, z_mm, lps, ras = decoding.row_to_point(proj, image, row)
    return L3Result(in_view=confidence >= threshold and inside, confidence=confidence, slice_index=slice_index, z_mm=z_mm,
                    center_ras=ras, center_lps=lps, row_mm=row * proj.spacing_mm,
                    view_rows_mm={v: r * proj.spacing_mm for v, (r, _) in view_peaks.items()},
                    view_confidences={v: c for v, (_, c) in view_peaks.items()}, projections=proj)

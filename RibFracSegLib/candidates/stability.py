"""How much the classifier's fracture probability moves when a detection's centre moves a little.

Why: a detection's centre is the centroid of its component, and that moves by a tenth of a
millimetre with the first stage's precision or a threshold; a classifier whose probability jumps
with it flips detections across the operating point (issue 10 kept fp32 for that reason). The
figure is the largest change over shifts of `shift_mm` along each axis and to the cube's corners,
each crop cut from the CT again the way `classify` cuts it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk
import torch

from .crops import extract_crops
from .training import predict


def shift_offsets(shift_mm: float) -> np.ndarray:
    """(14, 3) LPS offsets: +-shift along each axis and the 8 corners of the cube of that half-size."""
    axes = [s * shift_mm * np.eye(3)[a] for a in range(3) for s in (-1, 1)]
    corners = [np.array(c, float) * shift_mm for c in itertools.product((-1, 1), repeat=3)]
    return np.array(axes + corners)


@dataclass(frozen=True)
class Stability:
    probabilities: np.ndarray  # (N, 1 + S) fracture probability at each centre, then at its S shifts

    @property
    def change(self) -> np.ndarray:
        """(N,) largest |p(shifted) - p(centre)| per centre."""
        return np.abs(self.probabilities[:, 1:] - self.probabilities[:, :1]).max(axis=1)

    def flips(self, floor: float) -> int:
        """Centres kept at `floor` at some shifts and dropped at others."""
        kept = self.probabilities >= floor
        return int((kept.any(axis=1) & ~kept.all(axis=1)).sum())


def stability(model: torch.nn.Module, image: sitk.Image, centres_lps: Sequence[Sequence[float]], voxels: int,
              spacing_mm: float, shift_mm: float = 0.5) -> Stability:
    """Largest change of the fracture probability over `shift_offsets(shift_mm)` of each centre."""
    centres = np.asarray(centres_lps, float).reshape(-1, 3)
    offsets = np.concatenate([np.zeros((1, 3)), shift_offsets(shift_mm)])
    points = (centres[:, None, :] + offsets[None]).reshape(-1, 3)
    prob = 1 - predict(model, extract_crops(image, points, voxels, spacing_mm), voxels)[:, 0]
    return Stability(prob.reshape(len(centres), len(offsets)))

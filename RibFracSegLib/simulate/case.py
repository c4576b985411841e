"""Simulate fractures into one real CT: choose sites on its ribs, build each break, keep the rest exact."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .. import defaults
from ..geometry import index_to_lps_affine, same_grid
from ..io import InputError
from ..ribs.frame_build import body_centre, centreline_frame
from ..ribs.labels import RibLabels
from .plan import draw_arc, draw_kind, make_spec
from .render import BuiltFracture, Grid, build_fracture

_TRIES_PER_FRACTURE = 60


@dataclass
class SimulatedCase:
    image: sitk.Image  # the CT with fractures, same grid and pixel type as the input
    fracture_labels: sitk.Image  # UInt16 instances 1..n on the same grid
    fractures: list[BuiltFracture]
    notes: list[str] = field(default_factory=list)


def grid_of(image: sitk.Image, shape_kji: tuple[int, int, int]) -> Grid:
    matrix, origin = index_to_lps_affine(image)
    return Grid(matrix, origin, tuple(int(v) for v in shape_kji))


def _restore_type(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    if np.issubdtype(like.dtype, np.integer):
        info = np.iinfo(like.dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(like.dtype)
    return values.astype(like.dtype)


def simulate_case(image: sitk.Image, ribs: RibLabels, n_fractures: int, rng: np.random.Generator,
                  kinds: Optional[Sequence[int]] = None) -> SimulatedCase:
    """Build `n_fractures` fractures (types drawn, or `kinds` in turn) into the ribs of `image`."""
    if not same_grid(image, ribs.labels):
        raise InputError("The rib label map is not on the CT's grid (size, spacing, origin or direction differ); "
                         "give the label map made from this CT, or resample it onto the CT first.")
    original = sitk.GetArrayFromImage(image)
    hu = original.astype(np.float32)
    labels = np.zeros(hu.shape, np.uint16)
    rib_map = sitk.GetArrayViewFromImage(ribs.labels)
    grid = grid_of(image, hu.shape)
    centre = body_centre(ribs.ribs) if ribs.ribs else None
    pairs = [(r, centreline_frame(r, centre_lps=centre)) for r in ribs.ribs]
    usable = [r for r, f in pairs if f is not None]
    frames = [f for _, f in pairs if f is not None]
    weight = np.array([defaults.FRACTURE_RIB_WEIGHT[r.number - 1] if r.number else 0.5 for r in usable], float)
    built: list[BuiltFracture] = []
    taken: dict[int, list[float]] = {}
    for attempt in range(_TRIES_PER_FRACTURE * max(n_fractures, 1)):
        if len(built) == n_fractures or not usable:
            break
        index = int(rng.choice(len(usable), p=weight / weight.sum()))
        rib, frame = usable[index], frames[index]
        kind = int(kinds[len(built) % len(kinds)]) if kinds else draw_kind(rng)
        breaks = draw_arc(frame, kind, rng)
        if breaks is None or any(abs(b - o) < defaults.SIMULATION_MIN_SEPARATION_MM
                                 for b in breaks for o in taken.get(index, [])):
            continue
        spec = make_spec(len(built) + 1, kind, rib.label, rib.name, frame, breaks, rng)
        rivals = [f for i, (r, f) in enumerate(zip(usable, frames)) if r.label == rib.label and i != index]
        result = build_fracture(hu, labels, rib_map, grid, frame, spec, rng, rivals)
        if result is not None:
            built.append(result)
            taken.setdefault(index, []).extend(breaks)
    notes = []
    if len(built) < n_fractures:
        notes.append(f"placed {len(built)} of {n_fractures} fractures: too few ribs in view away from the CT's edges")
    out = original.copy()
    for b in built:
        changed = hu[b.box] != original[b.box].astype(np.float32)
        out[b.box][changed] = _restore_type(hu[b.box][changed], original)
    result_image = sitk.GetImageFromArray(out)
    result_image.CopyInformation(image)
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    return SimulatedCase(result_image, label_image, built, notes)

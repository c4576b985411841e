"""Windows along straightened ribs for training: fractures and the places that mimic them.

Positives are windows centred on a fracture piece in its frame, moved along the arc at random.
Negatives are drawn by kind: anywhere on an intact stretch of rib, at the rib's anterior end
(costochondral junction), at its head (costovertebral joint), and where another rib or bone
crosses the section (`frame_dataset.crossing_sections`). Each window says which kind it is.

Augmentation keeps the frame's meaning: a flip along the arc (a rib read from its other end; the
frame's outward axis `u` and head-ward axis `v` keep their sense), shifts along the arc and by up to
a voxel or two across, and HU gain, offset and noise. Never a flip across the rib: outward and
head-ward are what the frame promises every network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .. import defaults
from ..preprocess import normalise
from .frame_dataset import FrameCase, hu_to_uint8, uint8_to_hu
from .sampler import crop

NEGATIVE_KINDS = ("intact", "frame_end", "head_end", "crossing")
KINDS = ("fracture",) + NEGATIVE_KINDS


@dataclass(frozen=True)
class FrameSamplerConfig:
    window: tuple[int, int, int] = defaults.FRAME_WINDOW  # (arc, u, v) voxels
    batch: int = 4
    positive_fraction: float = 0.5
    jitter_mm: float = 12.0  # a positive's centre moves up to this along the arc
    end_jitter_mm: float = defaults.FRAME_END_JITTER_MM  # a head/anterior-end window's centre moves up to this
    shift_voxels: int = 1  # the crop across moves up to this (and one more the other way: 51 - 48 = 3 places)
    negative_weights: tuple[float, ...] = (0.4, 0.2, 0.2, 0.2)  # intact, frame_end, head_end, crossing
    flip_arc: float = 0.5  # probability of reading the window from the rib's other end


@dataclass(frozen=True)
class FrameAugmentConfig:
    gain: float = 0.1  # HU scale, 1 +- gain
    shift: float = 0.05  # offset in normalised units ([-1, 1] spans the HU window)
    noise_std: float = 0.03  # noise up to this, normalised units


@dataclass(frozen=True)
class Window:
    case: int
    frame: int
    centre: tuple[int, int, int]  # (a, p, q) voxel of the frame at the window's centre
    kind: str
    flip: bool


def _fracture_free_arc(case: FrameCase, frame: int, rng: np.random.Generator, half_window: int) -> float:
    """An arc index between head and anterior end whose window holds no fracture piece (10 tries)."""
    f = case.frames[frame]
    lo, hi = f["head"], max(f["end"], f["head"] + 1)
    breaks = [x["a"] for x in case.fractures if x["frame"] == frame]
    a = rng.uniform(lo, hi)
    for _ in range(10):
        if all(abs(a - b) > half_window for b in breaks):
            break
        a = rng.uniform(lo, hi)
    return a


def sample_windows(cases: Sequence[FrameCase], config: FrameSamplerConfig, rng: np.random.Generator) -> list[Window]:
    """`config.batch` windows: round(batch * positive_fraction) on fractures (when any), the rest
    negatives drawn by `negative_weights`."""
    own = [[x for x in c.fractures if x["own"]] for c in cases]
    with_breaks = [i for i, pieces in enumerate(own) if pieces]
    n_pos = int(round(config.batch * config.positive_fraction)) if with_breaks else 0
    weights = np.asarray(config.negative_weights, float)
    out = []
    for n in range(config.batch):
        if n < n_pos:
            ci = with_breaks[int(rng.integers(len(with_breaks)))]
            piece = own[ci][int(rng.integers(len(own[ci])))]
            fi, kind = piece["frame"], "fracture"
            a = piece["a"] + rng.uniform(-1, 1) * config.jitter_mm / cases[ci].frames[fi]["voxel_mm"]
        else:
            ci = int(rng.integers(len(cases)))
            fi = int(rng.integers(len(cases[ci].frames)))
            f = cases[ci].frames[fi]
            kind = NEGATIVE_KINDS[int(rng.choice(len(weights), p=weights / weights.sum()))]
            end_jitter = rng.uniform(-1, 1) * config.end_jitter_mm / f["voxel_mm"]
            if kind == "crossing" and not f["crossings"]:
                kind = "intact"
            if kind == "frame_end":
                a = f["end"] + end_jitter
            elif kind == "head_end":
                a = f["head"] + end_jitter
            elif kind == "crossing":
                a = f["crossings"][int(rng.integers(len(f["crossings"])))]
            else:
                a = _fracture_free_arc(cases[ci], fi, rng, config.window[0] // 2)
        half = cases[ci].frames[fi]["half"]
        p, q = (half + int(rng.integers(-config.shift_voxels, config.shift_voxels + 2)) for _ in range(2))
        length = cases[ci].frames[fi]["length"]
        out.append(Window(ci, fi, (int(np.clip(np.rint(a), 0, length - 1)), p, q), kind, bool(rng.random() < config.flip_arc)))
    return out


def window_arrays(case: FrameCase, window: Window, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(HU, label) of one window, padded beyond the frame (HU window's floor, no fracture), flipped
    along the arc when the window says so."""
    hu, label = case.arrays(window.frame)
    image = crop(hu, np.array(window.centre), tuple(size), int(hu_to_uint8(np.float32(defaults.AIR_HU))))
    target = crop(label, np.array(window.centre), tuple(size), 0)
    if window.flip:
        image, target = image[::-1], target[::-1]
    return image, target


def make_batch(cases: Sequence[FrameCase], windows: Sequence[Window], config: FrameSamplerConfig,
               hu_window=defaults.HU_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(images, targets), float32 (B, 1, a, p, q): images normalised to [-1, 1], targets 0/1."""
    pairs = [window_arrays(cases[w.case], w, config.window) for w in windows]
    images = np.stack([normalise(uint8_to_hu(h), hu_window) for h, _ in pairs])[:, None]
    targets = np.stack([t.astype(np.float32) for _, t in pairs])[:, None]
    return np.ascontiguousarray(images, np.float32), np.ascontiguousarray(targets)


def augment_intensity(images: torch.Tensor, config: FrameAugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """HU gain, offset and noise per window (random numbers drawn on the CPU generator, so a run is
    the same on any device and resumes exactly)."""
    batch = images.shape[0]
    gain = 1.0 + (torch.rand(batch, 1, 1, 1, 1, generator=generator) * 2 - 1) * config.gain
    shift = (torch.rand(batch, 1, 1, 1, 1, generator=generator) * 2 - 1) * config.shift
    noise = torch.randn(images.shape, generator=generator) * torch.rand(batch, 1, 1, 1, 1, generator=generator) \
        * config.noise_std
    dev = images.device
    return images * gain.to(dev) + shift.to(dev) + noise.to(dev)

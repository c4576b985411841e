"""FracNet-style patch centres: fractures, and the places a detector is most likely to be fooled.

Positives are fracture centroids with a random jitter (so the fracture is not always mid-patch).
Negatives are the left-right mirror of each positive across the spine (the same rib level on the
other side, an intact rib), points along the spinal column, and random bone voxels. All of them
come from the canonical image geometry (`TrainingVolume`), never from fixed rows of a 512² slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import TrainingVolume

KINDS = ("positive", "mirror", "spine", "bone")


@dataclass(frozen=True)
class SamplerConfig:
    patch_size: tuple[int, int, int] = (64, 64, 64)
    patches_per_case: int = 4
    positive_fraction: float = 0.5
    jitter_voxels: int = 8  # positives move up to this far from the centroid on each axis
    negative_weights: tuple[float, float, float] = (0.4, 0.2, 0.4)  # mirror, spine, random bone


def mirror_point(centre: np.ndarray, volume: TrainingVolume) -> np.ndarray:
    """Reflect a canonical (z, y, x) point across the sagittal plane through the spine."""
    out = np.array(centre, dtype=np.float64)
    out[2] = 2.0 * volume.spine_yx[1] - out[2]
    return out


def spine_point(volume: TrainingVolume, rng: np.random.Generator, jitter: int) -> np.ndarray:
    z0, z1 = volume.spine_z
    z = rng.uniform(z0, z1)
    y, x = volume.spine_yx
    return np.array([z, y, x]) + rng.integers(-jitter, jitter + 1, 3)


def bone_point(volume: TrainingVolume, rng: np.random.Generator) -> np.ndarray:
    if len(volume.bone) == 0:
        return rng.uniform(0, 1, 3) * (np.array(volume.hu.shape) - 1)
    return volume.bone[rng.integers(len(volume.bone))].astype(np.float64)


def sample_centres(volume: TrainingVolume, config: SamplerConfig,
                   rng: np.random.Generator) -> list[tuple[np.ndarray, str]]:
    """`patches_per_case` (centre, kind) pairs; centres are integer voxels inside the volume."""
    n = config.patches_per_case
    n_pos = min(len(volume.centroids), int(round(n * config.positive_fraction)))
    chosen = rng.choice(len(volume.centroids), n_pos, replace=False) if n_pos else np.array([], int)
    out: list[tuple[np.ndarray, str]] = []
    for i in chosen:
        jitter = rng.integers(-config.jitter_voxels, config.jitter_voxels + 1, 3)
        out.append((volume.centroids[i] + jitter, "positive"))
    weights = np.array(config.negative_weights, dtype=np.float64)
    positives = [c for c, _ in out]
    while len(out) < n:
        kind = KINDS[1 + rng.choice(3, p=weights / weights.sum())]
        if kind == "mirror" and len(volume.centroids):
            source = positives[len(out) % len(positives)] if positives else \
                volume.centroids[rng.integers(len(volume.centroids))]
            centre = mirror_point(source, volume)
        elif kind == "spine":
            centre = spine_point(volume, rng, config.jitter_voxels)
        else:
            kind, centre = "bone", bone_point(volume, rng)
        out.append((centre, kind))
    limit = np.array(volume.hu.shape) - 1
    return [(np.clip(np.rint(c), 0, limit).astype(int), k) for c, k in out]


def crop(array: np.ndarray, centre: np.ndarray, size: tuple[int, int, int], pad_value: float) -> np.ndarray:
    """A `size` block centred on `centre` (voxel), padded with `pad_value` beyond the volume."""
    out = np.full(size, pad_value, dtype=array.dtype)
    start = np.asarray(centre, dtype=int) - np.asarray(size) // 2
    src_lo = np.maximum(start, 0)
    src_hi = np.minimum(start + np.asarray(size), array.shape)
    if np.any(src_hi <= src_lo):
        return out
    dst_lo = src_lo - start
    dst_hi = dst_lo + (src_hi - src_lo)
    out[tuple(slice(a, b) for a, b in zip(dst_lo, dst_hi))] = \
        array[tuple(slice(a, b) for a, b in zip(src_lo, src_hi))]
    return out

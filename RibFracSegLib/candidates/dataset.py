"""Training crops for the candidate classifier, cut from harvested cases (`harvest.Harvest`).

Per case: every detection of the segmentation network (class 0 if it is no fracture, its type if
it is one), every true fracture at its centre and at two points a few mm away (the network's
detections are not centred exactly), and points on random bone away from the fractures (intact
ribs, spine, scapulae, sternum: what a fracture must be told apart from). Crops are stored larger
than the classifier's input (`CANDIDATE_STORE_VOXELS`) so training can shift them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from .. import defaults
from ..io import atomic_path, read_ct
from .crops import extract_crops
from .harvest import Harvest

JITTER_MM = 3.0  # true fractures are also cut this far off their centre (twice, random directions)
RANDOM_BONE_HU = 250.0  # random negatives are drawn on voxels above this
RANDOM_CLEAR_MM = 20.0  # ... at least this far from every true fracture
RANDOM_PER_CASE = {"phantom": 40, "real": 200, "real+simulated": 40}
RIB_POINTS_PER_CASE = {"phantom": 0, "real": 300, "real+simulated": 60}  # intact-rib points, when ribs are known


@dataclass
class CropSet:
    crops: np.ndarray  # (N, V, V, V) int16 HU
    labels: np.ndarray  # (N,) int64: 0 not a fracture, 1..4 type
    real: np.ndarray  # (N,) bool: cut from a real CT
    cases: np.ndarray  # (N,) case names
    kinds: np.ndarray  # (N,) str: "detection", "truth", "random"

    def save(self, path: Path, inputs: str = "") -> None:
        """Written atomically; `inputs` is the key of what it was cut from (`crops_key`)."""
        with atomic_path(path) as tmp:
            np.savez(tmp, crops=self.crops, labels=self.labels, real=self.real, cases=self.cases, kinds=self.kinds,
                     inputs=np.array(inputs))

    @classmethod
    def load(cls, path: Path) -> "CropSet":
        with np.load(path) as z:
            return cls(**{k: z[k] for k in ("crops", "labels", "real", "cases", "kinds")})


def random_bone_points(image: sitk.Image, n: int, avoid_lps: Sequence[Sequence[float]], rng: np.random.Generator,
                       step: int = 3) -> list[np.ndarray]:
    """`n` LPS points on bone (HU > RANDOM_BONE_HU), none within RANDOM_CLEAR_MM of `avoid_lps`."""
    hu = sitk.GetArrayViewFromImage(image)[::step, ::step, ::step]
    kji = np.argwhere(hu > RANDOM_BONE_HU)
    if not len(kji) or n <= 0:
        return []
    picks = kji[rng.choice(len(kji), size=min(len(kji), 4 * n), replace=False)] * step
    points = np.array([image.TransformContinuousIndexToPhysicalPoint([float(v) for v in p[::-1]]) for p in picks])
    if len(avoid_lps):
        d = np.linalg.norm(points[:, None, :] - np.asarray(avoid_lps, float)[None], axis=2).min(axis=1)
        points = points[d >= RANDOM_CLEAR_MM]
    return list(points[:n])


def intact_rib_points(image: sitk.Image, ribs: str, n: int, avoid_lps: Sequence[Sequence[float]],
                      rng: np.random.Generator) -> list[np.ndarray]:
    """`n` points on rib centrelines, none within RANDOM_CLEAR_MM of a fracture: what the first stage
    mistakes for fractures on real CTs, and what a fracture must be told from."""
    from ..simulate.dataset import load_ribs

    lines = [r.centreline_lps for r in load_ribs(image, ribs).ribs if len(r.centreline_lps)]
    if not lines or n <= 0:
        return []
    points = np.concatenate(lines)
    if len(avoid_lps):
        d = np.linalg.norm(points[:, None, :] - np.asarray(avoid_lps, float)[None], axis=2).min(axis=1)
        points = points[d >= RANDOM_CLEAR_MM]
    return list(points[rng.choice(len(points), size=min(n, len(points)), replace=False)]) if len(points) else []


def case_crops(harvest: Harvest, rng: np.random.Generator, voxels: int = defaults.CANDIDATE_STORE_VOXELS) -> CropSet:
    image = read_ct(harvest.image)
    centres, labels, kinds = [], [], []
    for c in harvest.candidates:
        if c.truth == 0 or (c.truth > 0 and c.kind > 0):
            centres.append(c.center_lps), labels.append(c.kind if c.truth > 0 else 0), kinds.append("detection")
    truths = [t for t in harvest.truths if t["kind"] > 0]
    for t in truths:
        centre = np.asarray(t["center_lps"], float)
        for offset in [np.zeros(3)] + [v / np.linalg.norm(v) * JITTER_MM for v in rng.normal(size=(2, 3))]:
            centres.append(centre + offset), labels.append(t["kind"]), kinds.append("truth")
    for p in random_bone_points(image, RANDOM_PER_CASE[harvest.source], [t["center_lps"] for t in harvest.truths], rng):
        centres.append(p), labels.append(0), kinds.append("random")
    if harvest.ribs:
        for p in intact_rib_points(image, harvest.ribs, RIB_POINTS_PER_CASE[harvest.source],
                                   [t["center_lps"] for t in harvest.truths], rng):
            centres.append(p), labels.append(0), kinds.append("rib")
    crops = np.clip(np.rint(extract_crops(image, centres, voxels)), -32768, 32767).astype(np.int16)
    n = len(centres)
    return CropSet(crops, np.array(labels, np.int64), np.full(n, harvest.source != "phantom"),
                   np.array([harvest.case] * n), np.array(kinds))


def build_crops(harvest_dir: Path, seed: int = 0) -> CropSet:
    """All harvested cases of one split folder, in name order."""
    sets = []
    for i, path in enumerate(sorted(harvest_dir.glob("*.json"))):
        sets.append(case_crops(Harvest.from_dict(json.loads(path.read_text())), np.random.default_rng([seed, i])))
    return CropSet(*(np.concatenate([getattr(s, f) for s in sets]) for f in ("crops", "labels", "real", "cases", "kinds")))


def crops_key(harvest_dir: Path, seed: int, voxels: int = defaults.CANDIDATE_STORE_VOXELS) -> str:
    """What a split's crops depend on: its harvest files (names and contents), the seed, the crop size
    and the sampling constants. A case added, re-harvested or removed changes it."""
    digest = hashlib.sha256(json.dumps([seed, voxels, JITTER_MM, RANDOM_BONE_HU, RANDOM_CLEAR_MM, RANDOM_PER_CASE,
                                        RIB_POINTS_PER_CASE]).encode())
    for path in sorted(harvest_dir.glob("*.json")):
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def cached_crops(harvest_dir: Path, cache: Path, seed: int = 0) -> CropSet:
    """`build_crops(harvest_dir, seed)`, read from `cache` when that was cut from the same inputs
    (`crops_key`), else built and written there."""
    key = crops_key(harvest_dir, seed)
    if cache.is_file():
        with np.load(cache) as z:
            stored = str(z["inputs"]) if "inputs" in z.files else ""
        if stored == key:
            return CropSet.load(cache)
    crops = build_crops(harvest_dir, seed)
    crops.save(cache, key)
    return crops

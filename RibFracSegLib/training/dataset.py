"""Training data in the RibFrac layout: image, instance label and info csv per case, phantoms or real.

Each case is turned once into a `TrainingVolume` in the inference engine's canonical (LPS) voxel
order — HU as int16, instance labels, fracture centroids, the spine column and a sample of bone
voxels found from the image — so training patches look exactly like the patches `segment_ct` sees.
With a cache folder the arrays are stored as .npy and memory-mapped, so epochs never re-decode NIfTI.

What a voxel's target is depends on the class mode: "fracture" (one channel, fracture or not) or
"types" (background + the RibFrac codes 1..4, each instance's code from the folder's info csv).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import defaults
from ..cases import LabelledCase, labelled_cases
from ..detections import TYPE_CODES
from ..evaluation.reading import GT_COLUMNS, read_info_csvs
from ..io import InputError, read_ct
from ..postprocess import spine_column
from ..orientation import canonical_volume
from .losses import UNKNOWN_TYPE

CACHE_VERSION = 2  # 2: spine column from postprocess.spine_mask (one spine finder)
BONE_SAMPLE = 20000  # bone voxels kept per case for random bone negatives
CLASS_MODES = ("fracture", "types")


@dataclass
class TrainingVolume:
    public_id: str
    hu: np.ndarray  # int16 [z, y, x] canonical: z -> Superior, y -> Posterior, x -> Left
    labels: np.ndarray  # uint16 instance ids on the same grid
    spacing_zyx: tuple[float, float, float]
    centroids: np.ndarray  # (n, 3) float voxel centres of fracture instances, canonical order
    spine_yx: tuple[float, float]  # axial position of the spinal column (the body's midline)
    spine_z: tuple[int, int]  # slice range where the column holds bone
    bone: np.ndarray  # (m, 3) int32 sample of bone voxels
    codes: dict = field(default_factory=dict)  # {instance id: RibFrac label_code} from the info csv


def num_classes(mode: str) -> int:
    """Output channels of a network trained in this class mode: 1 (sigmoid) or background + types."""
    if mode not in CLASS_MODES:
        raise ValueError(f"class mode must be one of {', '.join(CLASS_MODES)}, got {mode!r}")
    return 1 if mode == "fracture" else 1 + len(TYPE_CODES)


def class_hparams(hparams: dict, mode: str) -> dict:
    """Network hyper-parameters with the num_classes the class mode trains: filled in when absent
    (one channel needs nothing); a different num_classes given raises."""
    n = num_classes(mode)
    if hparams.get("num_classes", 1) == n:
        return hparams
    if "num_classes" in hparams:
        raise ValueError(f"classes {mode!r} trains num_classes {n}; the hyper-parameters give "
                         f"num_classes {hparams['num_classes']}")
    return {**hparams, "num_classes": n}


def class_meaning(mode: str) -> dict:
    """What each output channel means, for a checkpoint's provenance."""
    if num_classes(mode) == 1:
        return {"mode": mode, "channels": ["fracture (sigmoid)"]}
    return {"mode": mode, "channels": ["background"] + [defaults.FRACTURE_CODES[c] for c in TYPE_CODES],
            "softmax": True, "channel_is_ribfrac_code": True,
            "unknown_type": "code -1 or no csv row: a fracture in the fracture-vs-background terms, no type"}


def info_codes(data_dir: str | Path) -> dict[str, dict[int, int]]:
    """{public_id: {instance id: label_code}} from a RibFrac folder's info csv(s); a blank code reads -1."""
    rows = read_info_csvs(Path(data_dir), GT_COLUMNS)
    return {pid: {int(i): int(c) if math.isfinite(c) else -1 for i, c in r if i > 0} for pid, r in rows.items()}


def class_map(labels: np.ndarray, codes: dict) -> np.ndarray:
    """Instance labels -> int64 classes: 0 background, the instance's RibFrac code 1..4, or UNKNOWN_TYPE
    for an instance whose code is -1 (undefined), anything else, or missing from `codes`."""
    lut = np.full(int(labels.max(initial=0)) + 1, UNKNOWN_TYPE, np.int64)
    lut[0] = 0
    for instance, code in codes.items():
        if 0 < instance < len(lut) and code in TYPE_CODES:
            lut[instance] = code
    return lut[labels]


def target_patch(labels: np.ndarray, volume: TrainingVolume, mode: str = "fracture") -> np.ndarray:
    """A patch's training target: float32 {0, 1} mask ("fracture") or an int64 class map ("types")."""
    if num_classes(mode) == 1:
        return (labels > 0).astype(np.float32)
    return class_map(labels, volume.codes)


def build_volume(files: LabelledCase, seed: int = 0) -> TrainingVolume:
    """Decode one case into canonical arrays and the sampler's anatomical landmarks."""
    image = read_ct(files.image)
    label_img = sitk.ReadImage(str(files.label))
    if image.GetSize() != label_img.GetSize():
        raise InputError(f"{files.public_id}: label size {label_img.GetSize()} differs from image {image.GetSize()}.")
    canon = canonical_volume(image)
    hu = np.ascontiguousarray(np.clip(canon.array, -32768, 32767)).astype(np.int16, copy=False)
    labels = np.ascontiguousarray(canon.to_canonical(sitk.GetArrayViewFromImage(label_img))).astype(np.uint16)
    n = int(labels.max())
    centroids = np.array(ndimage.center_of_mass(labels > 0, labels, range(1, n + 1)), dtype=np.float64).reshape(-1, 3)
    centroids = centroids[np.isfinite(centroids).all(axis=1)]
    spine_yx, spine_z = spine_column(hu, canon.spacing_zyx)
    bone_idx = np.flatnonzero(hu.ravel() > defaults.BONE_HU)
    rng = np.random.default_rng(seed)
    if bone_idx.size > BONE_SAMPLE:
        bone_idx = rng.choice(bone_idx, BONE_SAMPLE, replace=False)
    bone = np.stack(np.unravel_index(bone_idx, hu.shape), axis=1).astype(np.int32)
    return TrainingVolume(files.public_id, hu, labels, canon.spacing_zyx, centroids, spine_yx, spine_z, bone)


def _save(volume: TrainingVolume, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("hu", "labels", "centroids", "bone"):
        np.save(folder / f"{name}.npy", getattr(volume, name))
    meta = {"version": CACHE_VERSION, "public_id": volume.public_id, "spacing_zyx": list(volume.spacing_zyx),
            "spine_yx": list(volume.spine_yx), "spine_z": list(volume.spine_z)}
    (folder / "meta.json").write_text(json.dumps(meta))  # written last: marks a complete entry


def _load(folder: Path) -> Optional[TrainingVolume]:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("version") != CACHE_VERSION:
        return None
    arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r") for n in ("hu", "labels")}
    small = {n: np.load(folder / f"{n}.npy") for n in ("centroids", "bone")}
    return TrainingVolume(meta["public_id"], arrays["hu"], arrays["labels"], tuple(meta["spacing_zyx"]),
                          small["centroids"], tuple(meta["spine_yx"]), tuple(meta["spine_z"]), small["bone"])


def load_volume(files: LabelledCase, cache_dir: Optional[str | Path] = None,
                codes: Optional[dict] = None) -> TrainingVolume:
    """A case's TrainingVolume, memory-mapped from `cache_dir` when given (built there on first use);
    `codes` ({instance id: label_code}, see `info_codes`) are attached as they are (not cached)."""
    volume = _load_arrays(files, cache_dir)
    volume.codes = dict(codes or {})
    return volume


def _load_arrays(files: LabelledCase, cache_dir: Optional[str | Path]) -> TrainingVolume:
    if cache_dir is None:
        return build_volume(files)
    folder = Path(cache_dir) / files.public_id
    stamp = f"{files.image.stat().st_mtime_ns}-{files.label.stat().st_mtime_ns}"
    cached = _load(folder)
    if cached is not None and (folder / "source.txt").is_file() and (folder / "source.txt").read_text() == stamp:
        return cached
    volume = build_volume(files)
    (folder / "meta.json").unlink(missing_ok=True)
    _save(volume, folder)
    (folder / "source.txt").write_text(stamp)
    return _load(folder)


def load_dataset(data_dir: str | Path, cache_dir: Optional[str | Path] = None,
                 ids: Optional[list[str]] = None, mode: str = "fracture") -> list[TrainingVolume]:
    """The folder's cases; in "types" mode with each instance's code from its info csv."""
    codes = info_codes(data_dir) if num_classes(mode) > 1 else {}
    return [load_volume(f, cache_dir, codes.get(f.public_id)) for f in labelled_cases(data_dir)
            if ids is None or f.public_id in ids]

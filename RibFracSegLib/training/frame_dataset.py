"""Training data for the rib-frame detector: per CT, every rib straightened (`ribs.frame`) with the
fracture label sampled into the same frames, cached once per source as one compressed .npz.

Sources: phantoms (their truth ribs and fractures) and real fracture-free CTs with fractures built
in by `simulate.simulate_case` (the four RibFrac types in turn, one copy per seed; ribs from
`ribs.segment.segment_ribs`, found once per CT and cached beside the frames). LIDC-IDRI-0314 is
issue 24's held-out CT (`defaults.FRAME_HELD_OUT`): refused as a source.

A case records, per frame, where windows come from, so hard negatives are drawn on purpose: the
fractures (frame index, arc index), the rib head (costovertebral joint), the rib's anterior end
(costochondral junction) and sections where another rib or bone crosses the section (a neighbour
rib near the spine, the scapula, a vertebra): where a break is most often mimicked.
The HU are stored clipped to the network's window (what it sees) in 255 steps of 4.7 HU, below CT noise.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from .. import defaults
from ..cases import case_id, is_image
from ..errors import InputError
from ..geometry import indices_to_lps
from ..io import atomic_path, read_ct
from ..ribs.frame import RibFrame
from ..ribs.frame_build import body_centre, rib_frame
from ..ribs.labels import Rib, RibLabels

CACHE_VERSION = 2  # 2: frames run FRAME_TRAIN_END_MM past the ends (1: RIB_FRAME_END_MM)
RIBS_VERSION = 3  # cached `segment_ribs` results (labels + centrelines) of the real CTs, and the real CTs' frames
#   built on them: bump when the rib step's result changes (2: grown ribs without upright strips, short
#   ribs mended across a break, c94f27e; 3: boneless anterior tails cut, ribs.tails)
PHANTOM_FIRST_SEED = 24100  # training phantoms take seeds from here on (issue 24's held-out phantoms use others)
_FRAME_CACHE = 48  # decompressed frames kept in memory (about 4 MB each)


@dataclass(frozen=True)
class FrameSource:
    """One training CT: a phantom (seed, size, slice) or a real CT (path) with fractures of `seed`."""

    kind: str  # "phantom" | "real"
    name: str  # "phantom" or the real CT's case id
    seed: int
    path: str = ""  # the real CT
    size: int = 256  # phantom: in-plane voxels
    slice_mm: float = 1.5  # phantom: slice thickness
    n_fractures: int = defaults.FRAME_REAL_FRACTURES

    @property
    def key(self) -> str:
        """Cache name: source, seed and every setting that changes the frames, and the cache version."""
        from ..phantom import GENERATOR_VERSION

        shape = (f"-{self.size}px{self.slice_mm:g}mm-g{GENERATOR_VERSION}" if self.kind == "phantom"
                 else f"-ribs{RIBS_VERSION}")
        return f"{self.name}{shape}-f{self.n_fractures}-seed{self.seed}-v{CACHE_VERSION}"

    def phantom_params(self):
        """The phantom's parameters: a realistic chest scan, its slices averaged across their thickness."""
        from ..phantom.dataset import sample_params

        return sample_params(self.seed, size=self.size, fov="thorax", n_fractures=self.n_fractures,
                             slice_mm=self.slice_mm, slice_profile=True)


def phantom_sources(n: int, size: int = 256, slice_mm: float = 1.5, n_fractures: int = 8,
                    first_seed: int = PHANTOM_FIRST_SEED) -> list[FrameSource]:
    """`n` thorax phantoms, seeds `first_seed`, `first_seed + 1`, ..."""
    return [FrameSource("phantom", "phantom", first_seed + i, size=size, slice_mm=slice_mm, n_fractures=n_fractures)
            for i in range(n)]


def check_not_held_out(name: str) -> None:
    if name in defaults.FRAME_HELD_OUT:
        raise InputError(f"{name} is issue 24's held-out CT (defaults.FRAME_HELD_OUT): it never trains a frame "
                         "model; leave it out of the real CTs.")


def real_cts(real_dir: Optional[str | Path], lidc_dir: Optional[str | Path] = None) -> list[tuple[str, Path]]:
    """(case id, path) of every CT in `real_dir` (image files and DICOM series folders), the held-out
    CTs left out, and LIDC-IDRI-0001 (`cxr.nii.gz` in `lidc_dir`, as benchmarks/real_data.py unpacks it)."""
    out = []
    if real_dir is not None:
        folder = Path(real_dir)
        if not folder.is_dir():
            raise InputError(f"real CT folder not found: {folder}; give it with --real (in a checkout: "
                             "../shared/data/real).")
        found = [p for p in sorted(folder.iterdir()) if is_image(p) or (p.is_dir() and any(p.glob("*.dcm")))]
        out += [(case_id(p), p) for p in found if case_id(p) not in defaults.FRAME_HELD_OUT]
    if lidc_dir is not None:
        lidc = Path(lidc_dir) / "cxr.nii.gz"
        if not lidc.is_file():
            raise InputError(f"LIDC-IDRI-0001 not found: {lidc} is not a file; give the folder holding cxr.nii.gz with "
                             "--lidc, or fetch it once with benchmarks/real_data.py's lidc_path().")
        out.append(("LIDC-IDRI-0001", lidc))
    return out


def real_sources(cts: Sequence[tuple[str, str | Path]], seeds: Sequence[int] = defaults.FRAME_REAL_SEEDS,
                 n_fractures: int = defaults.FRAME_REAL_FRACTURES) -> list[FrameSource]:
    """One source per real CT and seed; a held-out CT is refused."""
    for name, _ in cts:
        check_not_held_out(name)
    return [FrameSource("real", name, int(s), str(p), n_fractures=n_fractures) for name, p in cts for s in seeds]


def interleave(*groups: Sequence[FrameSource]) -> list[FrameSource]:
    """One source of each group in turn (a run that builds its cases as it goes sees real anatomy and
    phantoms from the start, not one kind for its first hour)."""
    out = []
    for i in range(max((len(g) for g in groups), default=0)):
        out += [g[i] for g in groups if i < len(g)]
    return out


# --- one case on disk --------------------------------------------------------------------------------
@dataclass
class FrameCase:
    """A source's frames in the cache: what the sampler needs (read from the .npz's `meta`), and the
    arrays, decompressed frame by frame when a window needs them."""

    key: str
    path: Path
    frames: list[dict]  # per frame: name, side, number, arc0_mm, voxel_mm, half, length, head, end, crossings
    fractures: list[dict]  # per fracture piece in a frame: frame, a, p, q, voxels, code (RibFrac; -1 unknown),
    #   own (on this rib: near the centreline, not a neighbour's break at the section's edge)
    source: dict = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame `index`'s HU (uint8 steps of the HU window, `uint8_to_hu`) and label (uint8 0/1), [a, p, q]."""
        return _frame_arrays(str(self.path), index)

    def frame(self, index: int) -> RibFrame:
        """Frame `index` as a `RibFrame` (maps to LPS and the CT), its volume the stored HU."""
        f = self.frames[index]
        with np.load(self.path) as data:
            geom = data[f"geom_{index}"]
        out = RibFrame(f["name"], f["side"], f["number"], f["voxel_mm"], f["half"], f["arc0_mm"],
                       geom[:, 0:3], geom[:, 3:6], geom[:, 6:9], geom[:, 9:12])
        out.volume = uint8_to_hu(self.arrays(index)[0])
        return out


@functools.lru_cache(maxsize=_FRAME_CACHE)
def _frame_arrays(path: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data[f"hu_{index}"], data[f"label_{index}"]


def read_case(path: Path) -> Optional[FrameCase]:
    """A cached case, or None when absent or of another cache version."""
    if not path.is_file():
        return None
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
    if meta.get("version") != CACHE_VERSION:
        return None
    return FrameCase(meta["key"], path, meta["frames"], meta["fractures"], meta["source"], meta["seconds"],
                     meta.get("notes", []))


def load_case(source: FrameSource, cache_dir: str | Path, ribs_of: Optional[Callable] = None) -> FrameCase:
    """The source's frames from `cache_dir`, built and written there (atomically) on first use."""
    path = Path(cache_dir) / f"{source.key}.npz"
    cached = read_case(path)
    if cached is not None:
        return cached
    t0 = time.perf_counter()
    image, labels, codes, ribs, notes = _source_ct(source, Path(cache_dir), ribs_of)
    arrays, frames, fractures = frame_arrays(image, labels, codes, ribs)
    meta = {"version": CACHE_VERSION, "key": source.key, "source": asdict(source), "frames": frames,
            "fractures": fractures, "seconds": round(time.perf_counter() - t0, 1), "notes": notes}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, meta=np.array(json.dumps(meta)), **arrays)
    return read_case(path)


def _source_ct(source: FrameSource, cache: Path, ribs_of: Optional[Callable]):
    """(CT with fractures, instance labels [k, j, i], {instance: RibFrac code}, ribs, notes)."""
    if source.kind == "phantom":
        from ..phantom import generate_phantom, rib_labels_from_phantom

        case = generate_phantom(source.phantom_params())
        return (case.image, sitk.GetArrayFromImage(case.fracture_labels), {f.label_id: f.code for f in case.fractures},
                rib_labels_from_phantom(case).ribs, [])
    from ..simulate import simulate_case

    check_not_held_out(source.name)
    check_not_held_out(case_id(source.path))
    image = read_ct(source.path)
    ribs = (ribs_of or cached_ribs)(image, source, cache)
    if not ribs.ribs:
        return image, np.zeros(image.GetSize()[::-1], np.uint16), {}, [], ["no ribs found"] + list(ribs.notes)
    sim = simulate_case(image, ribs, source.n_fractures, np.random.default_rng(source.seed), kinds=(1, 2, 3, 4))
    return (sim.image, sitk.GetArrayFromImage(sim.fracture_labels),
            {b.spec.label_id: b.spec.kind for b in sim.fractures}, ribs.ribs, sim.notes)


def cached_ribs(image: sitk.Image, source: FrameSource, cache: Path) -> RibLabels:
    """`segment_ribs` of a real CT, found once and kept in `cache/ribs/` (labels and centrelines)."""
    path = cache / "ribs" / f"{source.name}-v{RIBS_VERSION}.npz"
    if path.is_file():
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            labels = sitk.GetImageFromArray(data["labels"])
            lines = [data[f"line_{i}"] for i in range(len(meta["ribs"]))]
        labels.CopyInformation(image)
        return RibLabels(labels, [Rib(r["side"], r["number"], line, r["voxel_count"], r["number_confidence"])
                                  for r, line in zip(meta["ribs"], lines)], numbering=meta["numbering"],
                         notes=meta["notes"])
    from ..ribs.segment import segment_ribs

    found = segment_ribs(image)
    meta = {"numbering": found.numbering, "notes": list(found.notes),
            "ribs": [{"side": r.side, "number": r.number, "voxel_count": int(r.voxel_count),
                      "number_confidence": float(r.number_confidence)} for r in found.ribs]}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, meta=np.array(json.dumps(meta)), labels=sitk.GetArrayViewFromImage(found.labels),
                                **{f"line_{i}": r.centreline_lps for i, r in enumerate(found.ribs)})
    return found


# --- frames of one CT ---------------------------------------------------------------------------------
def frame_arrays(image: sitk.Image, labels: np.ndarray, codes: dict, ribs: Sequence[Rib]):
    """Sample every rib's frame of `image` and the fracture mask (`labels` > 0, linear, >= 0.5); returns
    (npz arrays, per-frame records, per-fracture records)."""
    centre = body_centre(ribs) if ribs else None
    pairs = [(f, r) for f, r in ((rib_frame(r, centre, end_mm=defaults.FRAME_TRAIN_END_MM), r) for r in ribs)
             if f is not None]
    frames = [f for f, _ in pairs]
    hu_array = sitk.GetArrayViewFromImage(image)
    mask = (labels > 0).astype(np.uint8)
    broken = np.argwhere(mask)[::7, ::-1]  # (i, j, k) of fracture voxels, thinned: only "is one near?" is asked
    broken_lps = indices_to_lps(image, broken) if len(broken) else np.zeros((0, 3))
    trees = [cKDTree(f.points_lps) for f in frames]
    arrays, records, fractures = {}, [], []
    for i, (frame, rib) in enumerate(pairs):
        reach = (frame.half * np.sqrt(2.0) + 2.0) * frame.voxel_mm + float(max(image.GetSpacing()))
        near = len(broken_lps) and np.isfinite(trees[i].query(broken_lps, distance_upper_bound=reach)[0]).any()
        label = (frame.sample(image, mask) >= 0.5) if near else np.zeros(frame.shape, bool)
        hu = frame.sample(image, hu_array)
        arrays[f"hu_{i}"] = hu_to_uint8(hu)
        arrays[f"label_{i}"] = label.astype(np.uint8)
        arrays[f"geom_{i}"] = np.concatenate([frame.points_lps, frame.tangent, frame.u, frame.v], axis=1)
        head, end = _ends(frame, rib)
        others = [t for j, t in enumerate(trees) if j != i]
        records.append({"name": frame.name, "side": frame.side, "number": frame.number, "voxel_mm": frame.voxel_mm,
                        "half": frame.half, "arc0_mm": frame.arc0_mm, "length": frame.shape[0],
                        "head": head, "end": end, "crossings": crossing_sections(frame, hu, others)})
        pieces, n = ndimage.label(label)
        for k, box in enumerate(ndimage.find_objects(pieces), start=1):
            idx = np.argwhere(pieces[box] == k) + [s.start for s in box]
            centre = idx.mean(axis=0)
            ijk = np.rint(frame.index_to_ct(idx[len(idx) // 2].astype(float), image)).astype(int)
            inside = np.all((ijk >= 0) & (ijk < image.GetSize()))
            instance = int(labels[tuple(ijk[::-1])]) if inside else 0
            own = float(np.hypot(*(centre[1:] - frame.half))) * frame.voxel_mm <= defaults.FRAME_OWN_FRACTURE_MM
            fractures.append({"frame": i, "a": round(float(centre[0]), 2), "p": round(float(centre[1]), 2),
                              "q": round(float(centre[2]), 2), "voxels": int(len(idx)),
                              "code": int(codes.get(instance, -1)), "own": bool(own)})
    return arrays, records, fractures


def hu_to_uint8(hu: np.ndarray) -> np.ndarray:
    """HU clipped to the network's window, in 255 steps (4.7 HU: well below CT noise); `uint8_to_hu` inverts."""
    lo, hi = defaults.HU_WINDOW
    return np.rint((np.clip(hu, lo, hi) - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def uint8_to_hu(values: np.ndarray) -> np.ndarray:
    lo, hi = defaults.HU_WINDOW
    return lo + values.astype(np.float32) * np.float32((hi - lo) / 255.0)


def _ends(frame: RibFrame, rib: Rib) -> tuple[float, float]:
    """Arc index of the rib's head (costovertebral joint) and of its anterior end (costochondral
    junction): where the centreline's end points lie in the frame (from arc lengths if off it)."""
    head_a, end_a = -frame.arc0_mm / frame.voxel_mm, (rib.length_mm - frame.arc0_mm) / frame.voxel_mm
    at = frame.lps_to_index(np.asarray(rib.centreline_lps, float)[[0, -1]])[:, 0]
    head = float(at[0]) if np.isfinite(at[0]) else head_a
    end = float(at[1]) if np.isfinite(at[1]) else min(end_a, frame.shape[0] - 1)
    return round(head, 2), round(end, 2)


def crossing_sections(frame: RibFrame, hu: np.ndarray, other_ribs: Sequence[cKDTree]) -> list[int]:
    """Sections where something crosses the rib's section: another rib's centreline within
    `FRAME_CROSSING_MM` of its centre, or bone (> BONE_HU) covering `FRAME_FOREIGN_BONE_SHARE` of the
    section beyond `FRAME_FOREIGN_BONE_MM` from the centreline (scapula, vertebra, clavicle)."""
    n = 2 * frame.half + 1
    r = np.hypot(*np.meshgrid(*(2 * [(np.arange(n) - frame.half) * frame.voxel_mm]), indexing="ij"))
    ring = r > defaults.FRAME_FOREIGN_BONE_MM
    foreign = (hu[:, ring] > defaults.BONE_HU).mean(axis=1) >= defaults.FRAME_FOREIGN_BONE_SHARE
    near = np.zeros(len(hu), bool)
    for tree in other_ribs:
        near |= tree.query(frame.points_lps, distance_upper_bound=defaults.FRAME_CROSSING_MM)[0] < np.inf
    return np.flatnonzero(foreign | near).tolist()


def load_cases(sources: Sequence[FrameSource], cache_dir: str | Path,
               log: Callable[[str], None] = print) -> list[FrameCase]:
    """Every source's case (built when not cached), in source order; cases without frames left out."""
    out = []
    for source in sources:
        case = load_case(source, cache_dir)
        log(f"frames {case.key}: {len(case.frames)} ribs, {len(case.fractures)} fracture pieces"
            + (f" ({'; '.join(case.notes)})" if case.notes else ""))
        if case.frames:
            out.append(case)
    return out

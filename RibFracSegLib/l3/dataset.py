"""L3 training data: MIP pairs with the L3 row, from phantoms or the public npz MIP format.

Public format (Kanavati's sarcopenia-ai / ct-slice-detection): an npz with `images_f` and
`images_s` (object arrays of 2D HU MIPs, head-up, rows = slices), `ydata` (dict annotator -> L3 row
per image, in image rows), `names` and `spacings` ((x, y, z) mm per image). Images are resampled
to 1 mm here (rows by z, columns by x for frontal and y for sagittal) and the annotators' rows
averaged. Phantom MIPs are written in the same format at 1 mm, already scaled to 0..255 (uint8),
with NaN rows for CTs without L3 - so both sources train through one loader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import SimpleITK as sitk

from RibFracSegLib import defaults
from RibFracSegLib.io import atomic_path
from RibFracSegLib.l3.decoding import point_to_row
from RibFracSegLib.l3.projections import compute_projections, resample_rows_cols, scale_hu
from RibFracSegLib.progress import Progress


@dataclass
class MipSample:
    """One CT's head-up MIPs at 1 mm (values 0..1) and its L3 row in mm (None: L3 not in view)."""

    name: str
    frontal: np.ndarray
    sagittal: np.ndarray
    row_mm: float | None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # of the source CT (x, y, z)


def _to_unit(image: np.ndarray) -> np.ndarray:
    """HU MIPs are clipped/scaled like ours; images already in 0..255 (8-bit MIPs) are divided."""
    image = np.asarray(image, dtype=np.float32)
    if image.min() >= 0 and image.max() <= 255:
        return image / 255.0
    return scale_hu(image)


def load_npz(path: str | os.PathLike) -> list[MipSample]:
    """Read the public MIP data-set format (or ours) into 1-mm samples."""
    with np.load(path, allow_pickle=True) as data:
        missing = {"images_f", "images_s", "ydata", "names", "spacings"} - set(data.files)
        if missing:
            raise ValueError(f"{path} lacks the keys {sorted(missing)}; expected the L3 MIP format with "
                             "images_f, images_s, ydata, names, spacings.")
        images_f, images_s, names, spacings = data["images_f"], data["images_s"], data["names"], data["spacings"]
        ydata = data["ydata"].item() if data["ydata"].dtype == object else {"y": data["ydata"]}
    rows = np.mean([np.asarray(v, dtype=float) for v in ydata.values()], axis=0)
    samples = []
    for f, s, name, sp, row in zip(images_f, images_s, names, spacings, rows):
        sx, sy, sz = (float(v) for v in sp)
        frontal = resample_rows_cols(_to_unit(f), sz, sx, defaults.L3_MIP_SPACING_MM)
        sagittal = resample_rows_cols(_to_unit(s), sz, sy, defaults.L3_MIP_SPACING_MM)
        row_mm = None if not np.isfinite(row) else float(row) * sz
        samples.append(MipSample(str(name), frontal, sagittal, row_mm, (sx, sy, sz)))
    return samples


def save_npz(path: str | os.PathLike, samples: list[MipSample]) -> Path:
    """Write samples in the public format at 1 mm (uint8 images, NaN row when L3 is not in view)."""
    def obj(arrays):
        out = np.empty(len(arrays), dtype=object)
        out[:] = arrays
        return out

    u8 = [(np.clip(m, 0, 1) * 255).round().astype(np.uint8) for s in samples for m in (s.frontal, s.sagittal)]
    rows = np.array([np.nan if s.row_mm is None else s.row_mm / defaults.L3_MIP_SPACING_MM for s in samples])
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, images_f=obj(u8[0::2]), images_s=obj(u8[1::2]),
                                ydata=np.array({"truth": rows}, dtype=object),
                                names=np.array([s.name for s in samples]),
                                spacings=np.array([[defaults.L3_MIP_SPACING_MM] * 3] * len(samples)),
                                source_spacings=np.array([s.spacing for s in samples]))
    return Path(path)


def sample_from_ct(name: str, image: sitk.Image, l3_center_lps) -> MipSample:
    """MIPs of a CT and the row of its L3 centre (None if L3 is not in the CT)."""
    proj = compute_projections(image)
    row = None if l3_center_lps is None else point_to_row(proj, l3_center_lps) * proj.spacing_mm
    return MipSample(name, proj.frontal, proj.sagittal, row, tuple(image.GetSpacing()))


def phantom_params(seed: int, fov: str | None = None, variation: bool = False):
    """Varied phantom parameters for L3 training/evaluation: FOV, spacing, orientation, size. With
    `variation`, also patient variation (phantom.variation) and short upper-abdomen scans (T10-L4,
    like a liver CT) that may or may not reach L3; its extra draws come after the regular ones."""
    from RibFracSegLib.phantom import PhantomParams

    rng = np.random.default_rng(seed)
    drawn = str(rng.choice(defaults.PHANTOM_FIELDS_OF_VIEW, p=[0.25, 0.45, 0.30]))
    fov = fov or drawn
    sxy = float(rng.uniform(1.4, 2.4))
    sz = float(rng.choice([1.0, 1.5, 2.0, 2.5, 3.0, 5.0]))
    height_mm = {"thorax": 330.0, "thorax_abdomen": 520.0, "abdomen_pelvis": 420.0}[fov] * rng.uniform(0.85, 1.1)
    nxy = int(round(rng.uniform(340, 480) / sxy))
    if variation and rng.random() < 0.35:
        fov, height_mm = "abdomen", float(rng.uniform(150, 280))
    return PhantomParams(shape=(nxy, nxy, int(round(height_mm / sz))), spacing=(sxy, sxy, sz), fov=fov,
                         n_fractures=0, orientation=str(rng.choice(defaults.PHANTOM_ORIENTATIONS)),
                         noise_hu=float(rng.uniform(5, 30)), body_scale=float(rng.uniform(0.85, 1.15)), seed=seed,
                         variation=variation)


def phantom_name(seed: int, variation: bool = False) -> str:
    params = phantom_params(seed, variation=variation)
    return f"phantom-{seed}-{params.fov}" + ("-var" if variation else "")


def phantom_samples(seeds: Iterable[int], progress: Progress | None = None, variation: bool = False) -> list[MipSample]:
    """Generate one phantom a seed and keep only its MIPs and L3 truth (the volumes are dropped)."""
    from RibFracSegLib.phantom import generate_phantom

    seeds = list(seeds)
    samples = []
    for seed in seeds:
        case = generate_phantom(phantom_params(seed, variation=variation))
        l3 = None if case.l3 is None else case.l3.center_lps
        samples.append(sample_from_ct(phantom_name(seed, variation), case.image, l3))
        if progress:
            progress(len(samples), len(seeds))
    return samples


def cached_phantom_samples(path: str | os.PathLike, seeds: list[int], progress: Progress | None = None,
                           variation: bool = False) -> list[MipSample]:
    """Phantom samples for `seeds`, read from the npz at `path` if it holds exactly them, else made and saved."""
    path = Path(path)
    names_wanted = [phantom_name(s, variation) for s in seeds]
    if path.exists():
        samples = load_npz(path)
        if [s.name for s in samples] == names_wanted:
            return samples
    samples = phantom_samples(seeds, progress, variation)
    save_npz(path, samples)
    return samples

"""Random realistic phantom parameters, and whole data sets written in the RibFrac layout.

A data set folder holds, per case, `RibFracN-image.nii.gz`, `RibFracN-label.nii.gz` (fracture
instances) and `RibFracN-vertebrae.nii.gz` (VerSe level ids), plus `ribfrac-<split>-info.csv`
(public_id,label_id,label_code with the background row, as the challenge ships it),
`ribfrac-<split>-l3.csv`, `ribfrac-<split>-vertebrae.csv` and `ribfrac-<split>-phantoms.json`
(the parameters of every case, so any case can be regenerated).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from RibFracSegLib.defaults import PHANTOM_FIELDS_OF_VIEW, PHANTOM_ORIENTATIONS
from RibFracSegLib.io import write_image, write_text
from RibFracSegLib.phantom.generate import PhantomCase, PhantomParams, generate_phantom

_FOV_EXTENT_MM = {"thorax": 330.0, "thorax_abdomen": 480.0, "abdomen_pelvis": 440.0,
                  "lumbar_pelvis": 290.0}  # lumbar_pelvis: L2 to below the sacrum, no rib in view
_MAX_FRACTURES = {"thorax": 10, "thorax_abdomen": 10, "abdomen_pelvis": 3, "lumbar_pelvis": 0}
SLICE_THICKNESSES_MM = (0.625, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5)


def sample_params(seed: int, size: int = 512, fov: Optional[str] = None, orientation: Optional[str] = None,
                  n_fractures: Optional[int] = None, slice_mm: Optional[float] = None,
                  pixel_mm: Optional[float] = None, slice_profile: bool = False) -> PhantomParams:
    """Draw a realistic scan: body size, fat, FOV, pixel size fitted to the body (0.6-1.0 mm at 512),
    slice thickness 0.625-2.5 mm, storage orientation, noise and 0-10 fractures. Fixed values win.
    `slice_profile`: slices average across their thickness (the demo, held-out sets, frame training)."""
    rng = np.random.default_rng(seed)
    fov = fov or str(rng.choice(PHANTOM_FIELDS_OF_VIEW, p=[0.5, 0.3, 0.2]))
    scale = float(rng.uniform(0.85, 1.12))
    fat = float(rng.uniform(8, 32))
    if pixel_mm is None:
        width = 2 * 170 * scale * 1.04
        pixel_mm = float(np.clip(width * rng.uniform(1.05, 1.2) / 512, 0.6, 1.0)) * 512 / size
    slice_mm = float(slice_mm or rng.choice(SLICE_THICKNESSES_MM))
    nz = int(round(_FOV_EXTENT_MM[fov] * scale * rng.uniform(0.9, 1.05) / slice_mm))
    orientation = orientation or str(rng.choice(PHANTOM_ORIENTATIONS, p=[0.4, 0.3, 0.15, 0.15]))
    if n_fractures is None:
        n_fractures = int(rng.integers(0, _MAX_FRACTURES[fov] + 1))
    return PhantomParams(
        shape=(size, size, nz), spacing=(pixel_mm, pixel_mm, slice_mm), fov=fov, body_scale=scale, fat_mm=fat,
        n_fractures=n_fractures, noise_hu=float(rng.uniform(8, 25)), orientation=orientation,
        oblique_deg=tuple(float(v) for v in rng.uniform(-12, 12, 3)),
        outside_hu=[None, -1024, -2048][int(rng.integers(0, 3))], seed=int(rng.integers(0, 2**31 - 1)),
        slice_profile=slice_profile)


def case_rows(public_id: str, case: PhantomCase) -> dict[str, list[dict]]:
    """The csv rows one case contributes to each table."""
    info = [{"public_id": public_id, "label_id": 0, "label_code": 0}]
    info += [{"public_id": public_id, "label_id": f.label_id, "label_code": f.code} for f in case.fractures]
    l3 = case.l3
    l3_row = {"public_id": public_id, "in_view": int(l3 is not None)}
    if l3 is not None:
        l3_row.update(slice_index=int(round(l3.center_ijk[2])),
                      **{f"center_{a}": round(v, 3) for a, v in zip("ijk", l3.center_ijk)},
                      **{f"center_{a}": round(v, 3) for a, v in zip("RAS", l3.center_ras)})
    verts = [{"public_id": public_id, "level": v.name, "label_id": v.label_id,
              **{f"center_{a}": round(x, 3) for a, x in zip("ijk", v.center_ijk)},
              **{f"center_{a}": round(x, 3) for a, x in zip("RAS", v.center_ras)}} for v in case.vertebrae]
    return {"info": info, "l3": [l3_row], "vertebrae": verts}


TABLE_FIELDS = {
    "info": ["public_id", "label_id", "label_code"],
    "l3": ["public_id", "in_view", "slice_index", "center_i", "center_j", "center_k",
           "center_R", "center_A", "center_S"],
    "vertebrae": ["public_id", "level", "label_id", "center_i", "center_j", "center_k",
                  "center_R", "center_A", "center_S"],
}


def csv_text(rows: Iterable[dict], fields: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_case(out_dir: Path, public_id: str, case: PhantomCase) -> None:
    write_image(case.image, out_dir / f"{public_id}-image.nii.gz")
    write_image(case.fracture_labels, out_dir / f"{public_id}-label.nii.gz")
    write_image(case.vertebra_labels, out_dir / f"{public_id}-vertebrae.nii.gz")


def write_dataset(out_dir: str | Path, n: int, seed: int, split: str = "train", first_id: int = 1,
                  overrides: Optional[dict] = None, size: int = 512,
                  on_case: Optional[Callable[[str, PhantomCase], None]] = None) -> Path:
    """Generate `n` phantoms (case i from seed `seed` and i alone) and write them in the RibFrac layout."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    overrides = dict(overrides or {})
    sample_keys = {"fov", "orientation", "n_fractures", "slice_mm", "pixel_mm", "slice_profile"}
    tables: dict[str, list[dict]] = {k: [] for k in TABLE_FIELDS}
    params_log = {}
    case_seeds = np.random.SeedSequence(seed).generate_state(n)
    for i in range(n):
        public_id = f"RibFrac{first_id + i}"
        params = sample_params(int(case_seeds[i]), size=size, **{k: v for k, v in overrides.items() if k in sample_keys})
        params = replace(params, **{k: v for k, v in overrides.items() if k not in sample_keys})
        case = generate_phantom(params)
        write_case(out_dir, public_id, case)
        for key, rows in case_rows(public_id, case).items():
            tables[key].extend(rows)
        params_log[public_id] = asdict(params)
        if on_case:
            on_case(public_id, case)
    for key, rows in tables.items():
        write_text(csv_text(rows, TABLE_FIELDS[key]), out_dir / f"ribfrac-{split}-{key}.csv")
    write_text(json.dumps(params_log, indent=1), out_dir / f"ribfrac-{split}-phantoms.json")
    return out_dir

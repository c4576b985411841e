"""Real CTs with simulated fractures, written in the RibFrac layout.

Per case `RibFracN-image.nii.gz` (the CT, same grid and pixel type) and `RibFracN-label.nii.gz`
(instances); per split `ribfrac-<split>-info.csv` (public_id,label_id,label_code with the background
row, as the phantoms and the challenge write it) and `ribfrac-<split>-simulated.json` (source CT, rib
source and every fracture's rib, type, breaks and sizes, so a case can be traced and rebuilt).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..io import InputError, read_ct, write_image, write_text
from ..phantom.dataset import TABLE_FIELDS, csv_text
from ..ribs.labels import RibLabels
from .case import SimulatedCase, simulate_case

AUTO = "auto"


def load_ribs(image: sitk.Image, ribs: str | Path) -> RibLabels:
    """Ribs of a CT: `auto` runs `RibFracSegLib.ribs.segment_ribs`; a path is a label map in our convention
    or TotalSegmentator's (centrelines then computed from the map)."""
    if str(ribs) == AUTO:
        try:
            from ..ribs import segment_ribs
        except ImportError:
            raise InputError("--ribs auto needs RibFracSegLib.ribs.segment_ribs, which this version does not "
                             "have yet; give a rib label map instead (ours: 1-12 left, 13-24 right; or "
                             "TotalSegmentator's: 92-103 left, 104-115 right).") from None
        return segment_ribs(image)
    from ..ribs.centrelines import ribs_from_label_map
    from ..ribs.label_maps import to_rib_labels

    path = Path(ribs)
    if not path.exists():
        raise InputError(f"Rib label map not found: {path}. Give a label image or `auto`.")
    return ribs_from_label_map(to_rib_labels(sitk.ReadImage(str(path))))


def case_record(public_id: str, source: str, ribs: str, case: SimulatedCase) -> dict:
    return {"public_id": public_id, "source_ct": source, "ribs": ribs, "notes": case.notes,
            "fractures": [{**asdict(b.spec), "center_lps": [round(v, 2) for v in b.center_lps],
                           "voxel_count": b.voxel_count, "fill_hu": round(b.fill_hu, 1),
                           "noise_hu": round(b.noise_hu, 2)} for b in case.fractures]}


def write_simulated(cts: Sequence[str | Path], ribs: Sequence[str | Path], out_dir: str | Path, n: int,
                    n_fractures: int, seed: int, split: str = "train", first_id: int = 1,
                    on_case: Optional[Callable[[str, SimulatedCase], None]] = None,
                    kinds: Optional[Sequence[int]] = None) -> Path:
    """`n` cases per CT (case i from `seed` and i alone), each with `n_fractures` simulated fractures
    (types drawn, or the RibFrac codes `kinds` in turn: every type present in a benchmark set)."""
    if len(ribs) not in (1, len(cts)):
        raise InputError(f"Give one rib source per CT ({len(cts)}) or a single one (`auto`); got {len(ribs)}.")
    if len(ribs) == 1 and len(cts) > 1 and str(ribs[0]) != AUTO:
        raise InputError("One rib label map cannot serve several CTs; give one per CT, in the same order, or `auto`.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(seed).generate_state(n * len(cts))
    info, records, index = [], [], 0
    for ct_path, rib_source in zip(cts, list(ribs) * len(cts) if len(ribs) == 1 else ribs):
        image = read_ct(ct_path)
        rib_labels = load_ribs(image, rib_source)
        for _ in range(n):
            public_id = f"RibFrac{first_id + index}"
            case = simulate_case(image, rib_labels, n_fractures, np.random.default_rng(int(seeds[index])), kinds)
            write_image(case.image, out_dir / f"{public_id}-image.nii.gz")
            write_image(case.fracture_labels, out_dir / f"{public_id}-label.nii.gz")
            info.append({"public_id": public_id, "label_id": 0, "label_code": 0})
            info += [{"public_id": public_id, "label_id": b.spec.label_id, "label_code": b.spec.code}
                     for b in case.fractures]
            records.append(case_record(public_id, str(ct_path), str(rib_source), case))
            index += 1
            if on_case:
                on_case(public_id, case)
    write_text(csv_text(info, TABLE_FIELDS["info"]), out_dir / f"ribfrac-{split}-info.csv")
    write_text(json.dumps(records, indent=1), out_dir / f"ribfrac-{split}-simulated.json")
    return out_dir

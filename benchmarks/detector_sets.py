"""The held-out sets of `bench_real_detector.py` and one checkpoint's figures on them.

Sets (none trains a frame model or chooses its operating point; LIDC-IDRI-0314 is issue 24's held-out CT):
- phantoms: the first 6 of the held-out seed-2024 set (realistic sampler) and 4 of seed 2025 at 2-3 mm
  slices stored PIR / ASL / RAI / ILP (`sitk.DICOMOrient`);
- simulated: LIDC-IDRI-0314 with fractures simulated into its ribs, `SIM_COPIES` copies (one seed each,
  from seed 314) x `SIM_FRACTURES`, the four RibFrac types in turn (10 of each);
- real: every CT in ../shared/data/real (the DICOM folder read by the project's reader) and LIDC-IDRI-0001,
  no known fracture: every detection is false. Seen in training: the default's classifier trained on
  LIDC-IDRI-0001 and chose its floor on CRLM-CT-1004; a frame model trains on all but LIDC-IDRI-0314.
The first stage of each case is cached per checkpoint run (`RibFracSegLib.first_stage`, .cache/bench_real/
stage1), so re-scoring at another floor or with another classifier costs no network run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench_real"
REAL = ROOT.parent / "shared" / "data" / "real"
PERMUTED = [(2.0, "PIR"), (2.5, "ASL"), (3.0, "RAI"), (2.5, "ILP")]
SIM_COPIES, SIM_FRACTURES, SIM_SEED = 4, 10, 314
SIM_KINDS = (1, 2, 3, 4)  # displaced, non-displaced, buckle, segmental in turn
STAGES = ("stage1", "stage2")


def permuted_phantoms(folder: Path) -> Path:
    """4 held-out phantoms (seed 2025) at 2-3 mm slices, each stored in another axis order."""
    from RibFracSegLib.io import write_image
    from RibFracSegLib.phantom import GENERATOR_VERSION
    from RibFracSegLib.phantom.dataset import write_dataset

    done = f"generator {GENERATOR_VERSION}"  # another generator: the set is made again
    if (folder / "done").is_file() and (folder / "done").read_text() == done:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    info = ["public_id,label_id,label_code"]
    for n, (slice_mm, orientation) in enumerate(PERMUTED):
        tmp = folder / "tmp"
        write_dataset(tmp, 1, 2025 + n, split="test", first_id=2001 + n,
                      overrides={"fov": "thorax", "slice_mm": slice_mm, "orientation": "LPS", "slice_profile": True})
        pid = f"RibFrac{2001 + n}"
        for role in ("image", "label"):
            write_image(sitk.DICOMOrient(sitk.ReadImage(str(tmp / f"{pid}-{role}.nii.gz")), orientation),
                        folder / f"{pid}-{role}.nii.gz")
        info += (tmp / "ribfrac-test-info.csv").read_text().splitlines()[1:]
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    (folder / "ribfrac-test-info.csv").write_text("\n".join(info) + "\n")
    (folder / "done").write_text(done)
    return folder


def simulated_0314(folder: Path) -> Path:
    """LIDC-IDRI-0314 with SIM_COPIES x SIM_FRACTURES simulated fractures, the four types in turn. The
    info table gives every fracture its true type (the simulator records some as -1, undefined, as
    RibFrac's labels do; `ribfrac-test-info.recorded` keeps that table): types are scored on all."""
    import json

    from RibFracSegLib.simulate.dataset import write_simulated

    info = folder / "ribfrac-test-info.csv"
    if not (folder / "ribfrac-test-simulated.json").is_file():
        write_simulated([REAL / "LIDC-IDRI-0314.nii.gz"], ["auto"], folder, SIM_COPIES, SIM_FRACTURES,
                        seed=SIM_SEED, split="test", first_id=3141, kinds=SIM_KINDS)
    if not (folder / "ribfrac-test-info.recorded").is_file():
        (folder / "ribfrac-test-info.recorded").write_text(info.read_text())
        rows = ["public_id,label_id,label_code"]
        for case in json.loads((folder / "ribfrac-test-simulated.json").read_text()):
            rows += [f"{case['public_id']},0,0"] + [f"{case['public_id']},{f['label_id']},{f['kind']}"
                                                    for f in case["fractures"]]
        info.write_text("\n".join(rows) + "\n")
    return folder


def joined(folder: Path, sources: list[Path], only: Optional[set[str]] = None) -> Path:
    """A folder of links to the labelled cases (all, or those named in `only`) and info tables of
    several RibFrac-layout folders. Links only added (a benchmark running beside this one may be reading
    it), except for a subset (`only`), whose folder is rebuilt."""
    folder.mkdir(parents=True, exist_ok=True)
    if only is not None:
        for old in folder.iterdir():
            old.unlink()
    links = [(f.name, f) for src in sources for f in list(src.glob("*-image.nii.gz")) + list(src.glob("*-label.nii.gz"))
             if only is None or f.name.rsplit("-", 1)[0] in only]
    links += [(f"info-{n}.csv", src / "ribfrac-test-info.csv") for n, src in enumerate(sources)]
    for name, target in links:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(target.resolve())
    return folder


def real_cases() -> list[tuple[str, Path]]:
    """Every real CT in ../shared/data/real (LIDC-IDRI-0314 first) and LIDC-IDRI-0001."""
    from real_data import lidc_path
    from RibFracSegLib.cases import case_id, is_image

    found = [p for p in sorted(REAL.iterdir()) if is_image(p) or (p.is_dir() and any(p.glob("*.dcm")))]
    cases = sorted(((case_id(p), p) for p in found), key=lambda c: c[0] != "LIDC-IDRI-0314")
    return cases + [("LIDC-IDRI-0001", lidc_path("cxr.nii.gz"))]


def labelled_sets(names: list[str]) -> dict[str, Path]:
    from bench_default_checkpoint import ensure_heldout

    sets = {}
    if "simulated" in names:
        sets["simulated"] = simulated_0314(ROOT / ".cache" / f"sim_0314_k{SIM_COPIES}x{SIM_FRACTURES}")
    if "phantoms" in names:  # one FROC over both held-out phantom sets
        sets["phantoms"] = joined(CACHE / "gt_phantoms", [ensure_heldout(ROOT / ".cache" / "heldout_6", 6, 2024),
                                                          permuted_phantoms(ROOT / ".cache" / "heldout_perm")])
    return sets


@dataclass
class SetScore:
    """One checkpoint on one set, per stage: the evaluation report, recall per type at the operating
    point (found, total), detections per case and first-stage seconds per case."""

    reports: dict = field(default_factory=dict)
    by_type: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)


def score_set(tag: str, name: str, cases: list[tuple[str, Path]], gt: Optional[Path], ckpt, spec,
              only: Optional[set[str]] = None, log=print) -> Optional[SetScore]:
    """Both stages of `ckpt` on every case (first stage cached), predictions in RibFrac layout under
    CACHE/pred/<run>-floor<f>/<name>/<stage>, scored against `gt` when given; `only`: those cases (None when none is here)."""
    from RibFracSegLib.evaluation import evaluate_cases, match_dirs, recall_by_type
    from RibFracSegLib.export import write_case_tables
    from RibFracSegLib.first_stage import run_case
    from RibFracSegLib.io import read_ct

    cases = [c for c in cases if only is None or c[0] in only]
    if not cases:
        return None
    from RibFracSegLib.first_stage import run_key

    floor = ckpt.thresholds.get("min_confidence", 0.0)  # per run and floor: two benchmarks at once never share a folder
    out = {s: CACHE / "pred" / f"{run_key(ckpt)}-floor{floor:g}" / name / s for s in STAGES}
    for folder in out.values():
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
    score = SetScore()
    for case, path in cases:
        image = read_ct(path)
        stages = dict(zip(STAGES, run_case(ckpt, spec, image, case, CACHE / "stage1", find_ribs=True)))
        for stage, result in stages.items():
            sitk.WriteImage(sitk.Cast(result.instances, sitk.sitkUInt16), str(out[stage] / f"{case}.nii.gz"), True)
            write_case_tables(case, result.detections, out[stage])
            score.counts.setdefault(stage, {})[case] = len(result.detections)
        score.seconds[case] = stages["stage1"].timings_s.get("total", 0.0)
        log(f"  {tag} {name} {case}: {len(stages['stage1'].detections)} -> {len(stages['stage2'].detections)} "
            f"detections; first stage {score.seconds[case]:.1f} s")
    if gt is not None:
        if only is not None:  # score only the cases run
            gt = joined(out["stage1"].parent / "gt", [gt], {c for c, _ in cases})
        for stage, folder in out.items():
            matched = match_dirs(folder, gt)
            score.reports[stage] = evaluate_cases(matched)
            score.by_type[stage] = recall_by_type(matched, 0.0)
    return score

"""The second stage's training data: the corpus harvest (`candidates/corpus.py`), the crops cut from it
and `train-candidates` reading both. A known network (probability from the voxel's HU) on small CTs
makes every detection predictable: a bone block is found, a fracture in soft tissue is missed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from RibFracSegLib.candidates import corpus as C
from RibFracSegLib.candidates.dataset import cached_crops
from RibFracSegLib.candidates.harvest import Harvest
from RibFracSegLib.candidates.operating import curve
from RibFracSegLib.checkpoint import load_checkpoint, save_checkpoint
from RibFracSegLib.cli import train_candidates
from RibFracSegLib.errors import InputError
from RibFracSegLib.io import write_image
from RibFracSegLib.networks import build_network

from inference_helpers import checkpoint

torch.set_num_threads(1)
BLOCK = (slice(20, 28), slice(6, 14), slice(34, 42))  # (k, j, i): an 8 mm bone cube off the centre


def _ct(folder: Path, name: str, bone: bool, truth_at: tuple[slice, ...]) -> tuple[Path, sitk.Image]:
    """A 48 mm cube of fat in air, with the bone cube or without, and one true fracture at `truth_at`."""
    array = np.full((48, 48, 48), -1000, np.int16)
    array[:, 2:46, 2:46] = -150
    if bone:
        array[BLOCK] = 1000
    labels = np.zeros(array.shape, np.uint8)
    labels[truth_at] = 1
    image, label = sitk.GetImageFromArray(array), sitk.GetImageFromArray(labels)
    path = folder / f"{name}-image.nii.gz"
    write_image(image, path)
    return path, label


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """(corpus folder, first-stage checkpoint): val/ holds a CT where the network found its fracture
    and one where it ran and found nothing; train/ a found one and a truth-only one."""
    root = tmp_path_factory.mktemp("corpus")
    ckpt = save_checkpoint(root / "pointwise.pt", checkpoint("test_pointwise"))
    harvest = C.Harvester(root / "corpus", ckpt)
    soft = (slice(30, 36), slice(30, 36), slice(6, 12))  # a fracture in fat: no bone, no detection
    for split in ("train", "val"):
        path, label = _ct(root, f"{split}-hit", True, BLOCK)
        harvest(split, f"{split}-hit", path, "phantom", label, {1: 2})
    path, label = _ct(root, "val-missed", False, soft)
    harvest("val", "val-missed", path, "phantom", label, {1: 2})
    path, label = _ct(root, "train-truth-only", False, soft)
    harvest("train", "train-truth-only", path, "phantom", label, {1: 3}, run_network=False)
    return root / "corpus", ckpt


def _read(folder: Path, case: str) -> Harvest:
    return Harvest.from_dict(json.loads((folder / f"{case}.json").read_text()))


def test_harvest_records_whether_the_network_ran(corpus):
    folder, _ = corpus
    hit, missed, truth_only = _read(folder / "val", "val-hit"), _read(folder / "val", "val-missed"), \
        _read(folder / "train", "train-truth-only")
    assert [(c.truth, c.kind) for c in hit.candidates] == [(1, 2)] and hit.network_run is True
    assert (len(missed.candidates), len(missed.truths), missed.network_run) == (0, 1, True)
    assert (len(truth_only.candidates), len(truth_only.truths), truth_only.network_run) == (0, 1, False)


def test_validation_counts_a_ct_where_the_network_missed_everything(corpus):
    folder, _ = corpus
    model = build_network("candidate_cnn3d", width=4).eval()
    scans = train_candidates.validation_scans(folder / "val", model, 32, 1.25)
    assert [(len(p), n) for p, _, n in scans] == [(1, 1), (0, 1)]  # val-hit, val-missed
    assert curve(scans)[0].recall == pytest.approx(0.5)  # one of the two fractures found


def test_a_harvest_from_before_the_record_is_filled_in_by_the_corpus_and_refused_by_training(corpus, tmp_path):
    folder, ckpt = corpus
    old = json.loads((folder / "val" / "val-missed.json").read_text())
    del old["network_run"]
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "old.json").write_text(json.dumps(old))
    with pytest.raises(SystemExit, match="old.json does not say whether the network ran"):
        train_candidates.validation_scans(tmp_path / "val", build_network("candidate_cnn3d", width=4), 32, 1.25)
    harvest = C.Harvester(tmp_path, ckpt)
    assert harvest("val", "old", Path(old["image"]), "phantom").network_run is True  # read back, not run again
    assert json.loads((tmp_path / "val" / "old.json").read_text())["network_run"] is True


class _Recorder:
    """Stands for a Harvester: records which harvests a corpus command asks for."""

    def __init__(self, out: Path) -> None:
        self.out, self.calls = out, []

    def __call__(self, split, case, image_path, source, truth=None, kinds=None, run_network=True, ribs=""):
        self.calls.append((case, run_network))


def test_a_second_networks_more_simulated_copies_carry_its_suffix(tmp_path):
    lidc = tmp_path / "lidc"
    lidc.mkdir()
    for name in ("cxr.nii.gz", "mask.nii.gz"):
        (lidc / name).write_bytes(b"")  # only their existence is read: the copies below are already made
    images = tmp_path / "images" / "LIDC-IDRI-0001"
    images.mkdir(parents=True)
    for name in ("LIDC-IDRI-0001-simx0", "LIDC-IDRI-0001-simx1"):
        write_image(sitk.Image([4, 4, 4], sitk.sitkInt16), images / f"{name}-image.nii.gz")
        write_image(sitk.Image([4, 4, 4], sitk.sitkUInt8), images / f"{name}-label.nii.gz")
        (images / f"{name}-kinds.json").write_text("{}")
    recorder = _Recorder(tmp_path)
    C.real_split(recorder, "train", C.RealData(tmp_path / "nowhere", lidc), suffix="-ft1",
                 more=C.MoreSimulated(copies=2))
    # the truth-only copies (-simI) do not depend on the network: a second network skips them
    assert recorder.calls == [("LIDC-IDRI-0001-ft1", True), ("LIDC-IDRI-0001-simx0-ft1", True),
                              ("LIDC-IDRI-0001-simx1-ft1", True)]


def test_the_real_ct_folders_are_options_and_a_missing_one_is_named(tmp_path, capsys):
    with pytest.raises(InputError, match=r"CRLM-CT-1004 not found: .*nowhere.*--real"):
        C.RealData(tmp_path / "nowhere", tmp_path).cases("val")
    with pytest.raises(InputError, match=r"LIDC-IDRI-0001 not found: .*cxr.nii.gz.*--lidc"):
        C.RealData(tmp_path, tmp_path / "nowhere").cases("train")
    assert C.main(["--out", str(tmp_path / "c"), "--only", "val", "--real", str(tmp_path / "nowhere")]) == 2
    assert "CRLM-CT-1004 not found" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # refused before any network ran


def _train(corpus_dir: Path, ckpt: Path, out: Path, *extra: str) -> dict:
    parser = argparse.ArgumentParser()
    train_candidates.add_arguments(parser)
    args = parser.parse_args(["--corpus", str(corpus_dir), "--checkpoint", str(ckpt), "--out", str(out),
                              "--steps", "2", "--batch", "4", "--width", "4", *extra])
    assert train_candidates.run(args) == 0
    return load_checkpoint(out).candidate_classifier


def test_train_candidates_options_reach_the_written_classifier(corpus, tmp_path):
    folder, ckpt = corpus
    section = _train(folder, ckpt, tmp_path / "a.pt", "--consistency", "2", "--seed", "3")
    prov = section["provenance"]
    assert section["hparams"] == {"width": 4} and (prov["steps"], prov["batch"], prov["seed"]) == (2, 4, 3)
    assert (prov["jitter"], prov["consistency"]) == (True, 2.0)  # --consistency implies jitter
    assert prov["val_cases"] == ["val-hit", "val-missed"]
    again = _train(folder, ckpt, tmp_path / "b.pt", "--jitter", "--init", str(tmp_path / "a.pt"), "--lr", "1e-12")
    assert (again["provenance"]["jitter"], again["provenance"]["consistency"]) == (True, 0.0)
    learned = [n for n in again["state_dict"] if not n.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    for name in learned:  # started from a.pt's classifier (at lr 1e-12 its weights do not move)
        assert torch.allclose(again["state_dict"][name], section["state_dict"][name], atol=1e-6), name


def test_crops_are_cut_again_when_a_case_is_added(corpus, tmp_path):
    folder, ckpt = corpus
    work = tmp_path / "corpus"
    for split in ("train", "val"):
        (work / split).mkdir(parents=True)
        for path in (folder / split).glob("*.json"):
            if path.stem != "train-truth-only":
                (work / split / path.name).write_text(path.read_text())
    first = cached_crops(work / "train", work / "crops-train.npz")
    assert sorted(set(first.cases.tolist())) == ["train-hit"]
    assert _train(work, ckpt, tmp_path / "a.pt")["provenance"]["train_cases"] == ["train-hit"]
    (work / "train" / "train-truth-only.json").write_text((folder / "train" / "train-truth-only.json").read_text())
    assert _train(work, ckpt, tmp_path / "b.pt")["provenance"]["train_cases"] == ["train-hit", "train-truth-only"]
    written = (work / "crops-train.npz").stat().st_mtime_ns
    again = cached_crops(work / "train", work / "crops-train.npz")  # same inputs: read back, not cut again
    assert (work / "crops-train.npz").stat().st_mtime_ns == written
    assert sorted(set(again.cases.tolist())) == ["train-hit", "train-truth-only"]

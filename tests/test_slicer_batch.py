"""Batch use from Slicer's Python console: files in, per-case .seg.nrrd/.mrk.json/.tsv out."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from slicer_scene import import_module_file, make_scene

module = import_module_file()

from RibFracSegLib.geometry import ras_to_index  # noqa: E402
from RibFracSegLogicLib import probe, selftest  # noqa: E402
from RibFracSegLogicLib.batch import SUMMARY_NAME  # noqa: E402
from RibFracSegLogicLib.files import load_markups, load_segmentation, load_table  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    checkpoint = str(probe.write_probe_checkpoint(root / "probe.pt"))
    cases = {"lps-image": selftest.phantom_case("LPS", seed=3), "obl-image": selftest.phantom_case("oblique", seed=4)}
    sitk.WriteImage(cases["lps-image"].image, str(root / "lps-image.nii.gz"))
    sitk.WriteImage(cases["obl-image"].image, str(root / "obl-image.nrrd"))
    (root / "broken.nii.gz").write_bytes(b"not an image")
    holder = make_scene()
    before = holder.node_ids()
    logic = module.RibFracSegLogic(scene=holder.scene)
    inputs = [root / "lps-image.nii.gz", root / "broken.nii.gz", root / "obl-image.nrrd"]
    reports = logic.batch(inputs, root / "out", checkpoint=checkpoint, device="cpu")
    return {"root": root, "cases": cases, "reports": reports, "holder": holder, "before": before}


def test_every_case_reported_and_the_bad_one_does_not_stop_the_batch(batch):
    reports = batch["reports"]
    assert [r.case for r in reports] == ["lps", "broken", "obl"]  # the library's case ids (RibFracSegLib.cases)
    assert [r.status for r in reports] == ["done", "failed", "done"]
    expected = [len(batch["cases"]["lps-image"].truth_ras), 0, len(batch["cases"]["obl-image"].truth_ras)]
    assert expected[0] >= 2 and expected[2] >= 2  # the phantoms still hold something to find
    assert [r.n_fractures for r in reports] == expected
    assert reports[0].error is None and reports[2].error is None
    assert "Cannot read" in reports[1].error
    summary = (batch["root"] / "out" / SUMMARY_NAME).read_text(encoding="utf-8").splitlines()
    assert summary[0].split("\t") == ["case", "input", "status", "n_fractures", "seconds", "error"]
    assert [line.split("\t")[3] for line in summary[1:]] == [str(n) for n in expected]


def test_batch_leaves_the_scene_as_it_found_it(batch):
    assert batch["holder"].node_ids() == batch["before"]


def test_written_files_hold_the_truth(batch):
    out = batch["root"] / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{c}{ext}" for c in ("lps", "obl") for ext in (".seg.nrrd", ".mrk.json", ".tsv", ".schema.tsv")]
        + [SUMMARY_NAME])
    scene = make_scene().scene
    for name, case in batch["cases"].items():
        stem = name.removesuffix("-image")
        seg = load_segmentation(scene, out / f"{stem}.seg.nrrd")
        points = load_markups(scene, out / f"{stem}.mrk.json")
        table = load_table(scene, out / f"{stem}.tsv")
        n_truth = len(case.truth_ras)
        assert seg.GetSegmentation().GetNumberOfSegments() == points.GetNumberOfControlPoints() == n_truth
        assert table.GetNumberOfRows() == n_truth
        truth = [ras_to_index(case.image, c) for c in case.truth_ras.values()]
        for n in range(n_truth):
            found = ras_to_index(case.image, points.GetNthControlPointPositionVector(n))
            assert min(np.abs(np.subtract(found, t)).max() for t in truth) <= 0.5

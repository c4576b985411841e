"""`ribfracseg simulate-fractures`: RibFrac-layout cases the training reader takes as they are."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib.cli import main
from RibFracSegLib.phantom import PhantomParams, generate_phantom
from RibFracSegLib.ribs.label_maps import phantom_to_rib_labels
from RibFracSegLib.cases import labelled_cases as find_cases
from RibFracSegLib.training.dataset import build_volume


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real")
    case = generate_phantom(PhantomParams(shape=(180, 150, 70), spacing=(2.0, 2.0, 2.0), fov="thorax", n_fractures=0,
                                          orientation="LPI", seed=8))
    sitk.WriteImage(case.image, str(folder / "ct.nii.gz"))
    ours = phantom_to_rib_labels(case.rib_labels)
    ts = sitk.GetArrayFromImage(ours).astype(np.uint8)
    ts[ts > 0] += 91  # TotalSegmentator ids 92-115
    ts_img = sitk.GetImageFromArray(ts)
    ts_img.CopyInformation(ours)
    sitk.WriteImage(ts_img, str(folder / "totalseg.nii.gz"))
    return folder, case


def test_writes_ribfrac_layout_from_totalsegmentator_labels(inputs, tmp_path, capsys):
    folder, case = inputs
    out = tmp_path / "sim"
    rc = main(["simulate-fractures", str(folder / "ct.nii.gz"), "--ribs", str(folder / "totalseg.nii.gz"),
               "--out", str(out), "--n", "2", "--fractures", "3", "--seed", "4", "--first-id", "7"])
    assert rc == 0
    assert "RibFrac7: 3 fractures" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "ribfrac-train-info.csv")))
    assert [r["public_id"] for r in rows] == ["RibFrac7"] * 4 + ["RibFrac8"] * 4
    assert [int(r["label_id"]) for r in rows[:4]] == [0, 1, 2, 3]
    assert all(int(r["label_code"]) in (-1, 1, 2, 3, 4) for r in rows if r["label_id"] != "0")
    log = json.loads((out / "ribfrac-train-simulated.json").read_text())
    assert [len(c["fractures"]) for c in log] == [3, 3]
    cases = find_cases(out)
    assert [c.public_id for c in cases] == ["RibFrac7", "RibFrac8"]
    image = sitk.ReadImage(str(cases[0].image))
    assert image.GetDirection() == case.image.GetDirection() and image.GetPixelID() == case.image.GetPixelID()
    volume = build_volume(cases[0])
    assert len(volume.centroids) == 3 and volume.labels.max() == 3
    # two cases from one CT get different fractures
    a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(c.label))) for c in cases)
    assert not np.array_equal(a, b)


def test_auto_and_bad_ribs_say_what_to_do(inputs, tmp_path, capsys):
    folder, _ = inputs
    rc = main(["simulate-fractures", str(folder / "ct.nii.gz"), "--ribs", str(folder / "missing.nii.gz"),
               "--out", str(tmp_path / "x")])
    assert rc == 2 and "Rib label map not found" in capsys.readouterr().err
    rc = main(["simulate-fractures", str(folder / "ct.nii.gz"), str(folder / "ct.nii.gz"), "--ribs",
               str(folder / "totalseg.nii.gz"), "--out", str(tmp_path / "x")])
    assert rc == 2 and "one per CT" in capsys.readouterr().err


def test_auto_ribs_come_from_segment_ribs(inputs, tmp_path):
    folder, case = inputs
    out = tmp_path / "auto"
    assert main(["simulate-fractures", str(folder / "ct.nii.gz"), "--ribs", "auto", "--out", str(out),
                 "--fractures", "2", "--seed", "1"]) == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "RibFrac1-label.nii.gz")))
    truth = sitk.GetArrayFromImage(phantom_to_rib_labels(case.rib_labels))
    for label_id in (1, 2):  # each break on bone of one true rib
        hit = np.unique(truth[(labels == label_id) & (truth > 0)])
        assert len(hit) == 1, hit

"""`ribfracseg phantom`: RibFrac layout, truth tables, byte-identical reruns."""

from __future__ import annotations

import csv
import json

import numpy as np
import SimpleITK as sitk

from RibFracSegLib.cli import main
from RibFracSegLib.phantom.dataset import sample_params

ARGS = ["--n", "2", "--seed", "3", "--size", "96", "--pixel-mm", "3.6", "--slice-mm", "5", "--split", "val",
        "--first-id", "501"]


def run(out):
    assert main(["phantom", "--out", str(out), *ARGS]) == 0
    return out


def read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_layout_and_tables(tmp_path):
    out = run(tmp_path / "a")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["RibFrac501-image.nii.gz", "RibFrac501-label.nii.gz", "RibFrac501-vertebrae.nii.gz",
                     "RibFrac502-image.nii.gz", "RibFrac502-label.nii.gz", "RibFrac502-vertebrae.nii.gz",
                     "ribfrac-val-info.csv", "ribfrac-val-l3.csv", "ribfrac-val-phantoms.json",
                     "ribfrac-val-vertebrae.csv"]
    info = read_csv(out / "ribfrac-val-info.csv")
    assert list(info[0]) == ["public_id", "label_id", "label_code"]
    for pid in ("RibFrac501", "RibFrac502"):
        rows = [r for r in info if r["public_id"] == pid]
        assert rows[0]["label_id"] == "0" and rows[0]["label_code"] == "0"
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{pid}-label.nii.gz")))
        ids = sorted(int(r["label_id"]) for r in rows[1:])
        assert ids == list(range(1, labels.max() + 1))
        assert all(int(r["label_code"]) in (-1, 1, 2, 3, 4) for r in rows[1:])
        image = sitk.ReadImage(str(out / f"{pid}-image.nii.gz"))
        assert image.GetPixelID() == sitk.sitkInt16
        params = json.loads((out / "ribfrac-val-phantoms.json").read_text())[pid]
        assert np.allclose(image.GetSpacing(), params["spacing"], atol=1e-4)
    for row in read_csv(out / "ribfrac-val-l3.csv"):
        if row["in_view"] == "1":
            vert = sitk.ReadImage(str(out / f"{row['public_id']}-vertebrae.nii.gz"))
            ijk = [int(round(float(row[f"center_{a}"]))) for a in "ijk"]
            assert vert[ijk] == 22


def test_same_seed_gives_identical_files(tmp_path):
    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    for f in a.iterdir():
        assert f.read_bytes() == (b / f.name).read_bytes(), f.name
    assert main(["phantom", "--out", str(tmp_path / "c"), *ARGS[:2], "--seed", "4", *ARGS[4:]]) == 0
    assert (a / "RibFrac501-image.nii.gz").read_bytes() != (tmp_path / "c" / "RibFrac501-image.nii.gz").read_bytes()


def test_sampled_parameters_are_realistic():
    for seed in range(40):
        p = sample_params(seed)
        assert 0.6 <= p.spacing[0] <= 1.0 and 0.6 <= p.spacing[2] <= 2.5
        assert 0 <= p.n_fractures <= 10
        assert 250 <= p.shape[2] * p.spacing[2] <= 560


def test_slice_profile_is_asked_for_and_recorded(tmp_path):
    """`--slice-profile`: the same scans with slices averaged across their 5 mm (phantom.generate.sub_slices),
    recorded in the parameters table so each case can be made again."""
    a = run(tmp_path / "a")
    assert main(["phantom", "--out", str(tmp_path / "p"), *ARGS, "--slice-profile"]) == 0
    params = {d: json.loads((tmp_path / d / "ribfrac-val-phantoms.json").read_text()) for d in ("a", "p")}
    assert [p["slice_profile"] for p in params["a"].values()] == [False, False]
    assert [p["slice_profile"] for p in params["p"].values()] == [True, True]
    assert all({k: v for k, v in params["a"][pid].items() if k != "slice_profile"} ==
               {k: v for k, v in params["p"][pid].items() if k != "slice_profile"} for pid in params["a"])
    read = lambda d, role: sitk.GetArrayFromImage(sitk.ReadImage(str(d / f"RibFrac501-{role}.nii.gz")))  # noqa: E731
    labels = [read(d, "vertebrae") for d in (a, tmp_path / "p")]
    assert np.array_equal(*labels)  # the truth: the slices' centres
    images = [read(d, "image") for d in (a, tmp_path / "p")]
    assert np.abs(images[0].astype(float) - images[1]).mean() > 5

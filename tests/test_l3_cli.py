"""`ribfracseg l3` writes JSON, CSV and PNGs per CT and survives a bad input; `train-l3` reads the npz format."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from RibFracSegLib.checkpoint import load_checkpoint
from RibFracSegLib.cli import main
from RibFracSegLib.io import read_ct
from RibFracSegLib.l3.check import locate_l3_checked
from RibFracSegLib.phantom import PhantomParams, generate_phantom


@pytest.fixture(autouse=True, scope="module")
def _threads():
    torch.set_num_threads(2)


def test_l3_cli_batch(tmp_path):
    case = generate_phantom(PhantomParams(shape=(160, 160, 170), spacing=(2.3, 2.3, 2.5), fov="abdomen_pelvis",
                                          n_fractures=0, orientation="RAS", seed=777001))
    ct = tmp_path / "patient1.nii.gz"
    sitk.WriteImage(case.image, str(ct))
    (tmp_path / "heights.csv").write_text("name,height_m\npatient1,1.60\n")
    out = tmp_path / "out"
    listing = tmp_path / "cts.txt"  # a missing CT named in a list fails alone (given as an argument: refused)
    listing.write_text(f"{ct}\n{tmp_path / 'missing.nii.gz'}\n")
    code = main(["l3", str(listing), "--out", str(out), "--heights", str(tmp_path / "heights.csv")])
    assert code == 1  # one CT failed, the other was done
    result = json.loads((out / "patient1.l3.json").read_text())
    assert result["l3"]["in_view"] is True
    assert abs(result["l3"]["z_mm"] - case.l3.center_lps[2]) < 6
    assert abs(result["l3"]["slice_index"] - case.l3.center_ijk[2]) <= 2.5
    body = result["body_composition"]
    assert body["smi_cm2_per_m2"] == pytest.approx(body["muscle_cm2"] / 1.6**2, abs=0.02)
    rows = list(csv.DictReader((out / "l3.csv").open()))
    assert [r["name"] for r in rows] == ["patient1", "missing"]
    # the count checks the network: the CSV and the JSON carry the checked answer's source, review and level
    checked = locate_l3_checked(read_ct(ct))
    assert rows[0]["l3_source"] == result["l3"]["l3_source"] == checked.source
    assert {k: result["l3"][k] for k in checked.row()} == checked.row()  # source, review, the count and its anchor
    assert result["l3"]["z_mm"] == pytest.approx(checked.z_mm, abs=0.01)
    assert rows[0]["review"] == str(result["l3"]["review"]) and "review_reason" in rows[0]
    assert (result["l3"]["review"] is True) == bool(result["l3"]["review_reason"])
    assert (out / "patient1.l3-spine.png").stat().st_size > 0
    assert float(rows[0]["muscle_cm2"]) == pytest.approx(body["muscle_cm2"]) and rows[0]["height_m"] == "1.6"
    assert "not found" in rows[1]["error"]
    for png in ("patient1.l3-slice.png", "patient1.l3-mips.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_l3_on_public_npz_format(tmp_path):
    rng = np.random.default_rng(0)
    images, rows = [], []
    for _ in range(4):  # HU MIPs at 0.8 x 2.5 mm with a bright "vertebra" band at the L3 row
        img = np.full((120, 250), -900, np.int16)
        row = int(rng.integers(40, 80))
        img[:, 110:140] = 300
        img[row - 2:row + 3, 100:150] = 1200
        images.append(img)
        rows.append(row)
    objects = np.empty(4, dtype=object)
    objects[:] = images
    npz = tmp_path / "l3mips.npz"
    np.savez(npz, images_f=objects, images_s=objects, ydata=np.array({"A": np.array(rows, float)}, dtype=object),
             names=np.array([f"c{i}" for i in range(4)]), spacings=np.array([[0.8, 0.8, 2.5]] * 4))
    out = tmp_path / "l3.pt"
    assert main(["train-l3", "--npz", str(npz), "--val-fraction", "0.25", "--out", str(out), "--iterations", "3",
                 "--batch-size", "2", "--threads", "1"]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.arch == "l3_unet2d" and ckpt.provenance["n_train"] == 3 and ckpt.provenance["n_val"] == 1
    assert ckpt.preprocessing["mip_hu_range"] == [100.0, 1500.0] and "min_confidence" in ckpt.thresholds
    assert (tmp_path / "l3.state").exists()  # resumable


def test_train_l3_fine_tunes_and_reports_real_cts(tmp_path, capsys):
    from RibFracSegLib.cli.train_l3 import real_samples
    from RibFracSegLib.shipped import shipped_model

    case = generate_phantom(PhantomParams(shape=(96, 96, 60), spacing=(3.5, 3.5, 5.0), fov="abdomen_pelvis",
                                          n_fractures=0, seed=777002))
    ct = tmp_path / "ct1.nii.gz"
    sitk.WriteImage(case.image, str(ct))
    z = case.l3.center_lps[2]
    with_l3, without = real_samples([f"{ct}={z}", str(ct)])
    assert with_l3.name == "ct1" and without.row_mm is None
    top_z = case.image.TransformIndexToPhysicalPoint((0, 0, case.image.GetSize()[2] - 1))[2]  # LPS storage
    assert with_l3.row_mm == pytest.approx(top_z - z, abs=0.01)
    npz = tmp_path / "one.npz"
    from RibFracSegLib.l3.dataset import save_npz

    save_npz(npz, [with_l3, with_l3])
    out = tmp_path / "ft.pt"
    assert main(["train-l3", "--npz", str(npz), "--val-fraction", "0.5", "--out", str(out), "--iterations", "2",
                 "--batch-size", "1", "--threads", "1", "--init", str(shipped_model("l3")), "--p-short", "1",
                 "--p-gain", "1", "--p-blobs", "1", "--val-ct", f"{ct}={z}"]) == 0
    printed = capsys.readouterr().out
    assert "fine-tuning from" in printed and "real ct1: row" in printed
    ckpt = load_checkpoint(out)
    assert ckpt.provenance["config"]["init"] == str(shipped_model("l3"))
    assert ckpt.provenance["config"]["p_short"] == 1.0 and ckpt.provenance["data"]["real_reported"]

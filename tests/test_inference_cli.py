"""`ribfracseg segment` end to end: RibFrac submission the evaluator scores, summaries, resume, bad inputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from RibFracSegLib import geometry
from RibFracSegLib.checkpoint import save_checkpoint
from RibFracSegLib.cli import main
from RibFracSegLib.evaluation import evaluate_dirs
from RibFracSegLib.phantom import PhantomParams, generate_phantom

from test_inference_phantom import MARKER_CKPT, _marked

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ribfrac")
    (root / "ct").mkdir()
    (root / "gt").mkdir()
    rows = ["public_id,label_id,label_code"]
    for n, orientation in ((1, "RAS"), (2, "oblique")):
        case = generate_phantom(PhantomParams(shape=(112, 112, 64), spacing=(3.0, 3.0, 4.0), n_fractures=3,
                                              orientation=orientation, seed=10 + n))
        sitk.WriteImage(_marked(case), str(root / "ct" / f"RibFrac{n}-image.nii.gz"))
        sitk.WriteImage(case.fracture_labels, str(root / "gt" / f"RibFrac{n}-label.nii.gz"))
        rows += [f"RibFrac{n},0,0"] + [f"RibFrac{n},{f.label_id},{f.code}" for f in case.fractures]
    (root / "gt" / "ribfrac-val-info.csv").write_text("\n".join(rows) + "\n")
    save_checkpoint(root / "marker.pt", MARKER_CKPT)
    return root


def test_segment_folder_gives_a_submission_the_evaluator_scores_perfectly(dataset, tmp_path, capsys):
    out = tmp_path / "pred"
    args = ["segment", str(dataset / "ct"), "--checkpoint", str(dataset / "marker.pt"), "--out", str(out),
            "--threads", "1", "--probability"]
    assert main(args) == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["RibFrac1.nii.gz", "RibFrac2.nii.gz"]
    with (out / "ribfrac-pred.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r for r in rows if r["label_id"] == "0"] == [
        {"public_id": f"RibFrac{n}", "label_id": "0", "confidence": "0", "label_code": "0"} for n in (1, 2)]
    summary = json.loads((out / "RibFrac2.json").read_text())
    assert summary["patches_skipped"] > 0 and set(summary["timings_s"]) >= {"read", "network", "postprocess"}
    assert len(summary["detections"]) == len([r for r in rows if r["public_id"] == "RibFrac2"]) - 1
    ct = sitk.ReadImage(str(dataset / "ct" / "RibFrac2-image.nii.gz"))
    assert geometry.same_grid(sitk.ReadImage(str(out / "RibFrac2.nii.gz")), ct)
    assert geometry.same_grid(sitk.ReadImage(str(out / "probabilities" / "RibFrac2.nii.gz")), ct)

    report = evaluate_dirs(out, dataset / "gt")
    assert report.n_scans == 2 and report.max_recall == pytest.approx(1.0) and report.froc == pytest.approx(1.0)
    assert report.dice == pytest.approx(1.0)

    before = (out / "RibFrac1.nii.gz").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0  # a second run resumes: nothing to do
    assert "already done" in capsys.readouterr().out
    assert (out / "RibFrac1.nii.gz").stat().st_mtime_ns == before


def test_bad_inputs_are_reported_and_the_batch_goes_on(dataset, tmp_path, capsys):
    (tmp_path / "broken.nii.gz").write_bytes(b"not an image")
    listing = tmp_path / "cases.txt"
    listing.write_text(f"# one bad, one missing, one good\n{tmp_path / 'broken.nii.gz'}\n"
                       f"{tmp_path / 'absent.nrrd'}\n{dataset / 'ct' / 'RibFrac1-image.nii.gz'}\n")
    out = tmp_path / "pred"
    code = main(["segment", str(listing), "--checkpoint", str(dataset / "marker.pt"), "--out", str(out),
                 "--threads", "1"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "error: broken" in printed and "Cannot read" in printed
    assert "error: absent" in printed and "CT not found" in printed
    assert (out / "RibFrac1.json").exists() and not (out / "broken.json").exists()
    assert main(["segment", str(listing), "--checkpoint", str(tmp_path / "broken.nii.gz"), "--out", str(out)]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err


def test_submission_warns_when_the_official_uint8_reader_would_wrap(tmp_path):
    from RibFracSegLib.detections import Detection, FractureResult
    from RibFracSegLib.export import write_submission
    dets = [Detection(i, 0.5, 1, 1.0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), ((0, 0, 0), (0, 0, 0)))
            for i in range(1, 258)]
    labels = sitk.Image(4, 4, 4, sitk.sitkUInt16)
    with pytest.warns(UserWarning, match="uint8"):
        write_submission(FractureResult(dets, labels), "RibFrac9", tmp_path)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "RibFrac9.nii.gz"))), np.zeros((4, 4, 4)))

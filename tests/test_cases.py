"""One CT, one name: every tool derives the case id with RibFracSegLib.cases, and options are checked once."""

from __future__ import annotations

import csv
import json
import os

import pytest
import SimpleITK as sitk
import torch

from RibFracSegLib.cases import case_id, expand_inputs, labelled_cases
from RibFracSegLib.checkpoint import save_checkpoint
from RibFracSegLib.cli import main
from RibFracSegLib.errors import InputError
from RibFracSegLib.evaluation.reading import volume_files
from RibFracSegLib.options import SegmentOptions
from RibFracSegLib.phantom import PhantomParams, generate_phantom

from test_inference_phantom import MARKER_CKPT, _marked

torch.set_num_threads(1)


@pytest.mark.parametrize("path, expected", [
    ("/d/RibFrac7-image.nii.gz", "RibFrac7"), ("/d/RibFrac7-label.nii.gz", "RibFrac7"), ("/d/RibFrac7.nii.gz", "RibFrac7"),
    ("/d/a.b.nrrd", "a.b"), ("/d/scan.MHA", "scan"), ("/d/dicom_folder", "dicom_folder"), ("/d/-image.nii", "-image"),
])
def test_case_id_rule(path, expected):
    assert case_id(path) == expected


def test_one_ct_named_the_same_by_every_tool(tmp_path):
    """segment, l3, ribs, the evaluator and training all call RibFrac7-image.nii.gz 'RibFrac7'."""
    data = tmp_path / "data"
    data.mkdir()
    case = generate_phantom(PhantomParams(shape=(160, 160, 170), spacing=(2.3, 2.3, 2.5), fov="abdomen_pelvis",
                                          n_fractures=2, orientation="LPS", seed=777001))
    sitk.WriteImage(_marked(case), str(data / "RibFrac7-image.nii.gz"))
    sitk.WriteImage(case.fracture_labels, str(data / "RibFrac7-label.nii.gz"))
    save_checkpoint(tmp_path / "marker.pt", MARKER_CKPT)

    assert expand_inputs([data]) == [data / "RibFrac7-image.nii.gz"]  # the label is not a CT
    assert [c.public_id for c in labelled_cases(data)] == ["RibFrac7"]  # training
    assert list(volume_files(data, ground_truth=True)) == ["RibFrac7"]  # evaluator, truth side
    assert main(["segment", str(data), "--out", str(tmp_path / "seg"), "--checkpoint", str(tmp_path / "marker.pt"),
                 "--threads", "1"]) == 0
    assert list(volume_files(tmp_path / "seg", ground_truth=False)) == ["RibFrac7"]  # evaluator, prediction side
    rows = list(csv.DictReader((tmp_path / "seg" / "ribfrac-pred.csv").open()))
    found = len(json.loads((tmp_path / "seg" / "RibFrac7.json").read_text())["detections"])
    assert found >= 2  # a segmental fracture may be found as two pieces
    assert {r["public_id"] for r in rows} == {"RibFrac7"} and len(rows) == found + 1  # + the background row
    manifest = [json.loads(line) for line in (tmp_path / "seg" / "ribfracseg-manifest.jsonl").read_text().splitlines()]
    assert [(m["case"], m["status"], m["n_fractures"]) for m in manifest] == [("RibFrac7", "done", found)]
    assert main(["l3", str(data / "RibFrac7-image.nii.gz"), "--out", str(tmp_path / "l3"), "--no-png"]) == 0
    assert json.loads((tmp_path / "l3" / "RibFrac7.l3.json").read_text())["name"] == "RibFrac7"
    assert main(["ribs", str(data), "--out", str(tmp_path / "ribs")]) == 0  # few ribs in an abdomen is no error
    assert json.loads((tmp_path / "ribs" / "RibFrac7-ribs.json").read_text())["name"] == "RibFrac7"


def test_two_inputs_with_one_case_id_are_refused_before_any_work(tmp_path):
    from RibFracSegLib.cases import check_unique_ids

    with pytest.raises(InputError, match="both have case id 'RibFrac1'"):
        check_unique_ids([tmp_path / "a" / "RibFrac1-image.nii.gz", tmp_path / "b" / "RibFrac1.nrrd"])


@pytest.mark.parametrize("field, value, message", [
    ("overlap", 1.0, r"Overlap must be in \[0, 1\), not 1.0 \(overlap"),
    ("overlap", -0.1, "Overlap must be in"),
    ("threshold", 1.5, r"Probability threshold must be in \[0, 1\], not 1.5 \(threshold / --threshold\)"),
    ("device", "gpu", "Device must be one of auto, cpu, cuda, not 'gpu'"),
    ("precision", "int8", "Precision must be one of"),
    ("batch_size", 0, r"batch_size must be a whole number of at least 1, not 0"),
    ("threads", 1.5, "threads must be a whole number"),
    ("checkpoint", "/nowhere/x.pt", "Checkpoint not found: /nowhere/x.pt"),
])
def test_segment_options_name_the_bad_value(field, value, message):
    with pytest.raises(ValueError, match=message):
        SegmentOptions(**{field: value}).validate()


def test_segment_options_round_trip_and_refuse_unknown_keys():
    options = SegmentOptions(overlap=0.25, threshold=1.0, device="cpu", threads=2).validate()
    assert SegmentOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options
    assert options.checkpoint_path().name == "ribfrac_default.pt" and options.checkpoint_path().is_file()
    with pytest.raises(ValueError, match="Unknown segment option.*overlapp"):
        SegmentOptions.from_dict({"overlapp": 0.5})


def test_dask_workers_split_the_cores_without_oversubscribing():
    from RibFracSegLib.options import worker_threads

    assert [worker_threads(w, cpus=16) for w in (1, 2, 3, 16, 32)] == [16, 8, 5, 1, 1]
    assert worker_threads(2) * 2 <= max(2, os.cpu_count() or 1)

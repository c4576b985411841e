"""The fracture type where a detection goes: its wording, the RibFrac csv, the JSON summary and its
readers, and the CLI tables (`segment`, `demo`)."""

from __future__ import annotations

import csv
import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib import export, pipeline
from RibFracSegLib.cli import demo, segment
from RibFracSegLib.detections import (Detection, FractureResult, fracture_type, known_type, type_legend, type_letter,
                                      type_probability, type_text)

PROBS = (0.82, 0.1, 0.05, 0.03)


def detection(id: int, code: int = -1, probs=(), network=None, rib="R6", region="lateral") -> Detection:
    return Detection(id=id, confidence=0.9 - 0.1 * id, voxel_count=10, volume_mm3=12.5,
                     centroid_ijk=(1.0, 2.0, 3.0), center_ras=(-10.0, 20.5, -30.25), center_lps=(10.0, -20.5, -30.25),
                     bbox_ijk=((0, 1, 2), (2, 3, 4)), label_code=code, rib=rib, rib_arc_mm=120.0, rib_region=region,
                     code_probabilities=probs, network_confidence=network)


DETECTIONS = [detection(1, 1, PROBS, 0.71), detection(2, 3, (0.1, 0.2, 0.6, 0.1), 0.64),
              detection(3, -1, (0.3, 0.3, 0.2, 0.2), 0.55), detection(4)]  # typed, typed, abstained, no classifier


@pytest.mark.parametrize("code,name,letter", [(1, "displaced", "D"), (2, "non-displaced", "N"), (3, "buckle", "B"),
                                              (4, "segmental", "S"), (-1, "type undefined", ""),
                                              (0, "type undefined", "")])
def test_the_type_in_words(code, name, letter):
    assert fracture_type(code) == name and type_letter(code) == letter
    assert known_type(code) == ("" if code < 1 else name)


def test_the_types_probability_is_the_classifiers_for_that_code():
    assert type_probability(1, PROBS) == pytest.approx(0.82) and type_probability(4, PROBS) == pytest.approx(0.03)
    assert type_text(1, PROBS) == "displaced 0.82" and type_text(3, (0.1, 0.2, 0.6, 0.1)) == "buckle 0.60"
    assert type_probability(2, ()) is None and type_text(2) == "non-displaced"  # a type without probabilities
    assert type_probability(-1, PROBS) is None and type_text(-1, PROBS) == "type undefined"  # abstained
    assert type_legend() == "D displaced, N non-displaced, B buckle, S segmental"


def test_detection_keeps_plain_numbers_and_refuses_a_wrong_number_of_probabilities():
    d = detection(1, np.int64(2), tuple(np.float32(p) for p in PROBS), np.float32(0.5))
    assert type(d.label_code) is int and all(type(p) is float for p in d.code_probabilities)
    assert type(d.network_confidence) is float
    json.dumps(d.to_dict())  # numpy numbers would not serialise
    with pytest.raises(ValueError, match="code_probabilities has 3 values"):
        detection(1, 1, (0.5, 0.3, 0.2))


def _result() -> FractureResult:
    instances = sitk.Image(6, 6, 6, sitk.sitkUInt16)
    return FractureResult(detections=DETECTIONS, instances=instances)


def test_csv_and_summary_carry_the_type_and_the_readers_take_it(tmp_path):
    summary_path = export.write_case(_result(), "RibFrac7", tmp_path)
    with (tmp_path / "ribfrac-pred.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["label_id"], r["label_code"]) for r in rows] == [("0", "0"), ("1", "1"), ("2", "3"), ("3", "-1"),
                                                                 ("4", "-1")]
    summary = json.loads(summary_path.read_text())
    by_id = {d["id"]: d for d in summary["detections"]}
    assert by_id[1]["label_code"] == 1 and by_id[1]["code_probabilities"] == pytest.approx(list(PROBS))
    assert by_id[1]["network_confidence"] == pytest.approx(0.71) and by_id[1]["confidence"] == pytest.approx(0.8)
    assert by_id[4]["code_probabilities"] == [] and by_id[4]["network_confidence"] is None
    # the JSON's detections rebuild the same objects (lists back to tuples), and the csv rows from them agree
    rebuilt = [Detection(**{k: tuple(map(tuple, v)) if k == "bbox_ijk" else tuple(v) if isinstance(v, list) else v
                            for k, v in d.items()}) for d in summary["detections"]]
    assert rebuilt == DETECTIONS
    assert export.submission_rows("RibFrac7", summary["detections"]) == export.submission_rows("RibFrac7", DETECTIONS)
    (tmp_path / "RibFrac7.nii.gz").touch()
    report = pipeline.finished(tmp_path / "RibFrac7-image.nii.gz", tmp_path)  # a resumed run reads the summary
    assert report is not None and report.status == pipeline.SKIPPED and report.n_fractures == 4


def test_segment_cli_table_has_the_type_column():
    lines = [segment.detection_line(d) for d in json.loads(json.dumps([d.to_dict() for d in DETECTIONS]))]
    assert lines[0] == "    1  0.80  displaced 0.82      right rib 6, lateral          RAS (-10.0, 20.5, -30.2) mm"
    assert lines[1] == "    2  0.70  buckle 0.60         right rib 6, lateral          RAS (-10.0, 20.5, -30.2) mm"
    # abstained: no type, no probability
    assert lines[2] == "    3  0.60  type undefined      right rib 6, lateral          RAS (-10.0, 20.5, -30.2) mm"
    assert lines[3] == "    4  0.50  type undefined      right rib 6, lateral          RAS (-10.0, 20.5, -30.2) mm"
    old = {k: v for k, v in DETECTIONS[0].to_dict().items() if k not in ("code_probabilities", "network_confidence")}
    assert "  displaced  " in segment.detection_line(old)  # a summary written before these fields


def test_demo_rows_say_the_type_given():
    truth = SimpleNamespace(label_id=2, kind="displaced", rib="R6")
    row = demo.found_line(truth, DETECTIONS[0], 0.61, 1.5)
    assert row == ("    2      displaced   R6         1  0.61  0.80       1.5  displaced 0.82      "
                   "right rib 6, lateral")
    assert "  type undefined      right rib 6" in demo.found_line(truth, DETECTIONS[3], 0.61, 1.5)
    assert demo.false_positive_line(DETECTIONS[1]) == ("false positive 2: confidence 0.70, buckle 0.60, 12 mm³ at RAS "
                                                       "(-10, 20, -30), right rib 6, lateral")
    # typed by the rib frame's measurements against the classifier's choice: no classifier probability shown
    # (it was 'displaced 0.00' in the demo: the classifier's probability of the frame's code)
    framed = dataclasses.replace(DETECTIONS[1], label_code=1, frame_code=1, gap_mm=1.7, step_mm=3.1, angulation_deg=8.0)
    assert "  displaced           right rib 6" in demo.found_line(truth, framed, 0.61, 1.5)
    assert ", displaced, 3.1 mm step, 1.7 mm gap, 8 deg, 12 mm³" in demo.false_positive_line(framed)
    kept = dataclasses.replace(DETECTIONS[0], frame_code=2)  # the classifier's call stood: its probability shown
    assert "displaced 0.82" in demo.found_line(truth, kept, 0.61, 1.5)
    agreed = dataclasses.replace(DETECTIONS[0], frame_code=1)  # frame and classifier agree: the probability too
    assert "displaced 0.82" in demo.found_line(truth, agreed, 0.61, 1.5)

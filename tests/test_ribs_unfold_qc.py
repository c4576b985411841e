"""QC pictures and JSON fields of the unfolded view: boxes where the marks say, rows as the layout
says, the frontal view's boxes over the fractures, and each detection's `unfolded` field."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from RibFracSegLib.detections import FractureResult
from RibFracSegLib.export import case_summary
from RibFracSegLib.phantom import PhantomParams, detections_from_phantom, generate_phantom, rib_labels_from_phantom
from RibFracSegLib.ribs import RibLabels
from RibFracSegLib.ribs.picture import PIXEL_MM
from RibFracSegLib.ribs.qc import (HEADER_PX, LEGEND_PX, LEGEND_TEXT, MARK, MISSING, cage_picture, unfolded_picture,
                                   write_unfolded_qc)
from RibFracSegLib.ribs.unfold import unfold_ribs
from RibFracSegLib.ribs.unfold_marks import add_unfolded_to_summary, map_detections


@pytest.fixture(scope="module")
def case():
    c = generate_phantom(PhantomParams(shape=(160, 160, 100), spacing=(2.0, 2.0, 3.3), fov="thorax",
                                       n_fractures=5, seed=3))
    ribs = rib_labels_from_phantom(c)
    return c, ribs, detections_from_phantom(c, ribs)


def _is_mark(pixel) -> bool:
    return tuple(int(v) for v in pixel[:3]) == MARK


def test_unfolded_and_qc_pngs_show_the_marks_and_missing_rows(case, tmp_path):
    c, ribs, dets = case
    kept = RibLabels(ribs.labels, [r for r in ribs.ribs if r.name != "L4"])
    files = write_unfolded_qc(c.image, kept, dets, tmp_path, "case-3")
    assert files.unfolded_png == tmp_path / "case-3-unfolded.png" and files.qc_png == tmp_path / "case-3-qc.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case-3-qc.png", "case-3-unfolded.png"]  # no temp left
    flat = np.asarray(Image.open(files.unfolded_png).convert("RGB"))
    unfolded = unfold_ribs(c.image, kept)
    typed = any(d.label_code > 0 for d in dets)  # the phantom's truth codes: the type letters' key below
    assert typed and flat.shape[:2] == (unfolded.image.shape[0] + HEADER_PX + LEGEND_PX, unfolded.image.shape[1])
    marked = [m for m in files.marks.values() if m is not None]
    assert "L4" not in {d.rib for d in dets} and len(marked) == len(dets) == 5  # every fracture is on a rib
    for mark in marked:
        r0, c0, r1, c1 = mark.box
        assert _is_mark(flat[r1 + HEADER_PX, (c0 + c1) // 2]) and _is_mark(flat[(r0 + r1) // 2 + HEADER_PX, c1])
    row = unfolded.centre_row(3) + HEADER_PX  # L4's row: the "missing" colour on the left half
    assert tuple(flat[row, unfolded.head_col("L") + 50]) == MISSING
    qc = np.asarray(Image.open(files.qc_png).convert("RGB"))
    assert qc.shape[0] == flat.shape[0] and qc.shape[1] > flat.shape[1] + 100
    assert np.array_equal(qc[:, :flat.shape[1]], flat)


def test_cage_views_boxes_sit_over_the_fractures_right_on_the_left(case):
    c, ribs, dets = case
    picture = np.asarray(cage_picture(c.image, ribs, dets))
    ct = sitk.DICOMOrient(c.image, "LPS")
    si, sk = ct.GetSpacing()[0], ct.GetSpacing()[2]
    si, sk = si / PIXEL_MM, sk / PIXEL_MM  # the views' pixels per voxel
    panel_w, panel_h = round(ct.GetSize()[0] * si), round(ct.GetSize()[2] * sk)
    header, gap = picture.shape[0] - panel_h, picture.shape[1] - 2 * panel_w
    for det in dets:
        i, _, k = ct.TransformPhysicalPointToContinuousIndex(det.center_lps)
        y = header + (ct.GetSize()[2] - 0.5 - k) * sk
        front, back = (i + 0.5) * si, panel_w + gap + (ct.GetSize()[0] - 0.5 - i) * si
        for x in (front, back):
            window = picture[int(y) - 12:int(y) + 13, int(x) - 12:int(x) + 13]
            assert np.all(window == MARK, axis=-1).sum() > 10, det.rib
        # frontal view as facing the patient: the right ribs on the picture's left; posterior mirrored
        assert (front < panel_w / 2) == (det.rib[0] == "R") == (back > panel_w + gap + panel_w / 2)


def test_summary_carries_each_fractures_unfolded_coordinates(case):
    c, ribs, dets = case
    unfolded = unfold_ribs(c.image, ribs)
    far = dets[0].__class__(**{**dets[0].to_dict(), "id": 77, "rib": "none",
                               "center_lps": (0.0, 0.0, 5000.0), "center_ras": (0.0, 0.0, 5000.0)})
    result = FractureResult(detections=dets + [far], instances=c.fracture_labels)
    summary = add_unfolded_to_summary(case_summary(result, "case-3"), map_detections(unfolded, dets + [far], c.image))
    parsed = json.loads(json.dumps(summary))
    by_id = {d["id"]: d for d in parsed["detections"]}
    assert by_id[77]["unfolded"] is None
    for det in dets:
        field = by_id[det.id]["unfolded"]
        assert field["rib"] == det.rib and abs(field["arc_mm"] - det.rib_arc_mm) < 1.5
        assert field["pixel_mm"] == pytest.approx(unfolded.pixel_mm)
        r0, c0, r1, c1 = field["box"]
        assert r0 <= field["row"] <= r1 and c0 <= field["col"] <= c1
        back = unfolded.pixel_to_lps(field["row"], field["col"])
        assert np.linalg.norm(np.subtract(back, det.center_lps)) < 2.0 + abs(field["depth_mm"])


def test_typed_marks_show_their_letter_and_the_picture_its_key(case):
    c, ribs, dets = case
    unfolded = unfold_ribs(c.image, ribs)
    codes = {d.id: code for d, code in zip(dets, (1, 2, 3, 4, -1))}
    typed = [replace(d, label_code=codes[d.id]) for d in dets]
    untyped = [replace(d, label_code=-1) for d in dets]
    marks = map_detections(unfolded, typed, c.image)
    assert {i: m.text for i, m in marks.items()} == {d.id: f"{d.id} {'DNBS'[codes[d.id] - 1]}" if codes[d.id] > 0
                                                    else str(d.id) for d in dets}
    assert all("label_code" not in m.to_dict() for m in marks.values())  # the summary's detection has it
    plain = np.asarray(unfolded_picture(unfolded, map_detections(unfolded, untyped, c.image)))
    picture = np.asarray(unfolded_picture(unfolded, marks))
    body = unfolded.image.shape[0] + HEADER_PX
    assert plain.shape[0] == body and picture.shape[0] == body + LEGEND_PX  # untyped marks: the picture as before
    legend = picture[body:]
    assert np.all(legend == LEGEND_TEXT, axis=-1).sum() > 200  # the key is written there
    # the only other change is the letter written beside each typed box's number, above its top-left corner
    changed = np.any(picture[:body] != plain, axis=-1)
    near_labels = np.zeros_like(changed)
    for det_id, mark in marks.items():
        r0, c0, _, _ = mark.box
        if codes[det_id] > 0:
            near_labels[max(0, r0 + HEADER_PX - 22):r0 + HEADER_PX, c0:c0 + 40] = True
            assert changed[max(0, r0 + HEADER_PX - 22):r0 + HEADER_PX, c0:c0 + 40].sum() > 10, det_id
    assert not (changed & ~near_labels).any()

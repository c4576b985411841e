"""DICOM SEG and SR of a DICOM input, read back with highdicom: segments, voxels, codes, references, measurements.

Phantom CTs are written as scanner-like DICOM series (tests/dicom_series.py: CT Image Storage, real
UIDs, geometry) in several storage orders; the marker checkpoint finds their painted fractures
exactly, so each fracture's SEG frames must equal the NIfTI instance map slice for slice.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from PIL import Image

from RibFracSegLib import __version__, defaults
from RibFracSegLib.checkpoint import save_checkpoint
from RibFracSegLib.cli import main
from RibFracSegLib.detections import Detection, fracture_segment_name
from RibFracSegLib.options import SegmentOptions
from RibFracSegLib.phantom import PhantomParams, generate_phantom
from RibFracSegLib.pipeline import DONE, segment_case
from RibFracSegLib.ribs.assign import rib_phrase

from dicom_series import write_series
from test_inference_phantom import MARKER_CKPT, _marked

torch.set_num_threads(1)


def _series(case, folder: Path, order: str, **kwargs) -> dict[str, tuple[float, float, float]]:
    """Write the marked phantom as a series; SOP Instance UID -> the file's Image Position (Patient)."""
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in write_series(_marked(case), folder, order=order,
                                                                               **kwargs)]
    return {str(h.SOPInstanceUID): tuple(float(v) for v in h.ImagePositionPatient) for h in heads}


def _slice_of(image: sitk.Image, position) -> int:
    """The slice k of `image` through a file's Image Position (its corner voxel), checked to lie on the grid."""
    ijk = np.array(image.TransformPhysicalPointToContinuousIndex(position))
    assert np.abs(ijk - np.rint(ijk)).max() < 1e-3 and np.abs(ijk[:2]).max() < 1e-3
    return int(round(ijk[2]))


@pytest.fixture(scope="module")
def chest(tmp_path_factory):
    """A chest phantom (all 24 ribs found and numbered) as a shuffled series, through `segment --dicom --ribs
    --report --l3` on the command line."""
    root = tmp_path_factory.mktemp("dicom")
    case = generate_phantom(PhantomParams(shape=(128, 128, 80), spacing=(2.6, 2.6, 4.0), n_fractures=3, seed=11))
    uids = _series(case, root / "Chest1", "shuffled")
    save_checkpoint(root / "marker.pt", MARKER_CKPT)
    args = ["segment", str(root / "Chest1"), "--checkpoint", str(root / "marker.pt"), "--out", str(root / "out"),
            "--threads", "1", "--dicom", "--ribs", "--report", "--l3"]
    assert main(args) == 0
    return root, uids, args


def check_fracture_seg(out: Path, case: str, uids: dict):
    """The fractures SEG against the NIfTI output and the source series; returns (seg, detections)."""
    detections = [Detection.from_dict(d) for d in json.loads((out / f"{case}.json").read_text())["detections"]]
    seg = hd.seg.segread(out / f"{case}-fractures.seg.dcm")
    assert seg.number_of_segments == len(detections)
    for n, d in enumerate(detections, start=1):
        description = seg.get_segment_description(n)
        assert description.segment_label == fracture_segment_name(d)
        assert description.segment_label.startswith(f"Fracture {d.id}")
        assert description.segmented_property_type.value == defaults.FRACTURE_TYPE_CODE[1]  # Fracture of rib
        assert description.segmented_property_category.value == defaults.FRACTURE_CATEGORY_CODE[1]
        assert description.algorithm_identification[0].AlgorithmName == "RibFracSeg"
        assert description.algorithm_identification[0].AlgorithmVersion == __version__
        if d.rib != "none":
            region = description.AnatomicRegionSequence[0]
            number = None if d.rib.startswith("unnumbered") else int(d.rib[1:])
            assert region.CodeValue == defaults.RIB_TYPE_CODES[number][1]
            side = d.rib[-1] if number is None else d.rib[0]
            assert region.AnatomicRegionModifierSequence[0].CodeValue == defaults.SIDE_CODES[side][1]
    # every frame derives from a file of the input series, in its frame of reference and study
    assert {uid for _, _, uid in seg.get_source_image_uids()} <= set(uids)
    referenced = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert referenced == set(uids)
    # each fracture's voxels, file by file, equal the NIfTI instance map's slice of that file
    nifti = sitk.ReadImage(str(out / f"{case}.nii.gz"))
    instances = sitk.GetArrayFromImage(nifti)
    files = list(uids)
    pixels = seg.get_pixels_by_source_instance(files, combine_segments=True)  # value = segment number
    ids = np.array([0] + [d.id for d in detections])
    slices = [_slice_of(nifti, uids[uid]) for uid in files]
    assert sorted(slices) == list(range(len(files)))
    for f, k in enumerate(slices):
        assert np.array_equal(ids[pixels[f]], instances[k]), f"slice {k}"
    assert [int((ids[pixels] == d.id).sum()) for d in detections] == [d.voxel_count for d in detections]
    return seg, detections


def check_sr(out: Path, case: str, seg, detections: list[Detection], uids: dict[str, int]):
    """The SR parses as TID 1500; each fracture's group references its segment and holds its measurements."""
    sr = hd.sr.srread(out / f"{case}-measurements.sr.dcm")
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert evidence == set(uids) | {seg.SOPInstanceUID}
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(detections)
    for n, (group, d) in enumerate(zip(groups, detections), start=1):
        assert group.tracking_identifier == f"Fracture {d.id}"
        assert group.tracking_uid == seg.get_segment_description(n).tracking_uid
        ref = group.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID and ref.referenced_segment_numbers == [n]
        assert {i.referenced_sop_instance_uid for i in ref.source_images_for_segmentation} <= set(uids)
        values = {(m.name.meaning, m.unit.value): m.value for m in group.get_measurements()}
        assert values[("Probability", "1")] == pytest.approx(d.confidence, rel=1e-6)
        assert values[("Volume", "mm3")] == pytest.approx(d.volume_mm3, rel=1e-6)
        if d.rib_arc_mm is not None:
            assert values[(defaults.SR_RIB_ARC_CODE[2], "mm")] == pytest.approx(d.rib_arc_mm)
            assert group.finding_sites[0].value.value == defaults.RIB_TYPE_CODES[
                None if d.rib.startswith("unnumbered") else int(d.rib[1:])][1]
        points = [i for i in group[0].ContentSequence if i.ValueType == "SCOORD3D"]
        assert len(points) == 1 and points[0].ReferencedFrameOfReferenceUID == seg.FrameOfReferenceUID
        np.testing.assert_allclose(points[0].GraphicData, d.center_lps, atol=1e-3)
    return sr


def check_report(path: Path, detections: list[Detection], pictures: int) -> str:
    """The page is self-contained (every picture a PNG data URI; no script, link, style import or external
    address) and its fracture table lists every detection, in order."""
    html = path.read_text(encoding="utf-8")  # never the locale's (ASCII in some full runs)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)  # what is left must name nothing outside
    assert not re.search(r"<script|<link|<iframe|<object|@import|url\(|https?:|//[a-z0-9]", text, re.I)
    sources = re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', html)
    assert len(sources) == pictures and all(s.startswith("data:image/png;base64,") for s in sources)
    for s in sources:
        with Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) as picture:
            assert picture.format == "PNG" and min(picture.size) >= 200
    rows = re.findall(r"<tr><td class=n>(\d+)</td><td>([^<]*)</td>", html)
    assert [(int(i), rib) for i, rib in rows] == [(d.id, rib_phrase(d.rib, d.rib_region)) for d in detections]
    return html


def test_segment_dicom_writes_a_seg_per_fracture_and_rib_and_an_sr_that_read_back(chest):
    root, uids, _ = chest
    out = root / "out"
    seg, detections = check_fracture_seg(out, "Chest1", uids)
    assert len(detections) >= 3  # the phantom's three painted fractures (a segmental one may be two pieces)
    assert [d.rib for d in detections if d.rib != "none"]  # the phantom's fractures lie on numbered ribs
    check_sr(out, "Chest1", seg, detections, uids)
    html = check_report(out / "Chest1-report.html", detections, pictures=2)  # unfolded ribs, cage; L3 not in view
    assert "L3 is not in the field of view" in html and "24 left" not in html and "12 left, 12 right" in html

    ribs = hd.seg.segread(out / "Chest1-ribs.seg.dcm")
    assert ribs.number_of_segments == 24
    names = {ribs.get_segment_description(n).segment_label: ribs.get_segment_description(n)
             for n in range(1, 25)}
    assert set(names) == {f"{side} rib {k}" for side in ("Left", "Right") for k in range(1, 13)}
    sixth = names["Right rib 6"].SegmentedPropertyTypeCodeSequence[0]
    assert (sixth.CodeValue, sixth.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue) == ("59558009", "24028007")
    assert {uid for _, _, uid in ribs.get_source_image_uids()} <= set(uids)


def test_a_finished_dicom_case_resumes_and_a_new_output_redoes_it(chest, capsys):
    root, _, args = chest
    capsys.readouterr()
    assert main(args) == 0
    assert "already done" in capsys.readouterr().out
    summary = json.loads((root / "out" / "Chest1.json").read_text())
    assert summary["outputs"] == {"fractures_seg": "Chest1-fractures.seg.dcm", "ribs_seg": "Chest1-ribs.seg.dcm",
                                  "sr": "Chest1-measurements.sr.dcm", "report": "Chest1-report.html"}
    (root / "out" / "Chest1-ribs.seg.dcm").unlink()  # a file asked for is missing: the case is redone
    assert main(args) == 0
    assert "already done" not in capsys.readouterr().out and (root / "out" / "Chest1-ribs.seg.dcm").is_file()


@pytest.mark.parametrize("orientation,order,second_series", [("oblique", "descending", False),
                                                               ("RAS", "ascending", True)])
def test_every_storage_order_gives_frames_equal_to_the_nifti(tmp_path, orientation, order, second_series):
    """Series stored obliquely or flipped, files numbered either way, beside a second series in one folder; with
    L3 in view the SR's L3 group references the L3 slice's file."""
    case = generate_phantom(PhantomParams(shape=(112, 112, 100), spacing=(3.0, 3.0, 4.5), fov="thorax_abdomen",
                                          n_fractures=3, orientation=orientation, seed=21))
    folder = tmp_path / "Series"
    uids = _series(case, folder, order)
    if second_series:  # a smaller CT series (a scout, a thick reconstruction) in the same study folder
        small = sitk.RegionOfInterest(case.image, [112, 112, 30], [0, 0, 40])
        other = write_series(small, folder, series_number=2, description="thick")
        assert len(list(folder.iterdir())) == len(uids) + len(other)
    save_checkpoint(tmp_path / "marker.pt", MARKER_CKPT)
    options = SegmentOptions(checkpoint=str(tmp_path / "marker.pt"), dicom=True, l3=True, height_m=1.7, threads=1,
                             report=True)
    report = segment_case(folder, tmp_path / "out", options)
    assert report.status == DONE, report.error
    assert bool(report.warnings) == second_series  # the folder's other series is named, not used
    seg, detections = check_fracture_seg(tmp_path / "out", "Series", uids)
    assert len(detections) >= 3
    sr = check_sr(tmp_path / "out", "Series", seg, detections, uids)
    summary = json.loads((tmp_path / "out" / "Series.json").read_text())
    assert summary["l3"]["in_view"] and summary["body_composition"]["smi_cm2_per_m2"] > 0
    l3 = sr.content.get_image_measurement_groups()
    assert len(l3) == 1 and l3[0].finding_sites[0].value.value == defaults.L3_VERTEBRA_CODE[1]
    values = {(m.name.meaning, m.unit.value): m.value for m in l3[0].get_measurements()}
    assert values[("Skeletal muscle index", "cm2/m2")] == pytest.approx(summary["body_composition"]["smi_cm2_per_m2"],
                                                                      abs=0.01)
    ribs_found = bool(summary["ribs"] and sum(summary["ribs"]["ribs_found"].values()))
    html = check_report(tmp_path / "out" / "Series-report.html", detections, pictures=2 * ribs_found + 1)  # + L3 slice
    assert f"{summary['body_composition']['muscle_cm2']:.1f}" in html
    assert values[("Image Position (Patient) Z", "mm")] == pytest.approx(summary["l3"]["center_lps"][2], abs=0.01)
    source = l3[0].source_images[0].referenced_sop_instance_uid  # the file whose slice holds the L3 point
    nifti = sitk.ReadImage(str(tmp_path / "out" / "Series.nii.gz"))
    assert _slice_of(nifti, uids[source]) == summary["l3"]["slice_index"]
    assert abs(nifti.TransformPhysicalPointToContinuousIndex(summary["l3"]["center_lps"])[2]
               - summary["l3"]["slice_index"]) <= 0.5


def test_dicom_outputs_refuse_what_has_no_series(chest, tmp_path, capsys):
    root, _, _ = chest
    nifti = tmp_path / "Chest2.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(root / "out" / "Chest1.nii.gz")), str(nifti))
    assert main(["segment", str(nifti), "--checkpoint", str(root / "marker.pt"), "--out", str(tmp_path / "o"),
                 "--dicom"]) == 1
    assert "DICOM SEG needs the source DICOM series; Chest2.nii.gz is not one: give the series folder" in \
        capsys.readouterr().out
    assert main(["segment", str(root / "Chest1"), "--checkpoint", str(root / "marker.pt"), "--out",
                 str(tmp_path / "o"), "--ribs"]) == 2
    assert "give dicom too (--ribs with --dicom)" in capsys.readouterr().err  # refused before any work: stderr

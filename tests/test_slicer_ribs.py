"""The "Ribs" option in Slicer: a '<CT> ribs' segmentation with one named, coded segment per rib, and
fractures named and tabled by their rib — in this process and through the panel's background path."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import torch
import vtk

from slicer_scene import add_module_path, make_scene

add_module_path()

from RibFracSegLib import defaults  # noqa: E402
from RibFracSegLib.detections import known_type  # noqa: E402
from RibFracSegLib.ribs import rib_from_label_value  # noqa: E402
from RibFracSegLogicLib import probe, selftest, terminology  # noqa: E402
from RibFracSegLogicLib.logic import RibFracSegLogicBase  # noqa: E402
from RibFracSegLogicLib.panel import PanelInputs, PanelRun  # noqa: E402
from RibFracSegLogicLib.rib_nodes import rib_segment_name  # noqa: E402
from RibFracSegLogicLib.runner import DONE  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def chest(tmp_path_factory):
    """A chest phantom whose ribs the rib step numbers (22 of 24), fractures painted for the probe."""
    from RibFracSegLib.phantom import PhantomParams, generate_phantom

    case = generate_phantom(PhantomParams(shape=(128, 112, 100), spacing=(2.6, 2.6, 3.0), fov="thorax",
                                          n_fractures=4, seed=7))
    marked = selftest.MarkedCase("chest", probe.paint_marker(case.image, case.fracture_labels), case.fracture_labels, {})
    holder = make_scene()
    volume = selftest.add_case_volume(holder.scene, marked)
    checkpoint = str(probe.write_probe_checkpoint(tmp_path_factory.mktemp("ckpt") / "probe.pt"))
    logic = RibFracSegLogicBase(holder.scene)
    result = logic.process(volume, checkpoint=checkpoint, device="cpu", ribs=True)
    return holder, logic, volume, checkpoint, result


def _segments(seg_node) -> list:
    segmentation = seg_node.GetSegmentation()
    return [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]


def _entry(segment):
    text = vtk.reference("")
    segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), text)
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(str(text), entry)
    return entry


def _codes(obj) -> tuple:
    return obj.GetCodingSchemeDesignator(), obj.GetCodeValue(), obj.GetCodeMeaning()


def test_one_named_coded_segment_per_rib_hidden_in_3d(chest):
    holder, logic, volume, checkpoint, result = chest
    ribs = result.output.fractures.ribs
    labels = sitk.GetArrayFromImage(ribs.labels)
    present = [int(v) for v in np.unique(labels) if v]
    assert len(present) >= 20  # the phantom's ribs were found: the test has something to check
    seg = result.nodes.ribs
    assert seg.GetName() == "chest ribs" and seg in result.nodes.all()
    segments = _segments(seg)
    assert [s.GetName() for s in segments] == [rib_segment_name(*rib_from_label_value(v)) for v in present]
    assert {"Left rib 1", "Right rib 6", "Left rib 11"} <= {s.GetName() for s in segments}
    for value, segment in zip(present, segments):
        layer = slicer.util.arrayFromSegmentInternalBinaryLabelmap(seg, seg.GetSegmentation().GetSegmentIdBySegmentName(
            segment.GetName()))
        assert np.count_nonzero(layer == segment.GetLabelValue()) == np.count_nonzero(labels == value)
    assert seg.GetDisplayNode().GetVisibility3D() == 0 and result.nodes.segmentation.GetDisplayNode().GetVisibility3D() == 1
    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    terminology.load_terminology(terminologies)
    sixth = _entry(next(s for s in segments if s.GetName() == "Right rib 6"))
    assert _codes(sixth.GetCategoryObject()) == ("SCT", "123037004", "Anatomical Structure")
    assert _codes(sixth.GetTypeObject()) == ("SCT", "59558009", "Sixth rib")
    assert _codes(sixth.GetTypeModifierObject()) == ("SCT", "24028007", "Right")
    terminologies.UpdateEntryFromLoadedTerminologies(sixth, [defaults.TERMINOLOGY_CONTEXT], [])
    assert sixth.GetTypeObject().GetRecommendedDisplayRGBValue() == (253, 232, 158)  # resolved in our context


def test_fractures_are_named_and_tabled_by_their_rib(chest):
    holder, logic, volume, checkpoint, result = chest
    detections = result.detections
    on_ribs = [d for d in detections if d.rib != "none"]
    assert on_ribs and all(d.rib_region in ("posterior", "lateral", "anterior") for d in on_ribs)
    names = [s.GetName() for s in _segments(result.nodes.segmentation)]
    for d, name in zip(detections, names):
        side = {"L": "left", "R": "right"}.get(d.rib[:1])
        kind = known_type(d.label_code)  # measured in the rib's frame when on a rib (no classifier here)
        expected = f"Fracture {d.id}" if d.rib == "none" else f"Fracture {d.id} - {side} rib {d.rib[1:]}, {d.rib_region}"
        assert name == (f"{expected}, {kind}" if kind and d.rib != "none" else expected)
        assert d.rib == "none" or (kind and d.frame_code == d.label_code)
    table = result.nodes.table.GetTable()
    rib, arc, region = (table.GetColumnByName(c) for c in ("rib", "rib_arc_mm", "rib_region"))
    assert [rib.GetValue(r) for r in range(len(detections))] == [d.rib for d in detections]
    assert [region.GetValue(r) for r in range(len(detections))] == [d.rib_region for d in detections]
    np.testing.assert_allclose([arc.GetValue(r) for r in range(len(detections))],
                               [np.nan if d.rib_arc_mm is None else d.rib_arc_mm for d in detections])
    assert result.nodes.table.GetColumnUnitLabel("rib_arc_mm") == "mm"
    assert selftest.check_nodes(result, volume) == []


def test_without_the_option_there_is_no_rib_segmentation(chest):
    holder, logic, volume, checkpoint, result = chest
    plain = logic.process(volume, checkpoint=checkpoint, device="cpu")
    assert plain.nodes.ribs is None and plain.output.fractures.ribs is not None  # found, not shown
    assert [s.GetName() for s in _segments(plain.nodes.segmentation)] == \
        [s.GetName() for s in _segments(result.nodes.segmentation)]


def test_the_background_run_brings_the_ribs_back(chest):
    holder, logic, volume, checkpoint, result = chest
    run = PanelRun(logic, volume, PanelInputs(checkpoint=checkpoint, device="cpu", ribs=True), preload=[probe.MODULE])
    assert run.wait(timeout=300) == DONE, run.error
    outcome = run.finish()
    here, there = result.output.fractures.ribs, outcome.result.output.fractures.ribs
    np.testing.assert_array_equal(sitk.GetArrayFromImage(there.labels), sitk.GetArrayFromImage(here.labels))
    assert [r.name for r in there.ribs] == [r.name for r in here.ribs] and there.numbering == here.numbering
    for a, b in zip(there.ribs, here.ribs):
        np.testing.assert_array_equal(a.centreline_lps, b.centreline_lps)
    assert [s.GetName() for s in _segments(outcome.result.nodes.ribs)] == [s.GetName() for s in _segments(result.nodes.ribs)]
    assert outcome.result.detections == result.detections

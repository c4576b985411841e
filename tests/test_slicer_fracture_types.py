"""The fracture type in Slicer (real MRML scene): segment names, tags and terminology type modifier,
point labels and descriptions, table columns, their files, and the worker's result exchange."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import slicer
import vtk

from slicer_scene import make_scene
from test_slicer_nodes import _options, hand_made_result, oblique_image

from RibFracSegLib import defaults  # noqa: E402
from RibFracSegLogicLib import exchange, terminology  # noqa: E402
from RibFracSegLogicLib.compute import RunOutput  # noqa: E402
from RibFracSegLogicLib.logic import RibFracSegLogicBase  # noqa: E402
from RibFracSegLogicLib.nodes import TAG_PREFIX  # noqa: E402
from RibFracSegLogicLib.selftest import MarkedCase, add_case_volume, check_files, check_nodes  # noqa: E402

# detection 1: displaced on a rib; 2: buckle on no rib; 3: abstained (probabilities, no type) on a rib
TYPES = {1: dict(label_code=1, code_probabilities=(0.82, 0.1, 0.05, 0.03), network_confidence=0.7,
                 rib="R6", rib_arc_mm=140.0, rib_region="lateral"),
         2: dict(label_code=3, code_probabilities=(0.1, 0.2, 0.6, 0.1), network_confidence=0.5),
         3: dict(label_code=-1, code_probabilities=(0.3, 0.3, 0.2, 0.2), network_confidence=0.4,
                 rib="L4", rib_arc_mm=200.0, rib_region="anterior")}


@pytest.fixture()
def typed():
    holder = make_scene()
    image = oblique_image()
    volume = add_case_volume(holder.scene, MarkedCase("oblique", image, image, {}))
    result = hand_made_result(image)
    result.detections = [replace(d, **TYPES[d.id]) for d in result.detections]
    added = RibFracSegLogicBase(holder.scene).add_results(volume, RunOutput(fractures=result), _options())
    return holder, added


def _tag(segment, key: str) -> str:
    text = vtk.reference("")
    assert segment.GetTag(key, text)
    return str(text)


def _codes(obj) -> tuple[str, str, str]:
    return obj.GetCodingSchemeDesignator(), obj.GetCodeValue(), obj.GetCodeMeaning()


def test_segments_are_named_and_tagged_with_their_type(typed):
    holder, added = typed
    segmentation = added.nodes.segmentation.GetSegmentation()
    segments = [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]
    assert [s.GetName() for s in segments] == ["Fracture 1 - right rib 6, lateral, displaced", "Fracture 2 - buckle",
                                               "Fracture 3 - left rib 4, anterior"]
    assert [_tag(s, TAG_PREFIX + "type") for s in segments] == ["displaced", "buckle", "type undefined"]
    assert [_tag(s, TAG_PREFIX + "code") for s in segments] == ["1", "3", "-1"]


def test_the_type_is_the_terminologys_type_modifier_and_slicer_resolves_it(typed):
    holder, added = typed
    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    terminology.load_terminology(terminologies)
    segmentation = added.nodes.segmentation.GetSegmentation()
    modifiers = []
    for index in range(3):
        entry = slicer.vtkSlicerTerminologyEntry()
        text = _tag(segmentation.GetNthSegment(index), slicer.vtkSegment.GetTerminologyEntryTagName())
        assert terminologies.DeserializeTerminologyEntry(text, entry)
        terminologies.UpdateEntryFromLoadedTerminologies(entry, [defaults.TERMINOLOGY_CONTEXT], [])
        assert _codes(entry.GetTypeObject()) == defaults.FRACTURE_TYPE_CODE  # still found in our context
        assert entry.GetTypeObject().GetRecommendedDisplayRGBValue() == (230, 80, 40)
        modifiers.append(_codes(entry.GetTypeModifierObject()))
    assert modifiers == [("RibFracSeg", "RibFrac-1", "Displaced fracture"), ("RibFracSeg", "RibFrac-3", "Buckle fracture"),
                         (None, None, None)]  # no type: no modifier
    # the context offers all four types as modifiers of "Fracture of rib", as defaults says them
    fracture = slicer.vtkSlicerTerminologyEntry()
    assert terminologies.FindTypeInTerminologyBy3dSlicerLabel(defaults.TERMINOLOGY_CONTEXT,
                                                              defaults.FRACTURE_SLICER_LABEL, fracture)
    category, kind = fracture.GetCategoryObject(), fracture.GetTypeObject()
    offered = []
    for i in range(terminologies.GetNumberOfTypeModifiersInTerminologyType(defaults.TERMINOLOGY_CONTEXT, category, kind)):
        modifier = slicer.vtkSlicerTerminologyType()
        assert terminologies.GetNthTypeModifierInTerminologyType(defaults.TERMINOLOGY_CONTEXT, category, kind, i, modifier)
        offered.append(_codes(modifier))
    assert offered == [defaults.FRACTURE_TYPE_MODIFIER_CODES[c] for c in (1, 2, 3, 4)]
    data = json.loads(terminology.TERMINOLOGY_FILE.read_text(encoding="utf-8"))
    assert [m["CodeValue"] for m in data["SegmentationCodes"]["Category"][0]["Type"][0]["Modifier"]] == [
        "RibFrac-1", "RibFrac-2", "RibFrac-3", "RibFrac-4"]


def test_points_and_table_say_the_type(typed, tmp_path):
    holder, added = typed
    points, table = added.nodes.points, added.nodes.table.GetTable()
    assert [points.GetNthControlPointLabel(i) for i in range(3)] == ["F1 0.31 displaced", "F2 0.62 buckle", "F3 0.94"]
    assert points.GetNthControlPointDescription(0).endswith(", displaced 0.82")
    assert points.GetNthControlPointDescription(2).endswith(", type undefined")
    column = table.GetColumnByName
    assert [column("code").GetValue(r) for r in range(3)] == [1, 3, -1]
    assert [column("type").GetValue(r) for r in range(3)] == ["displaced", "buckle", "type undefined"]
    p = [column("type_probability").GetValue(r) for r in range(3)]
    assert p[:2] == pytest.approx([0.82, 0.6]) and math.isnan(p[2])
    assert check_nodes(added) == []  # the self-test's table check compares the type columns too
    assert check_files(holder.scene, added, tmp_path, "typed") == []  # ... also after .tsv/.seg.nrrd/.mrk.json reload


def test_the_worker_result_keeps_the_type_fields(tmp_path):
    result = hand_made_result(oblique_image())
    result.detections = [replace(d, **TYPES[d.id]) for d in result.detections]
    exchange.write_output(tmp_path, RunOutput(fractures=result))
    back = exchange.read_output(tmp_path).fractures.detections
    assert back == result.detections
    assert back[0].code_probabilities == (0.82, 0.1, 0.05, 0.03) and back[0].network_confidence == 0.7


def test_the_table_says_what_the_rib_frame_measured():
    holder = make_scene()
    image = oblique_image()
    volume = add_case_volume(holder.scene, MarkedCase("oblique", image, image, {}))
    result = hand_made_result(image)
    measured = dict(gap_mm=1.7, step_mm=3.1, step_uv_mm=(3.0, 0.78), angulation_deg=8.2, frame_code=1)
    result.detections = [replace(d, **TYPES[d.id], **(measured if d.id == 1 else {})) for d in result.detections]
    added = RibFracSegLogicBase(holder.scene).add_results(volume, RunOutput(fractures=result), _options())
    table, points = added.nodes.table.GetTable(), added.nodes.points
    column = table.GetColumnByName
    assert column("measured").GetValue(0) == "displaced 0.82, 3.1 mm step, 1.7 mm gap, 8 deg"
    assert column("measured").GetValue(1) == "buckle 0.60"  # not measured: the type alone
    assert [column("step_mm").GetValue(0), column("gap_mm").GetValue(0), column("angulation_deg").GetValue(0)] == \
        pytest.approx([3.1, 1.7, 8.2])
    assert math.isnan(column("gap_mm").GetValue(1)) and math.isnan(column("step_mm").GetValue(2))
    assert points.GetNthControlPointDescription(0).endswith(", displaced 0.82, 3.1 mm step, 1.7 mm gap, 8 deg")
    assert check_nodes(added) == []

"""Fracture segments carry a terminology that Slicer's own Terminologies logic resolves."""

from __future__ import annotations

import json

import pytest
import slicer
import torch
import vtk

from slicer_cases import probe_case

from RibFracSegLib import defaults  # noqa: E402
from RibFracSegLogicLib import terminology  # noqa: E402

torch.set_num_threads(2)


def _codes(obj) -> tuple[str, str, str]:
    return obj.GetCodingSchemeDesignator(), obj.GetCodeValue(), obj.GetCodeMeaning()


def _region(entry):
    return (getattr(entry, "GetRegionObject", None) or entry.GetAnatomicRegionObject)()


def _region_modifier(entry):
    return (getattr(entry, "GetRegionModifierObject", None) or entry.GetAnatomicRegionModifierObject)()


def _region_context(entry) -> str:
    return (getattr(entry, "GetRegionContextName", None) or entry.GetAnatomicContextName)()


@pytest.fixture
def terminologies():
    return slicer.vtkSlicerTerminologiesModuleLogic()


def test_the_shipped_context_loads_once_and_holds_the_fracture_type(terminologies):
    assert terminology.load_terminology(terminologies) == defaults.TERMINOLOGY_CONTEXT
    assert terminology.load_terminology(terminologies) == defaults.TERMINOLOGY_CONTEXT  # second call: no reload
    found = slicer.vtkSlicerTerminologyEntry()
    assert terminologies.FindTypeInTerminologyBy3dSlicerLabel(defaults.TERMINOLOGY_CONTEXT,
                                                              defaults.FRACTURE_SLICER_LABEL, found)
    assert _codes(found.GetCategoryObject()) == defaults.FRACTURE_CATEGORY_CODE
    assert _codes(found.GetTypeObject()) == defaults.FRACTURE_TYPE_CODE
    data = json.loads(terminology.TERMINOLOGY_FILE.read_text(encoding="utf-8"))
    assert data["SegmentationCategoryTypeContextName"] == defaults.TERMINOLOGY_CONTEXT
    assert data["SegmentationCodes"]["Category"][0]["showAnatomy"] is True  # the selector offers the rib region


@pytest.mark.parametrize("rib,side", [("L6", "L"), ("R11", "R"), ("unnumbered L", "L"), ("none", ""), ("", "")])
def test_rib_side(rib, side):
    assert terminology.rib_side(rib) == side


def test_segments_carry_entries_that_slicers_terminology_logic_resolves(tmp_path, terminologies):
    case = probe_case(tmp_path)
    result = case.logic.process(case.volume, checkpoint=case.checkpoint, device="cpu")
    segmentation = result.nodes.segmentation.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(result.detections) > 0
    terminology.load_terminology(terminologies)
    for index in range(segmentation.GetNumberOfSegments()):
        tag = slicer.vtkSegment.GetTerminologyEntryTagName()
        entry = slicer.vtkSlicerTerminologyEntry()
        text = vtk.reference("")
        assert segmentation.GetNthSegment(index).GetTag(tag, text)
        assert terminologies.DeserializeTerminologyEntry(str(text), entry)
        assert entry.GetTerminologyContextName() == defaults.TERMINOLOGY_CONTEXT
        assert _region_context(entry) == defaults.REGION_CONTEXT
        assert _codes(_region(entry)) == defaults.FRACTURE_REGION_CODE
        # found in the loaded context (its colour comes from our file), so the Segment Editor's selector
        # shows and edits it
        terminologies.UpdateEntryFromLoadedTerminologies(entry, [defaults.TERMINOLOGY_CONTEXT], [])
        assert _codes(entry.GetTypeObject()) == defaults.FRACTURE_TYPE_CODE
        assert entry.GetTypeObject().GetRecommendedDisplayRGBValue() == (230, 80, 40)


def test_the_rib_side_becomes_the_region_modifier(terminologies):
    right = slicer.vtkSlicerTerminologyEntry()
    assert terminologies.DeserializeTerminologyEntry(terminology.fracture_terminology("R"), right)
    assert _codes(_region_modifier(right)) == ("SCT", "24028007", "Right")
    unknown = slicer.vtkSlicerTerminologyEntry()
    assert terminologies.DeserializeTerminologyEntry(terminology.fracture_terminology(""), unknown)
    assert not any(_codes(_region_modifier(unknown)))
    # without our context loaded the same entry resolves to nothing (Slicer's grey): the check above can fail
    unresolved = terminology.fracture_entry("L")
    terminologies.UpdateEntryFromLoadedTerminologies(unresolved, [], [])
    assert unresolved.GetTypeObject().GetRecommendedDisplayRGBValue() == (127, 127, 127)

"""The panel's path from the click to the shown results (PanelRun, as the Widget drives it), on slicer-core."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import slicer.util
import torch

import slicer_cases
from slicer_cases import probe_case
from slicer_scene import make_scene

from RibFracSegLib import defaults  # noqa: E402
from RibFracSegLib.shipped import shipped_model  # noqa: E402
from RibFracSegLogicLib import probe  # noqa: E402
from RibFracSegLogicLib.logic import RibFracSegLogicBase  # noqa: E402
from RibFracSegLogicLib.panel import (PATH_FIELDS, PanelInputs, PanelRun, checkpoint_for_run,  # noqa: E402
                                      first_ct_volume, height_to_keep, path_field, picture_volume_ids, run_options,
                                      store_path_text)
from RibFracSegLogicLib.unfolded import ATTRIBUTE as PICTURE_ATTRIBUTE  # noqa: E402
from RibFracSegLogicLib.runner import DONE  # noqa: E402

torch.set_num_threads(2)


def test_the_l3_model_field_empty_means_the_shipped_l3_model(tmp_path):
    logic = RibFracSegLogicBase(make_scene().scene)
    assert PanelInputs().l3_checkpoint == ""
    assert run_options(logic, PanelInputs(compute_l3=True)).l3_checkpoint is None  # the shipped one, at run time
    assert checkpoint_for_run(str(shipped_model("l3")), "l3") is None
    own = tmp_path / "my-l3.pt"
    own.write_bytes(shipped_model("l3").read_bytes())
    assert run_options(logic, PanelInputs(compute_l3=True, l3_checkpoint=str(own))).l3_checkpoint == str(own)
    assert run_options(logic, PanelInputs(compute_l3=False, l3_checkpoint=str(own))).l3_checkpoint is None
    with pytest.raises(ValueError, match="L3 checkpoint not found: .*gone.pt"):
        run_options(logic, PanelInputs(compute_l3=True, l3_checkpoint=str(tmp_path / "gone.pt")))


def test_an_empty_checkpoint_field_means_the_shipped_model_of_this_installation(tmp_path):
    logic = RibFracSegLogicBase(make_scene().scene)
    assert PanelInputs().checkpoint == ""  # what the parameter node stores by default: no path
    assert checkpoint_for_run("") is None and checkpoint_for_run("  ") is None
    assert run_options(logic, PanelInputs()).checkpoint == str(shipped_model("fracture"))
    # a scene saved by an older version or on another machine holds that installation's shipped path
    stale = "/opt/Slicer-5.6.2/lib/Slicer-5.6/qt-scripted-modules/Resources/Models/ribfrac_default.pt"
    assert checkpoint_for_run(stale) is None
    assert checkpoint_for_run(str(shipped_model("fracture"))) is None
    own = probe.write_probe_checkpoint(tmp_path / "mine.pt")
    assert run_options(logic, PanelInputs(checkpoint=str(own))).checkpoint == str(own)
    with pytest.raises(ValueError, match="Checkpoint not found: .*gone.pt"):
        run_options(logic, PanelInputs(checkpoint=str(tmp_path / "gone.pt")))


def test_the_panels_own_overlap_threshold_and_height_reach_the_run(tmp_path):
    logic = RibFracSegLogicBase(make_scene().scene)
    inputs = PanelInputs(use_checkpoint_settings=False, overlap=0.25, threshold=0.4, compute_l3=True, height_m=1.8)
    options = run_options(logic, inputs)
    assert (options.overlap, options.threshold, options.l3, options.height_m) == (0.25, 0.4, True, 1.8)
    options = run_options(logic, PanelInputs(overlap=0.25, compute_l3=False, height_m=1.8))
    assert (options.overlap, options.threshold, options.l3, options.height_m) == (None, None, False, None)


def panel_parameters(scene, **fields):
    """The panel's parameters as the Widget reads them: a parameterNodeWrapper's fields (given here) over the
    module's real MRML parameter node (what ScriptedLoadableModuleLogic.getParameterNode adds to the scene)."""
    node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    node.SetAttribute("ModuleName", "RibFracSeg")
    values = dict(device="cpu", useCheckpointSettings=True, overlap=defaults.OVERLAP, threshold=defaults.PROB_THRESHOLD,
                  computeL3=True, heightM=0.0, showRibs=False, showUnfolded=False)
    return SimpleNamespace(parameterNode=node, **{**values, **fields})


@pytest.mark.parametrize("field", sorted(PATH_FIELDS))
def test_clearing_a_path_field_after_picking_a_file_runs_the_shipped_model_again(tmp_path, field):
    """What the field's line edit reports on each edit (textChanged: every text, "" included) reaches the
    parameter node and the run; ctkPathLineEdit.currentPathChanged never reported "" nor "x.ckpt"."""
    kind = PATH_FIELDS[field]
    option = {"fracture": "checkpoint", "l3": "l3_checkpoint"}[kind]
    shipped = {"fracture": str(shipped_model("fracture")), "l3": None}[kind]  # the L3 option: None = shipped
    scene = make_scene().scene
    logic = RibFracSegLogicBase(scene)
    p = panel_parameters(scene)
    own = tmp_path / "mine.pt"
    own.write_bytes(shipped_model(kind).read_bytes())

    assert store_path_text(p.parameterNode, field, f"  {own}  ")  # picked (browse / history / typed)
    assert p.parameterNode.GetParameter(field) == str(own)
    assert getattr(run_options(logic, PanelInputs.from_parameter_node(p)), option) == str(own)
    assert store_path_text(p.parameterNode, field, "")  # the user empties the field
    assert path_field(p.parameterNode, field) == ""
    assert getattr(run_options(logic, PanelInputs.from_parameter_node(p)), option) == shipped
    assert not store_path_text(p.parameterNode, field, "")  # the Widget writing the same text back: no change
    # a name the field's filter (*.pt *.pth) does not accept is stored and refused by name, not ignored
    store_path_text(p.parameterNode, field, str(tmp_path / "x.ckpt"))
    with pytest.raises(ValueError, match=r"[Cc]heckpoint not found: .*x\.ckpt"):
        run_options(logic, PanelInputs.from_parameter_node(p))


def test_path_fields_saved_as_wrapper_strings_read_back_and_other_names_are_refused():
    node = slicer.vtkMRMLScriptedModuleNode()
    assert path_field(node, "checkpoint") == path_field(node, "l3Checkpoint") == ""  # never set: the shipped models
    node.SetParameter("l3Checkpoint", "/models/l3.pt")  # what parameterNodeWrapper's StringSerializer wrote
    assert path_field(node, "l3Checkpoint") == "/models/l3.pt"
    with pytest.raises(KeyError, match="not a path field"):
        store_path_text(node, "device", "cpu")


def test_the_panels_first_ct_is_no_picture_nor_label_map_and_pictures_are_hidden_from_the_selector():
    holder = make_scene()
    scene = holder.scene
    picture = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT unfolded ribs")
    picture.SetAttribute(PICTURE_ATTRIBUTE, "1.0")  # what add_unfolded_nodes marks it with
    scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    assert first_ct_volume(scene) is None
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    assert first_ct_volume(scene) is ct and picture_volume_ids(scene) == [picture.GetID()]


def test_the_height_spin_box_keeps_only_unknown_or_heights_a_run_accepts():
    """Stepping the spin box (0.01 m) up from 0 to the top and back, and typing into the gap: every kept
    value is 0 (unknown: no SMI) or a height the run accepts; nothing between 0 and the lowest height."""
    logic = RibFracSegLogicBase(make_scene().scene)
    lo, hi = defaults.HEIGHT_RANGE_M

    def press(shown: float, step: float) -> float:  # an arrow press: the box offers shown + step, the panel keeps
        return height_to_keep(shown, min(max(round(shown + step, 2), 0.0), hi))

    up = [0.0]
    while up[-1] < hi:
        up.append(press(up[-1], 0.01))
    down = [hi]
    while down[-1] > 0.0:
        down.append(press(down[-1], -0.01))
    assert up[:2] == [0.0, lo] and down[-2:] == [lo, 0.0]  # one press across the gap, either way
    kept = set(up) | set(down)
    assert kept == {0.0} | {round(0.01 * i, 2) for i in range(int(lo * 100), int(hi * 100) + 1)}
    for height in set(kept):
        options = run_options(logic, PanelInputs(compute_l3=True, height_m=height))
        assert options.height_m == (height or None)
    assert height_to_keep(1.75, 0.3) == 0.0 and height_to_keep(0.0, 0.3) == lo  # typed into the gap
    with pytest.raises(ValueError, match="not a height in metres"):  # what the spin box used to let through
        run_options(logic, PanelInputs(compute_l3=True, height_m=0.3))


@pytest.fixture(scope="module")
def abdomen_case(tmp_path_factory):
    """A thorax+abdomen phantom (L3 in view), fractures painted for the probe, in a headless scene."""
    return slicer_cases.abdomen_case(tmp_path_factory.mktemp("ckpt"))


def _table_rows(table) -> dict[str, float]:
    return {table.GetCellText(r, 0): float(table.GetCellText(r, 1)) for r in range(table.GetNumberOfRows())}


def test_background_run_with_l3_adds_the_l3_point_and_the_body_composition_table(abdomen_case):
    from RibFracSegLib.l3 import body_composition
    from RibFracSegLib.l3.body_composition import TISSUE_TITLES
    from RibFracSegLib.l3.check import locate_l3_checked

    case, marked, holder, volume, checkpoint = abdomen_case
    logic = RibFracSegLogicBase(holder.scene)
    run = PanelRun(logic, volume, PanelInputs(checkpoint=checkpoint, device="cpu", compute_l3=True, height_m=1.75),
                   preload=[probe.MODULE])
    assert run.wait(timeout=300) == DONE, run.error
    assert run.progress[0] == run.progress[1] > 0 and run.status_text().endswith("L3 and body composition…")
    outcome = run.finish()
    nodes = outcome.result.nodes
    assert outcome.outputs["outputBodyComposition"] is nodes.l3_table is not None
    assert outcome.outputs["outputSegmentation"] is nodes.segmentation
    # the L3 point is where the phantom's L3 vertebral body is (RAS = LPS with x, y negated)
    truth_ras = np.multiply(case.l3.center_lps, (-1, -1, 1))
    assert nodes.l3_point.GetNumberOfControlPoints() == 1 and nodes.l3_point.GetNthControlPointLabel(0) == "L3"
    assert np.linalg.norm(np.subtract(nodes.l3_point.GetNthControlPointPositionVector(0), truth_ras)) < 6.0
    # ... and the background run measured what the library measures in this process (L3 checked: the
    # vertebral count named from the run's ribs, and the network)
    expected_l3 = locate_l3_checked(marked.image, ribs=outcome.result.output.fractures.ribs)
    expected = body_composition(marked.image, expected_l3, height_m=1.75)
    rows = _table_rows(nodes.l3_table)
    assert rows["l3_in_view"] == 1.0 and rows["l3_slice_index"] == expected_l3.slice_index
    assert rows["l3_review"] == float(expected_l3.review) and rows["l3_count_z_mm"] == pytest.approx(
        expected_l3.count_z_mm, abs=0.01)
    notes = {nodes.l3_table.GetCellText(r, 0): nodes.l3_table.GetCellText(r, 3)
             for r in range(nodes.l3_table.GetNumberOfRows())}
    assert notes["l3_source"] == expected_l3.source and notes["l3_count_z_mm"] == f"count from {expected_l3.count_anchor}"
    # the tissue masks on the L3 slice, one segment per tissue, as many voxels as the mask holds
    segmentation = nodes.tissues.GetSegmentation()
    assert outcome.outputs.get("outputSegmentation") is nodes.segmentation  # the fractures stay the shown one
    for value, title in TISSUE_TITLES.items():
        segment_id = segmentation.GetSegmentIdBySegmentName(title)
        count = int((expected.mask == value).sum())
        assert bool(segment_id) == (count > 0), title
        if count:
            array = slicer.util.arrayFromSegmentInternalBinaryLabelmap(nodes.tissues, segment_id)
            assert int(np.count_nonzero(array)) == count, title
    for measure in ("muscle_cm2", "sat_cm2", "vat_cm2"):
        assert rows[measure] == pytest.approx(getattr(expected, measure), rel=1e-5), measure
    assert rows["smi"] == pytest.approx(expected.muscle_cm2 / 1.75 ** 2, rel=1e-5) and rows["height_m"] == 1.75
    assert f"L3 at S = {expected_l3.z_mm:.1f} mm." in outcome.message
    # the vertebral count crossed the worker: the named bodies as labelled points, top to bottom
    named = sorted((v for v in expected_l3.levels.vertebrae if v.name), key=lambda v: -v.centre_lps[2])
    points = nodes.vertebrae
    labels = [points.GetNthControlPointLabel(i) for i in range(points.GetNumberOfControlPoints())]
    assert named and labels == [v.name for v in named]
    for i, v in enumerate(named):
        np.testing.assert_allclose(points.GetNthControlPointPositionVector(i), v.centre_ras, atol=0.01)
    assert len(outcome.result.detections) == nodes.segmentation.GetSegmentation().GetNumberOfSegments() > 0


def test_a_run_without_l3_clears_the_body_composition_selector_and_times_from_the_click(abdomen_case):
    case, marked, holder, volume, checkpoint = abdomen_case
    ticks = iter([100.0, 107.5])  # the click, then the results in the scene
    run = PanelRun(RibFracSegLogicBase(holder.scene), volume, PanelInputs(checkpoint=checkpoint, device="cpu"),
                   clock=lambda: next(ticks), preload=[probe.MODULE])
    assert run.wait(timeout=300) == DONE, run.error
    outcome = run.finish()
    assert "outputBodyComposition" in outcome.outputs and outcome.outputs["outputBodyComposition"] is None
    assert outcome.seconds == 7.5
    assert outcome.message == f"{len(outcome.result.detections)} fractures found in 7.5 s."


def test_a_cancelled_panel_run_cannot_be_finished(tmp_path):
    case = probe_case(tmp_path)
    before = case.holder.node_ids()
    run = PanelRun(case.logic, case.volume, PanelInputs(checkpoint=case.checkpoint, device="cpu"),
                   preload=[probe.MODULE])
    run.cancel()
    with pytest.raises(RuntimeError, match="cancelled"):
        run.finish()
    assert case.holder.node_ids() == before

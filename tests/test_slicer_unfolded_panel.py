"""The panel's "Rib unfolded view" option on real MRML (slicer-core): a background run adds the picture and its
fracture points only on success, the layout switches to the picture's view, a fracture row jumps the CT views
to the fracture and the picture to its box, and a click on the picture jumps the CT views."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import numpy as np
import pytest
import slicer
import torch

from slicer_scene import add_module_path, make_scene

from RibFracSegLib import defaults
from RibFracSegLib.detections import known_type

add_module_path()

from RibFracSegLogicLib import probe, selftest  # noqa: E402
from RibFracSegLogicLib import unfolded as unfolded_mod  # noqa: E402
from RibFracSegLogicLib.logic import RibFracSegLogicBase  # noqa: E402
from RibFracSegLogicLib.panel import (TABLE_ATTRIBUTE, PanelInputs, PanelRun, add_unfolded,  # noqa: E402
                                      fracture_in_table, jump_from_unfolded_click, jump_to_table_row,
                                      picture_volume_ids, show_unfolded)
from RibFracSegLogicLib.runner import DONE  # noqa: E402

torch.set_num_threads(2)
CT_VIEWS = ("Red", "Yellow", "Green")


def _origin(slice_node) -> np.ndarray:
    return slicer.util.arrayFromVTKMatrix(slice_node.GetSliceToRAS())[:3, 3]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One thorax phantom fine enough for ribs (2 mm in-plane, 3.6 mm slices), run with the option on; the views
    of our layout made by slice logics as the layout manager makes them (slice + composite node each)."""
    from RibFracSegLib.phantom import PhantomParams, generate_phantom

    case = generate_phantom(PhantomParams(shape=(165, 165, 90), spacing=(2.0, 2.0, 3.6), fov="thorax",
                                          orientation="LPS", n_fractures=4, seed=7))
    marked = selftest.MarkedCase("thorax", probe.paint_marker(case.image, case.fracture_labels),
                                 case.fracture_labels, {})
    holder = make_scene()
    volume = selftest.add_case_volume(holder.scene, marked)
    checkpoint = str(probe.write_probe_checkpoint(tmp_path_factory.mktemp("ckpt") / "probe.pt"))
    views, slice_logics = {}, []
    for view in ET.fromstring(unfolded_mod.unfolded_layout_xml()).iter("view"):  # as the layout manager does
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLApplicationLogic(holder.app_logic)
        logic.SetMRMLScene(holder.scene)
        node = logic.AddSliceNode(view.get("singletontag"))
        node.SetOrientation(next(p.text for p in view.iter("property") if p.get("name") == "orientation"))
        views[node.GetLayoutName()] = (node, logic.GetSliceCompositeNode())
        slice_logics.append(logic)
    layout = holder.scene.AddNewNodeByClass("vtkMRMLLayoutNode")
    before = holder.node_ids()
    run = PanelRun(RibFracSegLogicBase(holder.scene), volume,
                   PanelInputs(checkpoint=checkpoint, device="cpu", unfolded=True), preload=[probe.MODULE])
    assert run.wait(timeout=600) == DONE, run.error
    outcome = run.finish()
    return SimpleNamespace(holder=holder, volume=volume, views=views, layout=layout, before=before,
                           outcome=outcome, checkpoint=checkpoint, slice_logics=slice_logics)


def test_the_option_comes_from_the_parameter_node_and_defaults_off():
    assert PanelInputs().unfolded is False
    stored = SimpleNamespace(parameterNode=slicer.vtkMRMLScriptedModuleNode(), device="cpu", useCheckpointSettings=True,
                             overlap=0.5, threshold=0.1, computeL3=False, heightM=0.0, showRibs=False, showUnfolded=True)
    assert PanelInputs.from_parameter_node(stored).unfolded is True


def test_a_successful_run_adds_the_picture_and_a_point_per_fracture_on_a_rib(finished):
    outcome, scene = finished.outcome, finished.holder.scene
    nodes = outcome.unfolded
    detections = outcome.result.detections
    assert len(detections) == 4 and outcome.message == f"4 fractures found in {outcome.seconds:.1f} s."
    assert nodes.volume.GetName() == "thorax unfolded ribs" and nodes.points.GetName() == "thorax unfolded fractures"
    # exactly the run's nodes plus the picture's two (and their display/storage helpers) are new
    added = [scene.GetNodeByID(i) for i in finished.holder.node_ids() if i not in finished.before]
    volumes = [n for n in added if n.IsA("vtkMRMLScalarVolumeNode")]
    assert volumes == [nodes.volume]
    assert nodes.volume.GetAttribute(TABLE_ATTRIBUTE) == outcome.result.nodes.table.GetID()
    assert slicer.util.arrayFromVolume(nodes.volume).shape == (1, *nodes.unfolded.image.shape)
    marked = {i: m for i, m in nodes.marks.items() if m is not None}
    assert set(marked) == {d.id for d in detections if d.rib != "none"} and len(marked) == 4
    assert nodes.points.GetNumberOfControlPoints() == 4
    for index, (det_id, mark) in enumerate(sorted(marked.items())):
        det = next(d for d in detections if d.id == det_id)
        kind = known_type(det.label_code)  # the type measured in the rib's frame
        assert kind and nodes.points.GetNthControlPointLabel(index) == f"F{det_id} {det.rib} {kind}" and mark.rib == det.rib
        position = nodes.points.GetNthControlPointPositionVector(index)
        assert np.allclose(position, unfolded_mod.picture_ras(nodes.unfolded, mark.row, mark.col))
        behind = unfolded_mod.ct_ras_from_picture(nodes.unfolded, position)
        assert np.linalg.norm(np.subtract(behind, det.center_ras)) < 1.0 + abs(mark.depth_mm)


def test_the_panel_switches_to_the_unfolded_layout_and_shows_the_picture_alone(finished):
    scene, nodes, layout = finished.holder.scene, finished.outcome.unfolded, finished.layout
    view, composite = finished.views[defaults.UNFOLD_SLICER_VIEW]
    assert show_unfolded(scene, layout, nodes) is view
    assert layout.GetViewArrangement() == defaults.UNFOLD_SLICER_LAYOUT_ID
    show_unfolded(scene, layout, nodes)  # again: the description is registered once, still ours
    assert layout.GetViewArrangement() == defaults.UNFOLD_SLICER_LAYOUT_ID
    tree = ET.fromstring(layout.GetCurrentLayoutDescription())
    tags = [v.get("singletontag") for v in tree.iter("view")]
    assert tags == [defaults.UNFOLD_SLICER_VIEW, *CT_VIEWS]
    assert composite.GetBackgroundVolumeID() == nodes.volume.GetID() and composite.GetForegroundVolumeID() is None
    for name in CT_VIEWS:
        assert finished.views[name][1].GetBackgroundVolumeID() != nodes.volume.GetID()
    rows, cols = nodes.unfolded.image.shape
    assert np.allclose(_origin(view), unfolded_mod.picture_ras(nodes.unfolded, 0.5 * (rows - 1), 0.5 * (cols - 1)))
    assert view.GetFieldOfView()[0] == pytest.approx(cols * nodes.unfolded.pixel_mm)
    assert view.GetOrientation() == "Coronal"


def test_the_picture_is_kept_out_of_the_ct_selector_and_refused_as_a_ct(finished):
    scene, picture = finished.holder.scene, finished.outcome.unfolded.volume
    assert picture_volume_ids(scene) == [picture.GetID()]  # the selector's hiddenNodeIDs
    with pytest.raises(ValueError, match="'.* unfolded ribs' is the rib-unfolded picture of a run, not a CT"):
        RibFracSegLogicBase(scene).process(picture, checkpoint=finished.checkpoint, device="cpu")


def test_a_fracture_row_jumps_the_ct_views_to_it_and_the_unfolded_view_to_its_box(finished):
    scene, nodes, table = finished.holder.scene, finished.outcome.unfolded, finished.outcome.result.nodes.table
    view, _ = finished.views[defaults.UNFOLD_SLICER_VIEW]
    show_unfolded(scene, finished.layout, nodes)
    for det in finished.outcome.result.detections:
        assert fracture_in_table(table, f" {det.id} ") == (det.id, pytest.approx(det.center_ras))
        assert jump_to_table_row(scene, table, str(det.id), nodes, view) == pytest.approx(det.center_ras)
        for name in CT_VIEWS:
            assert np.allclose(_origin(finished.views[name][0]), det.center_ras, atol=1e-6), name
        mark = nodes.marks[det.id]
        assert np.allclose(_origin(view), unfolded_mod.picture_ras(nodes.unfolded, mark.row, mark.col))
    # not a fracture row (the header, an id not in the table): nothing moves
    before = {name: _origin(node) for name, (node, _) in finished.views.items()}
    for text in ("id", "", "99"):
        assert jump_to_table_row(scene, table, text, nodes, view) is None
    assert all(np.allclose(_origin(node), before[name]) for name, (node, _) in finished.views.items())
    # another run's table (same ids): the CT views jump, the picture (not of that run) stays where it is
    other = scene.AddNewNodeByClass("vtkMRMLTableNode", "another run")
    other.Copy(table)
    det = finished.outcome.result.detections[0]
    picture_before = _origin(view)
    assert jump_to_table_row(scene, other, str(det.id), nodes, view) == pytest.approx(det.center_ras)
    assert np.allclose(_origin(view), picture_before)
    assert np.allclose(_origin(finished.views["Red"][0]), det.center_ras)
    assert fracture_in_table(finished.outcome.result.nodes.l3_table, "1") is None  # no L3 table: None given
    scene.RemoveNode(other)


def test_a_click_on_the_picture_jumps_the_ct_views_to_the_fracture_behind_it(finished):
    scene, nodes = finished.holder.scene, finished.outcome.unfolded
    view, _ = finished.views[defaults.UNFOLD_SLICER_VIEW]
    show_unfolded(scene, finished.layout, nodes)
    centre = _origin(view)
    ras_to_xy = np.linalg.inv(slicer.util.arrayFromVTKMatrix(view.GetXYToRAS()))
    for det in finished.outcome.result.detections:
        mark = nodes.marks[det.id]
        x, y, z, _ = ras_to_xy @ [*unfolded_mod.picture_ras(nodes.unfolded, mark.row, mark.col), 1.0]
        assert z == pytest.approx(0.0, abs=1e-6)  # the picture lies in the view's slice
        ct = jump_from_unfolded_click(scene, nodes, view, x, y)
        assert np.linalg.norm(np.subtract(ct, det.center_ras)) < 1.0 + abs(mark.depth_mm)
        for name in CT_VIEWS:
            assert np.allclose(_origin(finished.views[name][0]), ct, atol=1e-6), name
    assert np.allclose(_origin(view), centre)  # the picture's own view does not move
    red = _origin(finished.views["Red"][0])
    gap = unfolded_mod.picture_ras(nodes.unfolded, nodes.unfolded.pitch_px - 1, 10)  # between two rib rows
    x, y, _, _ = ras_to_xy @ [*gap, 1.0]
    assert jump_from_unfolded_click(scene, nodes, view, x, y) is None
    assert np.allclose(_origin(finished.views["Red"][0]), red)


def test_no_ribs_or_a_failed_unfolding_adds_no_picture_and_keeps_the_fractures(finished):
    holder, result = finished.holder, finished.outcome.result
    before = holder.node_ids()
    no_ribs = dataclasses.replace(result, output=dataclasses.replace(
        result.output, fractures=dataclasses.replace(result.output.fractures, ribs=None)))
    assert add_unfolded(holder.scene, finished.volume, no_ribs) == (None, " No rib-unfolded view: no ribs were found.")
    broken = dataclasses.replace(result, detections=[*result.detections, "not a detection"])
    nodes, note = add_unfolded(holder.scene, finished.volume, broken)
    assert nodes is None and note.startswith(" No rib-unfolded view: ")
    assert holder.node_ids() == before
    assert all(holder.scene.GetNodeByID(n.GetID()) is n for n in result.nodes.all())


def test_a_cancelled_run_with_the_option_adds_nothing(finished):
    holder = finished.holder
    before = holder.node_ids()
    run = PanelRun(RibFracSegLogicBase(holder.scene), finished.volume,
                   PanelInputs(checkpoint=finished.checkpoint, device="cpu", unfolded=True), preload=[probe.MODULE])
    run.cancel()
    with pytest.raises(RuntimeError, match="cancelled"):
        run.finish()
    assert holder.node_ids() == before

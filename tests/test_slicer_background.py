"""The panel's path: a PythonSlicer-style subprocess run, polled, cancelled by kill, results read back."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from slicer_scene import add_module_path, make_scene

add_module_path()

from RibFracSegLib.l3 import BodyComposition, L3Result  # noqa: E402
from RibFracSegLogicLib import exchange, probe, selftest  # noqa: E402
from RibFracSegLogicLib.compute import RunOptions, RunOutput  # noqa: E402
from RibFracSegLogicLib.logic import RibFracSegLogicBase  # noqa: E402
from RibFracSegLogicLib.nodes import add_l3_nodes, body_composition_rows  # noqa: E402
from RibFracSegLogicLib.runner import CANCELLED, FAILED, RUNNING  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    holder = make_scene()
    checkpoint = str(probe.write_probe_checkpoint(tmp_path_factory.mktemp("ckpt") / "probe.pt"))
    case = selftest.phantom_case("LPS")
    volume = selftest.add_case_volume(holder.scene, case)
    logic = RibFracSegLogicBase(holder.scene)
    return holder, logic, volume, checkpoint


@pytest.fixture(scope="module")
def fractures(setup):
    holder, logic, volume, checkpoint = setup
    return logic.process(volume, checkpoint=checkpoint, device="cpu").output.fractures


def test_background_run_equals_the_in_process_run_and_cancels(setup):
    holder, logic, volume, checkpoint = setup
    before = holder.node_ids()
    expected = logic.process(volume, checkpoint=checkpoint, device="cpu")
    assert selftest.check_background(logic, volume, checkpoint, expected) == []
    assert len(holder.node_ids()) > len(before)  # the finished runs did add their nodes


def test_cancel_mid_run_kills_the_worker_and_leaves_no_trace(setup):
    holder, logic, volume, checkpoint = setup
    before = holder.node_ids()
    run = logic.start_background(volume, logic.options(checkpoint, device="cpu"), preload=[probe.MODULE])
    while run.state == RUNNING and run.progress[1] == 0:  # until the worker is inside the patch loop
        run.poll()
        time.sleep(0.02)
    assert run.state == RUNNING, run.error
    run.cancel()
    assert run.state == CANCELLED
    assert run.returncode == (-signal.SIGKILL if os.name == "posix" else 1)  # it was killed, not finished
    assert not run.workdir.exists()
    assert holder.node_ids() == before
    with pytest.raises(RuntimeError, match="cancelled"):
        logic.finish_background(volume, run)


def test_worker_error_reaches_the_caller_and_changes_nothing(setup, tmp_path):
    holder, logic, volume, _ = setup
    broken = tmp_path / "broken.pt"
    broken.write_text("not a checkpoint")
    before = holder.node_ids()
    run = logic.start_background(volume, logic.options(str(broken), device="cpu"))
    assert run.wait(timeout=120) == FAILED
    assert "CheckpointError" in run.error and "broken.pt" in run.error
    assert not run.workdir.exists()
    assert holder.node_ids() == before


def _l3_output(fracture_result) -> RunOutput:
    l3 = L3Result(in_view=True, confidence=0.8, slice_index=12, z_mm=-140.5, center_ras=(1.5, -20.0, -140.5),
                  center_lps=(-1.5, 20.0, -140.5), row_mm=310.0, view_rows_mm={"sagittal": 310.0},
                  view_confidences={"sagittal": 0.8})
    mask = np.zeros((4, 5), np.uint8)
    mask[1:3, 2:4] = 2
    body = BodyComposition(muscle_cm2=150.25, sat_cm2=120.5, vat_cm2=90.0, imat_cm2=None, smi=49.06,
                           slice_index=12, height_m=1.75, mask=mask)
    return RunOutput(fractures=fracture_result, l3=l3, body=body, timings_s={"l3": 0.1})


def test_exchange_round_trip_keeps_the_l3_check_and_the_tissue_labels(fractures, tmp_path):
    """A checked L3 (count + network, the review and its reason) and the tissue label image cross the
    worker's boundary whole; the table then says where L3 came from and why to look."""
    from RibFracSegLib.l3.check import L3Check

    output = _l3_output(fractures)
    check = L3Check(in_view=True, source="count", z_mm=-145.25, center_lps=(-1.5, 20.0, -145.25), slice_index=11,
                    review=True, review_reason="count (rib 12) and network disagree by 20 mm", count_anchor="rib 12",
                    lumbar_count=None, count_z_mm=-145.25, network_z_mm=-125.25, difference_mm=-20.0,
                    network=output.l3, notes=["7 of 8 lowest numbered ribs agree on T12 (rib 12)"])
    tissues = sitk.Image(5, 4, 3, sitk.sitkUInt8)
    tissues.SetSpacing((0.8, 0.8, 2.5))
    tissues[2, 1, 1] = 1
    tissues[3, 2, 1] = 2
    output.l3, output.tissues = check, tissues
    bodies = [{"name": "L3", "centre_ras": [1.5, -20.0, -145.25], "z_top_mm": -130.0, "z_bottom_mm": -160.5,
               "complete": True},
              {"name": None, "centre_ras": [1.5, -21.0, -180.0], "z_top_mm": -165.0, "z_bottom_mm": -190.0,
               "complete": False}]
    output.levels = {"anchor": "rib 12", "notes": ["7 of 8 lowest numbered ribs agree on T12"], "vertebrae": bodies}
    exchange.write_output(tmp_path, output)
    back = exchange.read_output(tmp_path)
    assert back.l3 == check and isinstance(back.l3, L3Check) and back.l3.network == output.l3.network
    assert back.levels == output.levels  # the vertebral count, for the '<CT> vertebrae' points
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back.tissues), sitk.GetArrayFromImage(tissues))
    assert back.tissues.GetSpacing() == tissues.GetSpacing()
    rows = {m: (v, u, n) for m, v, u, n in body_composition_rows(back.l3, back.body, 1.75)}
    assert rows["l3_source"][2] == "count" and rows["l3_review"][:1] == (1.0,)
    assert rows["l3_review"][2] == "count (rib 12) and network disagree by 20 mm"
    assert rows["l3_difference_mm"][0] == -20.0 and rows["l3_count_z_mm"][2] == "count from rib 12"


def test_exchange_round_trip_keeps_l3_and_body_composition(fractures, tmp_path):
    output = _l3_output(fractures)
    exchange.write_output(tmp_path, output)
    back = exchange.read_output(tmp_path)
    assert back.l3 == output.l3 and back.body == output.body
    np.testing.assert_array_equal(back.body.mask, output.body.mask)
    assert back.fractures.detections == fractures.detections
    assert back.timings_s == {"l3": 0.1}


def test_l3_nodes_hold_the_point_and_the_measures(setup, fractures):
    holder, logic, volume, checkpoint = setup
    output = _l3_output(fractures)
    result = logic.add_results(volume, output, RunOptions(checkpoint=checkpoint, l3=True, height_m=1.75))
    point, table = result.nodes.l3_point, result.nodes.l3_table
    assert point.GetNumberOfControlPoints() == 1 and point.GetNthControlPointLabel(0) == "L3"
    np.testing.assert_allclose(point.GetNthControlPointPositionVector(0), (1.5, -20.0, -140.5))
    rows = {table.GetCellText(r, 0): float(table.GetCellText(r, 1)) for r in range(table.GetNumberOfRows())}
    assert rows["muscle_cm2"] == 150.25 and rows["smi"] == 49.06 and rows["l3_slice_index"] == 12
    assert np.isnan(rows["imat_cm2"])  # not measured -> NaN, not a made-up 0
    assert rows["height_m"] == 1.75
    # both tables show their column names (and units) as the view's header, not as an editable first row
    assert table.GetUseColumnTitleAsColumnHeader() and result.nodes.table.GetUseColumnTitleAsColumnHeader()


def test_l3_out_of_view_gives_a_table_and_no_point():
    l3 = L3Result(in_view=False, confidence=0.02, slice_index=-1, z_mm=float("nan"), center_ras=(0, 0, 0),
                  center_lps=(0, 0, 0), row_mm=float("nan"))
    rows = body_composition_rows(l3, None, None)
    assert rows == [("l3_in_view", 0.0, "", ""), ("l3_confidence", 0.02, "", "")]
    holder = make_scene()
    point, table = add_l3_nodes(holder.scene, l3, None, None, "ct")
    assert point is None and table.GetNumberOfRows() == 2


def test_l3_through_the_logic_equals_the_library(tmp_path):
    """Wiring only (an untrained locator): the nodes say what locate_l3/body_composition return."""
    from RibFracSegLib.checkpoint import Checkpoint, save_checkpoint
    from RibFracSegLib.l3 import body_composition
    from RibFracSegLib.l3.check import locate_l3_checked
    from RibFracSegLib.networks import build_network
    from RibFracSegLib.phantom import PhantomParams, generate_phantom

    torch.manual_seed(0)
    l3_ckpt = save_checkpoint(tmp_path / "l3.pt", Checkpoint.from_model("l3_unet2d", build_network("l3_unet2d")))
    case = generate_phantom(PhantomParams(shape=(64, 56, 80), spacing=(5.0, 5.0, 6.0), fov="thorax_abdomen",
                                          n_fractures=2, seed=5))
    marked = selftest.MarkedCase("l3", probe.paint_marker(case.image, case.fracture_labels), case.fracture_labels, {})
    holder = make_scene()
    volume = selftest.add_case_volume(holder.scene, marked)
    fracture_ckpt = str(probe.write_probe_checkpoint(tmp_path / "probe.pt"))
    logic = RibFracSegLogicBase(holder.scene)
    with pytest.raises(ValueError, match="L3 checkpoint not found"):
        logic.process(volume, checkpoint=fracture_ckpt, l3=True, l3_checkpoint=tmp_path / "none.pt")
    result = logic.process(volume, checkpoint=fracture_ckpt, device="cpu", l3=True, height_m=1.7,
                           l3_checkpoint=str(l3_ckpt))
    # L3 as the library checks it: the vertebral count (named from the fracture run's ribs) and the network
    expected = locate_l3_checked(marked.image, checkpoint=str(l3_ckpt), ribs=result.output.fractures.ribs)
    assert result.output.l3 == expected
    table = result.nodes.l3_table
    rows = {table.GetCellText(r, 0): float(table.GetCellText(r, 1)) for r in range(table.GetNumberOfRows())}
    assert rows["l3_in_view"] == float(expected.in_view)
    if expected.in_view:
        body = body_composition(marked.image, expected, height_m=1.7)
        assert rows["muscle_cm2"] == pytest.approx(body.muscle_cm2, rel=1e-5)
        np.testing.assert_allclose(result.nodes.l3_point.GetNthControlPointPositionVector(0), expected.center_ras)
    else:
        assert result.nodes.l3_point is None and result.output.body is None
    # every detection is a painted truth fracture (the on-rib filter may drop one the coarse phantom's
    # rib step placed off every rib, so the count is not fixed)
    truth_ijk = [f.center_ijk for f in case.fractures]
    assert result.detections and all(
        min(np.abs(np.subtract(d.centroid_ijk, t)).max() for t in truth_ijk) < 0.5 for d in result.detections)


def test_input_hand_over_keeps_geometry_bit_exact(tmp_path):
    from scipy.spatial.transform import Rotation

    image = sitk.Image(7, 6, 5, sitk.sitkInt16)
    image.SetSpacing((0.7031249999999999, 0.7031250000000001, 1.25))
    image.SetOrigin((-180.123456789, 12.5, -1000.000000001))
    image.SetDirection(Rotation.from_euler("xyz", [3, -11, 7], degrees=True).as_matrix().ravel().tolist())
    exchange.write_input(tmp_path, image, RunOptions())
    back, options = exchange.read_input(tmp_path)
    assert (back.GetSpacing(), back.GetOrigin(), back.GetDirection()) == \
        (image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    assert options == RunOptions()

"""The module's Logic end to end on real MRML classes: marked phantoms (LPS and oblique storage)
through the probe checkpoint, so every expected number is known in advance.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from slicer_scene import import_module_file, make_scene

from RibFracSegLib.geometry import ras_to_index
from RibFracSegLib.errors import Cancelled
from RibFracSegLib.inference import segment_ct

module = import_module_file()  # RibFracSeg.py itself, imported headless

from RibFracSegLogicLib import probe, selftest  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(probe.write_probe_checkpoint(tmp_path_factory.mktemp("ckpt") / "probe.pt"))


@pytest.fixture(scope="module", params=["LPS", "oblique"])
def run(request, checkpoint):
    """One marked phantom processed by the module's Logic in a fresh scene."""
    holder = make_scene()
    case = selftest.phantom_case(request.param)
    volume = selftest.add_case_volume(holder.scene, case)
    logic = module.RibFracSegLogic(scene=holder.scene)
    seen = []
    result = logic.process(volume, checkpoint=checkpoint, device="cpu", progress=lambda d, t: seen.append((d, t)))
    return {"holder": holder, "case": case, "volume": volume, "logic": logic, "result": result, "progress": seen}


def test_module_file_imports_without_the_gui():
    assert module.GUI_AVAILABLE is False
    assert issubclass(module.RibFracSegLogic, selftest.RibFracSegLogicBase)


def test_detections_equal_the_library_and_the_truth(run, checkpoint):
    case, result = run["case"], run["result"]
    library = segment_ct(case.image, checkpoint, device="cpu")
    assert result.detections == library.detections
    assert len(result.detections) == len(case.truth_ras) >= 2
    assert all(d.confidence > 0.99 for d in result.detections)  # the probe is certain on the marker
    assert selftest.check_against_truth(case, result) == []


def test_points_within_half_a_voxel_of_the_truth(run):
    case, points = run["case"], run["result"].nodes.points
    found = [ras_to_index(case.image, points.GetNthControlPointPositionVector(n))
             for n in range(points.GetNumberOfControlPoints())]
    truth = [ras_to_index(case.image, c) for c in case.truth_ras.values()]
    offsets = [min(np.abs(np.subtract(f, t)).max() for t in truth) for f in found]
    assert len(found) == len(truth) >= 2 and max(offsets) <= 0.5, offsets


def test_segments_points_table_match_detections(run):
    result = run["result"]
    assert selftest.check_nodes(result, run["volume"]) == []
    segmentation = result.nodes.segmentation
    role = segmentation.GetReferenceImageGeometryReferenceRole()
    assert segmentation.GetNodeReference(role).GetID() == run["volume"].GetID()
    truth_sizes = sorted(np.bincount(sitk.GetArrayViewFromImage(run["case"].labels).ravel())[1:])
    assert sorted(d.voxel_count for d in result.detections) == truth_sizes


def test_progress_reports_every_patch(run):
    seen = run["progress"]
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] > 0
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_files_written_and_read_back_equal(run, tmp_path):
    assert selftest.check_files(run["holder"].scene, run["result"], tmp_path, "case") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "case.mrk.json", "case.schema.tsv", "case.seg.nrrd", "case.tsv"]


def test_cancel_leaves_the_scene_unchanged(run, checkpoint):
    assert selftest.check_cancel(run["logic"], run["volume"], checkpoint) == []
    before = run["holder"].node_ids()
    with pytest.raises(Cancelled):  # cancelled before the first batch
        run["logic"].process(run["volume"], checkpoint=checkpoint, device="cpu", cancel=lambda: True)
    assert run["holder"].node_ids() == before


def test_bad_options_are_refused_before_any_work(run, tmp_path):
    logic, volume = run["logic"], run["volume"]
    before = run["holder"].node_ids()
    with pytest.raises(ValueError, match="Checkpoint not found"):
        logic.process(volume, checkpoint=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="Device must be one of"):
        logic.process(volume, device="tpu", checkpoint=__file__)
    with pytest.raises(ValueError, match="Overlap must be in"):
        logic.process(volume, overlap=1.5, checkpoint=__file__)
    with pytest.raises(ValueError, match="Select a CT volume"):
        logic.process(None, checkpoint=__file__)
    assert run["holder"].node_ids() == before

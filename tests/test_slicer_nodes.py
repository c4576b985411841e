"""Result nodes from a hand-made FractureResult, on real MRML classes (no inference needed).

Geometry is oblique and anisotropic on purpose: segment voxels, point positions and table values
must survive Slicer's RAS world and the LPS files exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from slicer_scene import add_module_path, make_scene

from RibFracSegLib.detections import Detection, FractureResult
from RibFracSegLib.geometry import index_to_lps, index_to_ras

add_module_path()  # RibFracSeg/ on sys.path, as Slicer does

from RibFracSegLogicLib import nodes as nodes_mod  # noqa: E402
from RibFracSegLogicLib.compute import RunOutput  # noqa: E402
from RibFracSegLogicLib.logic import RibFracSegLogicBase  # noqa: E402
from RibFracSegLogicLib.selftest import add_case_volume, check_files, check_nodes, MarkedCase  # noqa: E402

BLOBS = {1: (slice(3, 6), slice(4, 7), slice(5, 9)), 2: (slice(10, 12), slice(2, 4), slice(15, 18)),
         3: (slice(7, 8), slice(12, 13), slice(1, 2))}  # [k, j, i]; the last is a single voxel


def oblique_image() -> sitk.Image:
    image = sitk.Image(20, 16, 14, sitk.sitkInt16)
    image.SetSpacing((0.8, 1.1, 2.5))
    image.SetOrigin((-12.0, 30.5, -200.0))
    image.SetDirection(Rotation.from_euler("xyz", [12, -7, 25], degrees=True).as_matrix().ravel().tolist())
    return image


def hand_made_result(image: sitk.Image) -> FractureResult:
    labels = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint16)
    detections = []
    voxel_mm3 = float(np.prod(image.GetSpacing()))
    for label_id, box in BLOBS.items():
        labels[box] = label_id
        kji = np.argwhere(labels == label_id)
        ijk = kji.mean(axis=0)[::-1]
        detections.append(Detection(
            id=label_id, confidence=0.31234567 * label_id, voxel_count=len(kji), volume_mm3=len(kji) * voxel_mm3,
            centroid_ijk=tuple(float(v) for v in ijk), center_ras=index_to_ras(image, ijk),
            center_lps=index_to_lps(image, ijk),
            bbox_ijk=(tuple(int(v) for v in kji.min(0)[::-1]), tuple(int(v) for v in kji.max(0)[::-1])),
            label_code=label_id - 1))
    instances = sitk.GetImageFromArray(labels)
    instances.CopyInformation(image)
    return FractureResult(detections=detections, instances=instances)


@pytest.fixture()
def scene_and_volume():
    holder = make_scene()
    image = oblique_image()
    volume = add_case_volume(holder.scene, MarkedCase("oblique", image, image, {}))
    yield holder, volume, image


def test_nodes_match_detections_and_sit_under_the_study(scene_and_volume):
    holder, volume, image = scene_and_volume
    fr = hand_made_result(image)
    result = RibFracSegLogicBase(holder.scene).add_results(volume, RunOutput(fractures=fr),
                                                          _options())
    assert check_nodes(result, volume) == []
    seg = result.nodes.segmentation
    assert seg.GetSegmentation().GetNumberOfSegments() == 3
    # codes 0 (no type), 1 and 2; on no rib
    assert [seg.GetSegmentation().GetNthSegment(i).GetName() for i in range(3)] == [
        "Fracture 1", "Fracture 2 - displaced", "Fracture 3 - non-displaced"]
    colors = {seg.GetSegmentation().GetNthSegment(i).GetColor() for i in range(3)}
    assert len(colors) == 3  # distinct colours
    # the single-voxel blob is exactly where the detection says, in RAS
    position = result.nodes.points.GetNthControlPointPositionVector(2)
    np.testing.assert_allclose(position, index_to_ras(image, (1, 12, 7)), atol=1e-6)


def test_files_round_trip_equal(scene_and_volume, tmp_path):
    holder, volume, image = scene_and_volume
    result = RibFracSegLogicBase(holder.scene).add_results(volume, RunOutput(fractures=hand_made_result(image)), _options())
    assert check_files(holder.scene, result, tmp_path, "case1") == []
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["case1.mrk.json", "case1.schema.tsv", "case1.seg.nrrd", "case1.tsv"]  # no temp leftovers


def test_failure_while_building_leaves_the_scene_unchanged(scene_and_volume, monkeypatch):
    holder, volume, image = scene_and_volume
    before = holder.node_ids()

    def broken(*args, **kwargs):
        raise RuntimeError("table writer broke")

    monkeypatch.setattr(nodes_mod, "add_detections_table", broken)
    with pytest.raises(RuntimeError, match="table writer broke"):
        RibFracSegLogicBase(holder.scene).add_results(volume, RunOutput(fractures=hand_made_result(image)), _options())
    assert holder.node_ids() == before


def _options():
    from RibFracSegLogicLib.compute import RunOptions

    return RunOptions()


def test_volume_node_round_trip_keeps_geometry_and_voxels_exactly():
    from RibFracSegLogicLib.volumes import image_from_volume_node, volume_node_from_image

    holder = make_scene()
    image = _with_voxels(oblique_image())
    back = image_from_volume_node(volume_node_from_image(holder.scene, image, "ct"))
    assert back.GetSpacing() == image.GetSpacing()  # bit-exact, not recovered from a matrix
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-12)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)
    assert back.GetPixelID() == image.GetPixelID()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))


def _with_voxels(image: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(np.arange(20 * 16 * 14, dtype=np.int16).reshape(14, 16, 20))
    out.CopyInformation(image)
    return out


def test_no_fractures_gives_empty_but_valid_results(scene_and_volume, tmp_path):
    holder, volume, image = scene_and_volume
    instances = sitk.Image(image.GetSize(), sitk.sitkUInt16)
    instances.CopyInformation(image)
    result = RibFracSegLogicBase(holder.scene).add_results(
        volume, RunOutput(fractures=FractureResult(detections=[], instances=instances)), _options())
    assert result.nodes.segmentation.GetSegmentation().GetNumberOfSegments() == 0
    assert result.nodes.points.GetNumberOfControlPoints() == 0
    assert result.nodes.table.GetNumberOfRows() == 0
    assert check_nodes(result, volume) == []
    assert check_files(holder.scene, result, tmp_path, "empty") == []

"""The L3 answer as Slicer nodes (slicer-core): the vertebral labels, the tissue masks on the L3 slice,
the views on L3, and a rerun that replaces the CT's L3 nodes instead of adding a second set.

One phantom with abdomen, stored LPI (slices run feet to head, so a slice index read the wrong way
round would put the masks off the L3 height), through the Logic's in-process path with the probe
fracture checkpoint (no fractures painted: they are not what is tested here) and the shipped L3 model.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import torch
import vtk
from vtk.util import numpy_support

from slicer_cases import abdomen_case

from RibFracSegLib.l3.body_composition import TISSUE_TITLES  # noqa: E402
from RibFracSegLib.spine.levels import SEQUENCE  # noqa: E402
from RibFracSegLogicLib import selftest  # noqa: E402
from RibFracSegLogicLib.l3_nodes import ANCHOR_ATTRIBUTE  # noqa: E402
from RibFracSegLogicLib.logic import RibFracSegLogicBase  # noqa: E402
from RibFracSegLogicLib.panel import show_l3  # noqa: E402

torch.set_num_threads(2)

# The count's body centres (midway between its discs) sit up to 6 mm from the phantom's geometric body
# centres on this case today (T12 -4.4 mm, L1 -5.9 mm); issue 25's count rework aims at 2 mm.
TRUTH_TOL_MM = 6.5


def _names(scene, name: str) -> int:
    return scene.GetNodesByName(name).GetNumberOfItems()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """First run, then a rerun of the same CT (what Segment clicked twice does to the scene)."""
    case, _, holder, volume, checkpoint = abdomen_case(tmp_path_factory.mktemp("ckpt"), "LPI", n_fractures=0,
                                                       shape=(170, 170, 190))
    axial = slicer.vtkMRMLSliceNode()  # the Red view as the application makes it (identity SliceToRAS: axial)
    axial.SetLayoutName("Red")
    holder.scene.AddNode(axial)
    logic = RibFracSegLogicBase(holder.scene)
    first = logic.process(volume, checkpoint=checkpoint, device="cpu", l3=True, height_m=1.75)
    first_ids = [n.GetID() for n in first.nodes.l3().values() if n is not None]
    first_count = holder.scene.GetNumberOfNodes()
    shown = show_l3(holder.scene, first)
    second = logic.add_results(volume, first.output, first.options)  # a rerun's nodes from the same answer
    return dict(case=case, holder=holder, volume=volume, axial=axial, first=first, first_ids=first_ids,
                first_count=first_count, shown=shown, result=second, logic=logic)


def test_vertebrae_are_named_points_at_the_body_centres_top_to_bottom(run):
    case, result, volume = run["case"], run["result"], run["volume"]
    levels = result.output.l3.levels  # the count itself (in-process: the SpineLevels object)
    points = result.nodes.vertebrae
    assert points is not None and points.GetName() == f"{volume.GetName()} vertebrae"
    labels = [points.GetNthControlPointLabel(i) for i in range(points.GetNumberOfControlPoints())]
    named = [v for v in levels.vertebrae if v.name]
    assert len(labels) == len(named) < len(levels.vertebrae)  # unnamed bodies are left out
    # one contiguous run of the column, top to bottom, L3 and the count's anchor among them
    assert labels == SEQUENCE[SEQUENCE.index(labels[0]):SEQUENCE.index(labels[0]) + len(labels)]
    assert {"T12", "L1", "L3"} <= set(labels) and levels.anchor.startswith("rib")
    truth = {v.name: v.center_ras for v in case.vertebrae}
    for i, label in enumerate(labels):
        ras = np.array(points.GetNthControlPointPositionVector(i))
        np.testing.assert_allclose(ras, levels.by_name(label).centre_ras, atol=0.01)  # the count's own centre
        nearest = min(truth, key=lambda n: abs(truth[n][2] - ras[2]))
        assert nearest == label, (label, nearest)  # no body named wrong
        assert abs(ras[2] - truth[label][2]) <= TRUTH_TOL_MM, (label, ras[2] - truth[label][2])
        assert points.GetNthControlPointLocked(i)
    assert points.GetLocked()
    assert points.GetAttribute(ANCHOR_ATTRIBUTE) == levels.anchor
    assert points.GetDescription().startswith(f"Vertebral bodies named by counting from {levels.anchor}")


def test_tissue_masks_lie_on_the_l3_slice_only(run):
    result, case = run["result"], run["case"]
    l3, body, tissues = result.output.l3, result.output.body, result.nodes.tissues
    assert tissues is not None and l3.in_view and abs(l3.z_mm - case.l3.center_ras[2]) <= TRUTH_TOL_MM
    segmentation = tissues.GetSegmentation()
    half_slice = 0.5 * case.image.GetSpacing()[2]
    for value, title in TISSUE_TITLES.items():
        segment_id = segmentation.GetSegmentIdBySegmentName(title)
        count = int((body.mask == value).sum())
        if title in ("Skeletal muscle", "Subcutaneous fat", "Visceral fat"):
            assert count > 0, title
        assert bool(segment_id) == (count > 0), title
        if not count:
            continue
        segment = segmentation.GetSegment(segment_id)
        labelmap = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
        e = labelmap.GetExtent()
        arr = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(
            e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
        kji = np.argwhere(arr == segment.GetLabelValue())
        assert len(kji) == count, title
        ijk = kji[:, ::-1] + (e[0], e[2], e[4])
        to_world = vtk.vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(to_world)
        ras = (slicer.util.arrayFromVTKMatrix(to_world) @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
        assert len(set(ijk[:, 2])) == 1, title  # one CT slice
        assert np.abs(ras[:, 2] - l3.center_ras[2]).max() <= half_slice + 1e-6, title  # the L3 slice


def test_the_views_jump_to_l3(run):
    l3, axial = run["first"].output.l3, run["axial"]
    assert run["shown"] == pytest.approx(l3.center_ras)
    offset = slicer.util.arrayFromVTKMatrix(axial.GetSliceToRAS())[:3, 3]
    np.testing.assert_allclose(offset, l3.center_ras, atol=1e-6)  # the axial view shows the L3 slice


def test_a_rerun_replaces_the_ct_s_l3_nodes(run):
    holder, volume, result = run["holder"], run["volume"], run["result"]
    scene, name = holder.scene, volume.GetName()
    assert all(scene.GetNodeByID(i) is None for i in run["first_ids"]) and len(run["first_ids"]) == 4
    for node_name in (f"{name} L3", f"{name} body composition", f"{name} L3 tissues", f"{name} vertebrae"):
        assert _names(scene, node_name) == 1, node_name
    # the fracture nodes (segmentation, points, table) are the only ones a rerun adds, with their display nodes
    fracture = [result.nodes.segmentation, result.nodes.points, result.nodes.table]
    added = sum(1 + (n.GetNumberOfDisplayNodes() if hasattr(n, "GetNumberOfDisplayNodes") else 0) for n in fracture)
    assert scene.GetNumberOfNodes() == run["first_count"] + added
    orphans = [n.GetID() for n in (scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes()))
               if n.IsA("vtkMRMLDisplayNode") and n.GetDisplayableNode() is None]
    assert orphans == []


def test_another_ct_s_run_leaves_these_l3_nodes(run):
    holder, result = run["holder"], run["result"]
    other = selftest.add_case_volume(holder.scene, selftest.MarkedCase("other", run["case"].image,
                                                                       run["case"].fracture_labels, {}))
    other_result = run["logic"].add_results(other, result.output, result.options)
    kept = [n for n in result.nodes.l3().values() if n is not None]
    assert len(kept) == 4 and all(holder.scene.GetNodeByID(n.GetID()) is n for n in kept)
    assert other_result.nodes.vertebrae.GetName() == "other vertebrae"


def test_only_named_bodies_become_points_and_the_description_says_why_l3_wants_a_look():
    from slicer_scene import make_scene

    from RibFracSegLogicLib.l3_nodes import add_vertebra_points

    def body(name, z):
        return {"name": name, "centre_ras": [1.0, -30.0, z], "z_top_mm": z + 15, "z_bottom_mm": z - 15, "complete": True}

    scene = make_scene().scene
    assert add_vertebra_points(scene, {"anchor": "none", "vertebrae": [body(None, -400.0)]}, "ct") is None
    assert add_vertebra_points(scene, None, "ct") is None and scene.GetNodesByName("ct vertebrae").GetNumberOfItems() == 0
    levels = {"anchor": "sacrum", "lumbar_count": 5, "notes": ["the sacrum names L5"],
              "vertebrae": [body("L5", -500.0), body("L4", -470.0), body(None, -440.0)]}  # bottom to top
    points = add_vertebra_points(scene, levels, "ct", "count (sacrum) and network disagree by 30 mm")
    assert [points.GetNthControlPointLabel(i) for i in range(points.GetNumberOfControlPoints())] == ["L4", "L5"]
    assert points.GetNthControlPointPositionVector(1)[2] == -500.0
    assert points.GetDescription() == (
        "Vertebral bodies named by counting from sacrum; 5 lumbar bodies between T12 and the sacrum; the sacrum names "
        "L5; 1 body found but not named (no anchor reaches them): not shown; L3 check: review, count (sacrum) and "
        "network disagree by 30 mm.")


@pytest.mark.parametrize("spacing", [(0.796875, 0.796875, 5.0), (0.9765625, 0.9765625, 3.0),
                                     (0.703125, 0.703125, 1.25), (0.7, 1.25, 2.5)])
def test_a_ct_loaded_by_slicer_reaches_the_library_with_the_file_s_spacing(tmp_path, spacing):
    """Slicer's reader gives 5 mm slices as 5.000000000000001 mm (spacing from the IJK->RAS matrix): the rib
    step refused them as coarser than 5 mm, and the L3 count of CRLM-CT-1004 lost its ribs in Slicer."""
    import SimpleITK as sitk
    from slicer_scene import make_scene

    from RibFracSegLogicLib.volumes import image_from_volume_node

    image = sitk.Image(8, 7, 6, sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin((-198.1999969482422, -204.0, -375.0))
    path = str(tmp_path / "ct.nii.gz")
    sitk.WriteImage(image, path)
    holder = make_scene()
    node = holder.logics["Volumes"].AddArchetypeVolume(path, "ct")
    assert image_from_volume_node(node).GetSpacing() == sitk.ReadImage(path).GetSpacing()

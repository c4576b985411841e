"""The rib-unfolded picture on real MRML (slicer-core): volume and points where the library says,
clicks on the picture jump the CT views to the fracture, and nodes only on success."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

from slicer_scene import add_module_path, make_scene

from RibFracSegLib import defaults
from RibFracSegLib.geometry import ras_to_lps
from RibFracSegLib.phantom import PhantomParams, detections_from_phantom, generate_phantom, rib_labels_from_phantom

add_module_path()

from RibFracSegLogicLib import unfolded as unfolded_mod  # noqa: E402
from RibFracSegLogicLib.volumes import volume_node_from_image  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    case = generate_phantom(PhantomParams(shape=(150, 150, 90), spacing=(2.2, 2.2, 3.6), fov="thorax",
                                          orientation="oblique", n_fractures=4, seed=7))
    ribs = rib_labels_from_phantom(case)
    return case, ribs, detections_from_phantom(case, ribs)


@pytest.fixture()
def scene_with_views():
    holder = make_scene()
    views = {}
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal"), ("Unfolded", "Coronal")):
        node = holder.scene.AddNewNodeByClass("vtkMRMLSliceNode")
        node.SetLayoutName(name)
        node.SetOrientation(orientation)
        composite = holder.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        composite.SetLayoutName(name)
        views[name] = (node, composite)
    return holder, views


def test_picture_volume_and_points_match_the_library(phantom, scene_with_views):
    case, ribs, dets = phantom
    holder, _ = scene_with_views
    ct = volume_node_from_image(holder.scene, case.image, "CT")
    nodes = unfolded_mod.add_unfolded_view(holder.scene, ct, ribs, dets)
    unfolded = nodes.unfolded
    array = slicer.util.arrayFromVolume(nodes.volume)
    assert array.shape == (1, *unfolded.image.shape)
    expected = np.nan_to_num(unfolded.image, nan=defaults.OUTSIDE_FOV_HU)
    assert np.allclose(array[0], expected)
    ijk_to_ras = vtk.vtkMatrix4x4()
    nodes.volume.GetIJKToRASMatrix(ijk_to_ras)
    assert np.allclose(slicer.util.arrayFromVTKMatrix(ijk_to_ras), unfolded_mod.unfolded_ijk_to_ras(unfolded))
    assert nodes.volume.GetAttribute(unfolded_mod.ATTRIBUTE) == str(unfolded.pixel_mm)
    display = nodes.volume.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == pytest.approx((1400.0, 500.0))
    positions = slicer.util.arrayFromMarkupsControlPoints(nodes.points)
    marked = [(i, m) for i, m in sorted(nodes.marks.items()) if m is not None]
    assert len(marked) == len(dets) == nodes.points.GetNumberOfControlPoints()
    for index, (det_id, mark) in enumerate(marked):
        det = next(d for d in dets if d.id == det_id)
        kind = f" {defaults.FRACTURE_CODES[det.label_code]}" if det.label_code > 0 else ""  # the phantom's truth type
        assert nodes.points.GetNthControlPointLabel(index) == f"F{det_id} {det.rib}{kind}"
        # the point sits on the picture's plane at the mark's pixel
        assert positions[index][1] == pytest.approx(defaults.UNFOLD_SLICER_PLANE_A_MM)
        assert unfolded_mod.picture_pixel(unfolded, positions[index]) == pytest.approx((mark.row, mark.col), abs=1e-6)
        # and the CT position behind it is the fracture (on the rib's mid-surface)
        behind = unfolded_mod.ct_ras_from_picture(unfolded, positions[index])
        assert np.linalg.norm(np.subtract(behind, det.center_ras)) < 1.0 + abs(mark.depth_mm)
    # a click on a rib's row on the picture lands in that rib's bone in the CT
    labels = sitk.GetArrayViewFromImage(ribs.labels)
    for name in ("L6", "R3", "R9"):
        strip = unfolded.strip(name)
        ras = unfolded_mod.picture_ras(unfolded, unfolded.centre_row(strip.slot), unfolded.arc_to_col(strip.side, 60.0))
        ijk = ribs.labels.TransformPhysicalPointToIndex(ras_to_lps(unfolded_mod.ct_ras_from_picture(unfolded, ras)))
        assert labels[ijk[::-1]] == ribs.by_name(name).label
    # picture coordinates round trip, and the picture lies in coronal view orientation
    assert unfolded_mod.picture_pixel(unfolded, unfolded_mod.picture_ras(unfolded, 12.5, 40.25)) == pytest.approx((12.5, 40.25))
    assert unfolded_mod.picture_ras(unfolded, 0, 1)[0] < unfolded_mod.picture_ras(unfolded, 0, 0)[0]  # right -> left
    assert unfolded_mod.picture_ras(unfolded, 1, 0)[2] < unfolded_mod.picture_ras(unfolded, 0, 0)[2]  # rows go down


def test_clicks_jump_the_ct_views_and_the_unfolded_view_shows_the_picture(phantom, scene_with_views):
    case, ribs, dets = phantom
    holder, views = scene_with_views
    ct = volume_node_from_image(holder.scene, case.image, "CT")
    nodes = unfolded_mod.add_unfolded_view(holder.scene, ct, ribs, dets, name="case")
    unfolded_view, unfolded_composite = views["Unfolded"]
    unfolded_mod.show_in_slice_view(holder.scene, unfolded_view, nodes)
    assert unfolded_composite.GetBackgroundVolumeID() == nodes.volume.GetID()
    rows, cols = nodes.unfolded.image.shape
    centre = unfolded_mod.picture_ras(nodes.unfolded, 0.5 * (rows - 1), 0.5 * (cols - 1))
    slice_to_ras = slicer.util.arrayFromVTKMatrix(unfolded_view.GetSliceToRAS())
    assert np.allclose(slice_to_ras[:3, 3], centre)
    assert unfolded_view.GetFieldOfView()[0] == pytest.approx(cols * nodes.unfolded.pixel_mm)
    det = dets[0]
    mark = nodes.marks[det.id]
    click = unfolded_mod.picture_ras(nodes.unfolded, mark.row, mark.col)
    ct_ras = unfolded_mod.jump_from_picture(holder.scene, nodes, click, exclude=unfolded_view)
    for name in ("Red", "Yellow", "Green"):
        origin = slicer.util.arrayFromVTKMatrix(views[name][0].GetSliceToRAS())[:3, 3]
        assert np.allclose(origin, ct_ras)
        assert np.linalg.norm(origin - np.array(det.center_ras)) < 1.0 + abs(mark.depth_mm)
    assert np.allclose(slicer.util.arrayFromVTKMatrix(unfolded_view.GetSliceToRAS())[:3, 3], centre)  # excluded
    gap = unfolded_mod.picture_ras(nodes.unfolded, nodes.unfolded.pitch_px - 1, 10)  # between two rows
    assert unfolded_mod.jump_from_picture(holder.scene, nodes, gap, exclude=unfolded_view) is None
    unfolded_mod.jump_picture_to_mark(unfolded_view, nodes, mark)  # a table row chosen
    assert np.allclose(slicer.util.arrayFromVTKMatrix(unfolded_view.GetSliceToRAS())[:3, 3], click)


def test_nodes_are_added_only_on_success(phantom, scene_with_views):
    case, ribs, dets = phantom
    holder, _ = scene_with_views
    ct = volume_node_from_image(holder.scene, case.image, "CT")
    nodes = unfolded_mod.add_unfolded_view(holder.scene, ct, ribs, dets)
    before = holder.node_ids()
    broken = dict(nodes.marks)
    broken[dets[-1].id] = "not a mark"
    with pytest.raises(AttributeError):
        unfolded_mod.add_unfolded_nodes(holder.scene, nodes.unfolded, broken, dets, "broken")
    assert holder.node_ids() == before

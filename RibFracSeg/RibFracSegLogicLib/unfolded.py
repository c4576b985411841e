"""The rib-unfolded picture in Slicer: a volume node, the fractures as points on it, and the jumps.

The picture is a one-slice volume placed in a coronal plane far anterior of any CT
(`defaults.UNFOLD_SLICER_PLANE_A_MM`), oriented so a coronal slice view shows it as the PNG does
(patient's right on the left, superior up). A position on it maps back to the CT through the
library's `UnfoldedRibs.pixel_to_ras`, so a click on the picture (or a fracture row in the table)
jumps the CT's slice views there; the unfolded view itself is excluded from the jump. Nodes are
added only when everything was built (the Logic's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import slicer
import vtk

from RibFracSegLib import defaults
from RibFracSegLib.detections import Detection, known_type
from RibFracSegLib.ribs.labels import RibLabels
from RibFracSegLib.ribs.unfold import UnfoldedRibs, unfold_ribs
from RibFracSegLib.ribs.unfold_marks import UnfoldedMark, map_detections

from .nodes import node_ids, place_with_input, remove_nodes_added_since
from .volumes import image_from_volume_node

ATTRIBUTE = "RibFracSeg.UnfoldedRibs"  # set on the volume node: its pixel size in mm


@dataclass
class UnfoldedNodes:
    volume: Any
    points: Any
    unfolded: UnfoldedRibs  # keep it: it maps clicks on the picture back to the CT
    marks: dict  # detection id -> UnfoldedMark or None (on no rib: no point)


def is_unfolded_picture(node) -> bool:
    """Whether a node is a run's rib-unfolded picture (a scalar volume, but no CT to run on)."""
    return node is not None and node.GetAttribute(ATTRIBUTE) is not None


def unfolded_ijk_to_ras(unfolded: UnfoldedRibs) -> np.ndarray:
    """4x4 IJK -> RAS of the picture: i = column (towards patient's left), j = row (downwards)."""
    px = unfolded.pixel_mm
    rows, cols = unfolded.image.shape
    m = np.eye(4)
    m[:3, 0] = (-px, 0.0, 0.0)
    m[:3, 1] = (0.0, 0.0, -px)
    m[:3, 2] = (0.0, px, 0.0)
    m[:3, 3] = (0.5 * (cols - 1) * px, defaults.UNFOLD_SLICER_PLANE_A_MM, 0.5 * (rows - 1) * px)  # centred
    return m


def picture_ras(unfolded: UnfoldedRibs, row: float, col: float) -> tuple[float, float, float]:
    """World (RAS) position of an unfolded pixel on the picture's volume node."""
    return tuple(float(v) for v in (unfolded_ijk_to_ras(unfolded) @ [col, row, 0.0, 1.0])[:3])


def picture_pixel(unfolded: UnfoldedRibs, ras: Sequence[float]) -> tuple[float, float]:
    """(row, col) of a world position on (or near) the picture's plane."""
    col, row, _, _ = np.linalg.solve(unfolded_ijk_to_ras(unfolded), [*map(float, ras), 1.0])
    return float(row), float(col)


def ct_ras_from_picture(unfolded: UnfoldedRibs, ras: Sequence[float]) -> Optional[tuple[float, float, float]]:
    """The CT position (RAS) behind a point on the picture; None between ribs or off them."""
    return unfolded.pixel_to_ras(*picture_pixel(unfolded, ras))


def add_unfolded_nodes(scene, unfolded: UnfoldedRibs, marks: dict, detections: Sequence[Detection],
                       name: str, ct_volume=None) -> UnfoldedNodes:
    """A scalar volume of the picture (bone window; no-rib pixels at `defaults.OUTSIDE_FOV_HU`) and
    a locked point per fracture on a rib, labelled 'F<id> <rib>' (and its type when it has one:
    'F3 R6 displaced'); all added, or none."""
    before = node_ids(scene)
    scene.StartState(scene.BatchProcessState)
    try:
        volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{name} unfolded ribs")
        picture = np.nan_to_num(unfolded.image, nan=defaults.OUTSIDE_FOV_HU).astype(np.float32)
        slicer.util.updateVolumeFromArray(volume, picture[None])
        volume.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(unfolded_ijk_to_ras(unfolded)))
        volume.SetAttribute(ATTRIBUTE, f"{unfolded.pixel_mm}")
        volume.CreateDefaultDisplayNodes()
        lo, hi = defaults.UNFOLD_WINDOW_HU
        display = volume.GetDisplayNode()
        display.AutoWindowLevelOff()
        display.SetWindowLevel(hi - lo, 0.5 * (hi + lo))
        points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{name} unfolded fractures")
        points.CreateDefaultDisplayNodes()
        by_id = {d.id: d for d in detections}
        for det_id, mark in sorted(marks.items()):
            if mark is None:
                continue
            index = points.AddControlPoint(vtk.vtkVector3d(*picture_ras(unfolded, mark.row, mark.col)),
                                           " ".join(filter(None, (f"F{det_id} {mark.rib}", known_type(mark.label_code)))))
            ct = by_id[det_id].center_ras if det_id in by_id else unfolded.pixel_to_ras(mark.row, mark.col)
            points.SetNthControlPointDescription(
                index, f"Fracture {det_id} on {mark.rib}, {mark.arc_mm:.0f} mm from the head; "
                       f"CT RAS {ct[0]:.1f}, {ct[1]:.1f}, {ct[2]:.1f}")
            points.SetNthControlPointLocked(index, True)
        if ct_volume is not None:
            place_with_input(scene, ct_volume, [volume, points])
    except BaseException:
        remove_nodes_added_since(scene, before)
        raise
    finally:
        scene.EndState(scene.BatchProcessState)
    return UnfoldedNodes(volume, points, unfolded, marks)


def add_unfolded_view(scene, ct_volume, rib_labels: RibLabels, detections: Sequence[Detection],
                      name: Optional[str] = None) -> UnfoldedNodes:
    """Unfold the CT node's ribs and add the picture and its fracture points to the scene."""
    ct = image_from_volume_node(ct_volume)
    unfolded = unfold_ribs(ct, rib_labels)
    marks = map_detections(unfolded, detections, ct)
    return add_unfolded_nodes(scene, unfolded, marks, detections, name or ct_volume.GetName(), ct_volume)


def show_in_slice_view(scene, slice_node, nodes: UnfoldedNodes) -> None:
    """Show the picture alone in `slice_node`'s view: coronal, its plane, the whole picture in view."""
    composite = next((c for c in _nodes_of(scene, "vtkMRMLSliceCompositeNode")
                      if c.GetLayoutName() == slice_node.GetLayoutName()), None)
    if composite is not None:
        composite.SetBackgroundVolumeID(nodes.volume.GetID())
        composite.SetForegroundVolumeID(None)
        composite.SetLabelVolumeID(None)
    unfolded = nodes.unfolded
    rows, cols = unfolded.image.shape
    slice_node.SetOrientation("Coronal")
    centre = picture_ras(unfolded, 0.5 * (rows - 1), 0.5 * (cols - 1))
    slice_node.JumpSliceByCentering(*centre)
    slice_node.SetFieldOfView(cols * unfolded.pixel_mm, rows * unfolded.pixel_mm, unfolded.pixel_mm)


def jump_ct_views(scene, ras: Sequence[float], exclude=None) -> None:
    """Centre every slice view but `exclude` (the unfolded view) on a CT position."""
    slicer.vtkMRMLSliceNode.JumpAllSlices(scene, *map(float, ras), slicer.vtkMRMLSliceNode.CenteredJumpSlice,
                                         -1, exclude)


def jump_from_picture(scene, nodes: UnfoldedNodes, ras_on_picture: Sequence[float], exclude=None
                      ) -> Optional[tuple[float, float, float]]:
    """A click on the picture: jump the CT views to the position behind it (None: not on a rib)."""
    ct = ct_ras_from_picture(nodes.unfolded, ras_on_picture)
    if ct is not None:
        jump_ct_views(scene, ct, exclude)
    return ct


def jump_picture_to_mark(slice_node, nodes: UnfoldedNodes, mark: UnfoldedMark) -> None:
    """A fracture row chosen in the table: centre the unfolded view on its box."""
    slice_node.JumpSliceByCentering(*picture_ras(nodes.unfolded, mark.row, mark.col))


def jump_to_fracture(scene, ras: Sequence[float], nodes: Optional[UnfoldedNodes] = None,
                     fracture_id: Optional[int] = None, unfolded_view=None) -> None:
    """A fracture row chosen: the CT views to its centre, the unfolded view (when shown) to its box."""
    jump_ct_views(scene, ras, unfolded_view)
    mark = nodes.marks.get(fracture_id) if nodes is not None else None
    if mark is not None and unfolded_view is not None:
        jump_picture_to_mark(unfolded_view, nodes, mark)


def slice_xy_to_ras(slice_node, x: float, y: float) -> tuple[float, float, float]:
    """A mouse position in a slice view (the interactor's pixels) -> world position on its slice."""
    return tuple(float(v) for v in (slicer.util.arrayFromVTKMatrix(slice_node.GetXYToRAS()) @ [x, y, 0.0, 1.0])[:3])


def unfolded_layout_xml() -> str:
    """The picture's view across the top, the CT's axial, sagittal and coronal views below."""
    def view(tag: str, orientation: str, label: str, colour: str) -> str:
        return (f'<item><view class="vtkMRMLSliceNode" singletontag="{tag}">'
                f'<property name="orientation" action="default">{orientation}</property>'
                f'<property name="viewlabel" action="default">{label}</property>'
                f'<property name="viewcolor" action="default">{colour}</property></view></item>')

    ct_views = "".join(view(*v) for v in (("Red", "Axial", "R", "#F34A33"), ("Yellow", "Sagittal", "Y", "#EDD54C"),
                                          ("Green", "Coronal", "G", "#6EB04B")))
    return (f'<layout type="vertical" split="true">{view(defaults.UNFOLD_SLICER_VIEW, "Coronal", "U", "#A0A0A0")}'
            f'<item><layout type="horizontal" split="true">{ct_views}</layout></item></layout>')


def use_unfolded_layout(layout_node) -> int:
    """Register our layout on Slicer's layout node (once) and switch to it; returns its id."""
    if not layout_node.IsLayoutDescription(defaults.UNFOLD_SLICER_LAYOUT_ID):
        layout_node.AddLayoutDescription(defaults.UNFOLD_SLICER_LAYOUT_ID, unfolded_layout_xml())
    layout_node.SetViewArrangement(defaults.UNFOLD_SLICER_LAYOUT_ID)
    return defaults.UNFOLD_SLICER_LAYOUT_ID


def unfolded_slice_node(scene):
    """The slice node of the picture's view (None until the layout made it)."""
    return next((n for n in _nodes_of(scene, "vtkMRMLSliceNode") if n.GetLayoutName() == defaults.UNFOLD_SLICER_VIEW),
                None)


def _nodes_of(scene, class_name: str) -> list:
    collection = scene.GetNodesByClass(class_name)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]

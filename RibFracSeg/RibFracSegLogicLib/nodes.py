"""RunOutput -> MRML nodes: a segment per fracture, points, tables; all or nothing.

Everything is built first and removed again if any step fails, so the scene only ever gains a
complete, consistent set of result nodes (the Logic's "nodes added only on success").
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Any, Optional

import SimpleITK as sitk
import slicer
import vtk

from RibFracSegLib.detections import (Detection, FractureResult, fracture_segment_name, fracture_text, fracture_type,
                                      known_type, type_probability)
from RibFracSegLib.geometry import ijk_to_ras_matrix

from .compute import RunOutput
from .l3_nodes import L3_ROLES, add_vertebra_points, mark_l3_nodes, replace_l3_nodes
from .rib_nodes import add_rib_segmentation
from .segments import TAG_PREFIX, add_label_segment, new_segmentation_node
from .terminology import fracture_terminology, rib_side

GOLDEN_ANGLE = (3.0 - 5.0 ** 0.5) / 2.0  # hue step that keeps neighbouring segment colours apart


@dataclass
class RunNodes:
    """The nodes one successful run added to the scene."""

    segmentation: Any = None
    points: Any = None
    table: Any = None
    l3_point: Any = None
    l3_table: Any = None
    ribs: Any = None  # '<CT> ribs' segmentation, when asked for
    tissues: Any = None  # '<CT> L3 tissues' segmentation, when L3 was in view
    vertebrae: Any = None  # '<CT> vertebrae' points (l3_nodes), when L3 was asked for and the count named bodies

    def all(self) -> list:
        return [n for n in (self.segmentation, self.points, self.table, self.l3_point, self.l3_table, self.ribs,
                            self.tissues, self.vertebrae) if n is not None]

    def l3(self) -> dict:
        """This run's L3 answer by role (l3_nodes.L3_ROLES)."""
        return dict(zip(L3_ROLES, (self.l3_point, self.l3_table, self.tissues, self.vertebrae)))


def segment_color(index: int) -> tuple[float, float, float]:
    """A distinct, saturated colour for the index-th fracture (deterministic across runs)."""
    return colorsys.hsv_to_rgb((index * GOLDEN_ANGLE) % 1.0, 0.85, 1.0)


def fracture_label(d: Detection) -> str:
    """'F3 0.82 displaced' ('F3 0.82' without a type)."""
    return " ".join(filter(None, (f"F{d.id} {d.confidence:.2f}", known_type(d.label_code))))




def add_fracture_segmentation(scene, volume, result: FractureResult, name: str):
    """One segment per detection, cropped to its bounding box, on the input's grid."""
    from scipy import ndimage  # not at module level: Slicer loads the module before scipy is installed

    seg_node = new_segmentation_node(scene, volume, name)
    labels = sitk.GetArrayViewFromImage(result.instances)
    boxes = ndimage.find_objects(labels)
    image_to_world = slicer.util.vtkMatrixFromArray(ijk_to_ras_matrix(result.instances))
    for index, d in enumerate(result.detections):
        box = boxes[d.id - 1] if d.id - 1 < len(boxes) else None
        if box is None:
            raise ValueError(f"Detection {d.id} has no voxels in the instance image.")
        segment = add_label_segment(seg_node, labels, box, d.id, image_to_world, fracture_segment_name(d),
                                    segment_color(index), fracture_terminology(rib_side(d.rib), d.label_code))
        for key, value in (("id", d.id), ("confidence", f"{d.confidence:.4f}"),
                           ("volume_mm3", f"{d.volume_mm3:.2f}"), ("code", d.label_code),
                           ("type", fracture_type(d.label_code)), ("rib", d.rib)):
            segment.SetTag(TAG_PREFIX + key, str(value))
    seg_node.CreateClosedSurfaceRepresentation()  # shown in 3D
    return seg_node


def add_fracture_points(scene, detections: list[Detection], name: str):
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    points.CreateDefaultDisplayNodes()
    for d in detections:
        index = points.AddControlPoint(vtk.vtkVector3d(*d.center_ras), fracture_label(d))
        points.SetNthControlPointDescription(
            index, f"Fracture {d.id}: confidence {d.confidence:.3f}, {d.volume_mm3:.0f} mm3, {fracture_text(d)}")
        points.SetNthControlPointLocked(index, True)
    return points


def _column(table, array, name: str, unit: str = "", description: str = "") -> None:
    array.SetName(name)
    table.AddColumn(array)
    if unit:
        table.SetColumnUnitLabel(name, unit)
    if description:
        table.SetColumnDescription(name, description)


def new_table_node(scene, name: str):
    """A table whose column names (and units) are the view's header. Without UseColumnTitleAsColumnHeader,
    Slicer's table view shows them as an editable first row above the data (qMRMLTableModel::updateModelFromMRML)."""
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table.SetUseColumnTitleAsColumnHeader(True)
    return table


def add_detections_table(scene, detections: list[Detection], name: str):
    table = new_table_node(scene, name)
    ids, conf, vol, code = vtk.vtkIntArray(), vtk.vtkDoubleArray(), vtk.vtkDoubleArray(), vtk.vtkIntArray()
    kind, kind_p = vtk.vtkStringArray(), vtk.vtkDoubleArray()
    rib, arc, region = vtk.vtkStringArray(), vtk.vtkDoubleArray(), vtk.vtkStringArray()
    measured = vtk.vtkStringArray()
    measures = {name: vtk.vtkDoubleArray() for name in ("gap_mm", "step_mm", "angulation_deg")}
    centre = vtk.vtkDoubleArray()
    centre.SetNumberOfComponents(3)
    for d in detections:
        ids.InsertNextValue(d.id)
        conf.InsertNextValue(d.confidence)
        vol.InsertNextValue(d.volume_mm3)
        centre.InsertNextTuple3(*d.center_ras)
        code.InsertNextValue(int(d.label_code))
        kind.InsertNextValue(fracture_type(d.label_code))
        p = type_probability(d.label_code, d.code_probabilities)
        kind_p.InsertNextValue(float("nan") if p is None else p)
        rib.InsertNextValue(d.rib)
        arc.InsertNextValue(float("nan") if d.rib_arc_mm is None else float(d.rib_arc_mm))
        region.InsertNextValue(d.rib_region)
        measured.InsertNextValue(fracture_text(d))
        for name, array in measures.items():
            value = getattr(d, name)
            array.InsertNextValue(float("nan") if value is None else float(value))
    _column(table, ids, "id", description="fracture id (segment 'Fracture N ...')")
    _column(table, conf, "confidence", description="fracture confidence: the type classifier's when it ran, "
                                                     "else the network's mean probability over the fracture")
    _column(table, vol, "volume_mm3", unit="mm3")
    _column(table, centre, "center_ras", unit="mm", description="centroid, RAS")
    _column(table, code, "code", description="RibFrac label code (-1 undefined)")
    _column(table, kind, "type", description="fracture type: displaced / non-displaced / buckle / segmental")
    _column(table, kind_p, "type_probability", description="the classifier's probability of that type (NaN: none)")
    _column(table, rib, "rib", description="L1-L12 / R1-R12, 'unnumbered L/R', or 'none' (on no rib found)")
    _column(table, arc, "rib_arc_mm", unit="mm", description="distance along the rib from its head (NaN: no rib)")
    _column(table, region, "rib_region", description="posterior / lateral / anterior third of the rib")
    _column(table, measured, "measured", description="type and what the rib's frame measured: 'displaced, 3.1 mm step'")
    _column(table, measures["gap_mm"], "gap_mm", unit="mm", description="along the rib where the cortex is "
            "interrupted (0: no break seen; NaN: not measured)")
    _column(table, measures["step_mm"], "step_mm", unit="mm", description="cortical step-off across the break")
    _column(table, measures["angulation_deg"], "angulation_deg", unit="deg",
            description="angle between the rib's axis either side of the break")
    return table


def body_composition_rows(l3: Any, body: Any, height_m: Optional[float]) -> list[tuple[str, float, str, str]]:
    """(measure, value, unit, note) rows for the L3 table; NaN marks what could not be measured. With a
    checked L3 (count + network) the check's fields follow: where L3 came from, whether to review it
    and why, and both sources' heights."""
    nan = float("nan")
    rows = [("l3_in_view", float(bool(l3.in_view)), "", ""), ("l3_confidence", float(l3.confidence), "", "")]
    if l3.in_view:
        rows += [("l3_slice_index", float(l3.slice_index), "voxel", ""), ("l3_z_mm", float(l3.z_mm), "mm", "")]
    if hasattr(l3, "review"):  # an L3Check
        f = lambda v: nan if v is None else float(v)  # noqa: E731
        rows += [("l3_source", nan, "", l3.source), ("l3_review", float(l3.review), "", l3.review_reason),
                 ("l3_count_z_mm", f(l3.count_z_mm), "mm", f"count from {l3.count_anchor}"),
                 ("l3_network_z_mm", f(l3.network_z_mm), "mm", f"network confidence {l3.network.confidence:.2f}"),
                 ("l3_difference_mm", f(l3.difference_mm), "mm", "count - network"),
                 ("lumbar_count", f(l3.lumbar_count), "", "transitional" if l3.lumbar_count not in (None, 5) else "")]
    if body is not None:
        for measure in ("muscle_cm2", "sat_cm2", "vat_cm2", "imat_cm2"):
            value = getattr(body, measure, None)
            rows.append((measure, nan if value is None else float(value), "cm2", ""))
        smi = getattr(body, "smi", None)
        rows.append(("smi", nan if smi is None else float(smi), "cm2/m2", ""))
    if height_m is not None:
        rows.append(("height_m", float(height_m), "m", ""))
    return rows


def add_l3_nodes(scene, l3: Any, body: Any, height_m: Optional[float], name: str) -> tuple:
    point = None
    if l3.in_view:
        point = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{name} L3")
        point.CreateDefaultDisplayNodes()
        index = point.AddControlPoint(vtk.vtkVector3d(*l3.center_ras), "L3")
        point.SetNthControlPointDescription(index, f"L3, confidence {l3.confidence:.2f}")
        point.SetNthControlPointLocked(index, True)
    table = new_table_node(scene, f"{name} body composition")
    measure, value, unit, note = vtk.vtkStringArray(), vtk.vtkDoubleArray(), vtk.vtkStringArray(), vtk.vtkStringArray()
    for m, v, u, n in body_composition_rows(l3, body, height_m):
        measure.InsertNextValue(m)
        value.InsertNextValue(v)
        unit.InsertNextValue(u)
        note.InsertNextValue(n)
    _column(table, measure, "measure")
    _column(table, value, "value")
    _column(table, unit, "unit")
    _column(table, note, "note", description="the L3 check's source, review reason and anchors")
    return point, table


def add_tissue_segmentation(scene, volume, tissues: sitk.Image, name: str):
    """The L3 slice's tissue mask (body_composition.tissue_labels, on the CT's grid) as one segment per
    tissue, in the overlay picture's colours, so a reader can check the areas on the slice itself."""
    from scipy import ndimage

    from RibFracSegLib.l3.body_composition import TISSUE_COLOURS, TISSUE_NAMES, TISSUE_TITLES

    seg_node = new_segmentation_node(scene, volume, name)
    labels = sitk.GetArrayViewFromImage(tissues)
    image_to_world = slicer.util.vtkMatrixFromArray(ijk_to_ras_matrix(tissues))
    boxes = ndimage.find_objects(labels)
    for value, title in TISSUE_TITLES.items():
        box = boxes[value - 1] if value - 1 < len(boxes) else None
        if box is None:  # no such tissue on the slice
            continue
        segment = add_label_segment(seg_node, labels, box, value, image_to_world, title,
                                    tuple(c / 255.0 for c in TISSUE_COLOURS[value]), "")
        segment.SetTag(TAG_PREFIX + "tissue", TISSUE_NAMES[value])
    return seg_node


def place_with_input(scene, volume, nodes: list) -> None:
    """Put nodes under the input's subject-hierarchy parent (its study) and its parent transform."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    volume_item = sh.GetItemByDataNode(volume)
    parent = sh.GetItemParent(volume_item) if volume_item else sh.GetSceneItemID()
    transform_id = volume.GetTransformNodeID()
    for node in nodes:
        item = sh.GetItemByDataNode(node)
        if item:
            sh.SetItemParent(item, parent)
        else:
            sh.CreateItem(parent, node)
        if transform_id:
            node.SetAndObserveTransformNodeID(transform_id)


def add_run_nodes(scene, volume, output: RunOutput, height_m: Optional[float] = None,
                  name: Optional[str] = None, ribs: bool = False) -> RunNodes:
    """Add every result node for one run (the ribs segmentation when `ribs`), or none at all if anything fails."""
    name = name or f"{volume.GetName()} fractures"
    nodes = RunNodes()
    before = node_ids(scene)
    scene.StartState(scene.BatchProcessState)
    try:
        detections = output.fractures.detections
        nodes.segmentation = add_fracture_segmentation(scene, volume, output.fractures, name)
        nodes.points = add_fracture_points(scene, detections, name)
        nodes.table = add_detections_table(scene, detections, name)
        if output.l3 is not None:
            nodes.l3_point, nodes.l3_table = add_l3_nodes(scene, output.l3, output.body, height_m,
                                                          volume.GetName())
        if output.tissues is not None:
            nodes.tissues = add_tissue_segmentation(scene, volume, output.tissues, f"{volume.GetName()} L3 tissues")
        if output.l3 is not None:
            review = output.l3.review_reason if getattr(output.l3, "review", False) else ""
            nodes.vertebrae = add_vertebra_points(scene, output.levels, volume.GetName(), review)
        if ribs and output.fractures.ribs is not None:
            nodes.ribs = add_rib_segmentation(scene, volume, output.fractures.ribs, f"{volume.GetName()} ribs")
        place_with_input(scene, volume, nodes.all())
        if output.l3 is not None:  # last, once all is built: this run's L3 answer replaces the CT's previous one
            mark_l3_nodes(volume, nodes.l3())
            replace_l3_nodes(scene, volume, nodes.all())
    except BaseException:
        remove_nodes_added_since(scene, before)
        raise
    finally:
        scene.EndState(scene.BatchProcessState)
    return nodes


def node_ids(scene) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def remove_nodes_added_since(scene, keep_ids: set[str]) -> None:
    """Remove every node added since `keep_ids` was taken (display and storage nodes too)."""
    for node in [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]:
        if node.GetID() not in keep_ids:
            scene.RemoveNode(node)

"""End-to-end checks shared by pytest, the module's RibFracSegTest and the --python-script self-test.

A phantom's truth fracture voxels are painted with the probe's marker, so the probe checkpoint
must find exactly the truth: every check below compares against numbers known in advance. Each
check returns a list of problems (empty = pass) so Slicer's test runner and pytest report the
same findings.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from RibFracSegLib.detections import fracture_type, type_probability
from RibFracSegLib.errors import Cancelled
from RibFracSegLib.geometry import ras_to_index

from . import probe
from .batch import save_results
from .files import load_markups, load_segmentation, load_table
from .logic import ProcessResult, RibFracSegLogicBase
from .nodes import TAG_PREFIX, fracture_label, fracture_segment_name, node_ids, remove_nodes_added_since
from .runner import CANCELLED, DONE
from .volumes import volume_node_from_image

logger = logging.getLogger("RibFracSeg")

POSITION_TOL_MM = 1e-3  # what survives a .mrk.json/.tsv round trip
TABLE_RTOL = 1e-5  # Slicer writes .tsv numbers with 6 significant digits
BACKGROUND_TIMEOUT_S = 300.0


@dataclass
class MarkedCase:
    """A phantom CT with its truth fractures painted with the probe's marker."""

    name: str
    image: sitk.Image
    labels: sitk.Image
    truth_ras: dict[int, tuple[float, float, float]]  # truth label id -> centre (RAS mm)


def phantom_case(orientation: str, seed: int = 7, n_fractures: int = 3,
                 shape: tuple[int, int, int] = (96, 80, 64), spacing: tuple[float, float, float] = (3.0, 3.0, 4.0)
                 ) -> MarkedCase:
    """A small thorax phantom stored with `orientation`, its single-piece fractures painted with the marker.

    A truth fracture the phantom draws as several disconnected pieces (or touching another one)
    would rightly come back as a different number of detections, so only fractures that are
    exactly one 26-connected piece of their own are painted and kept as truth.
    """
    from scipy import ndimage

    from RibFracSegLib.phantom import PhantomParams, generate_phantom

    case = generate_phantom(PhantomParams(shape=shape, spacing=spacing, fov="thorax", n_fractures=n_fractures,
                                          orientation=orientation, seed=seed))
    labels = sitk.GetArrayFromImage(case.fracture_labels)
    pieces, _ = ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))
    single = set()
    for f in case.fractures:
        own = np.unique(pieces[labels == f.label_id])
        if len(own) == 1 and set(np.unique(labels[pieces == own[0]])) == {f.label_id}:
            single.add(int(f.label_id))
    labels[~np.isin(labels, list(single))] = 0
    kept = sitk.GetImageFromArray(labels)
    kept.CopyInformation(case.fracture_labels)
    truth = {int(f.label_id): tuple(float(v) for v in f.center_ras) for f in case.fractures if f.label_id in single}
    return MarkedCase(name=f"phantom-{orientation}", image=probe.paint_marker(case.image, kept), labels=kept,
                      truth_ras=truth)


def _segment_voxels(segmentation, segment_id: str) -> int:
    """Voxels of one segment (segments may share a labelmap layer, told apart by label value)."""
    layer = slicer.util.arrayFromSegmentInternalBinaryLabelmap(segmentation, segment_id)
    label = segmentation.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    return int(np.count_nonzero(layer == label))


def _tag(segment, key: str) -> str:
    value = vtk.reference("")
    segment.GetTag(key, value)
    return str(value)


def check_against_truth(case: MarkedCase, result: ProcessResult) -> list[str]:
    """Every truth fracture found once, each centre within half a voxel of the truth centre."""
    problems = []
    if len(result.detections) != len(case.truth_ras):
        problems.append(f"{case.name}: {len(result.detections)} detections, truth has {len(case.truth_ras)}")
    unmatched = dict(case.truth_ras)
    for d in result.detections:
        found = ras_to_index(case.image, d.center_ras)
        best = min(unmatched, key=lambda t: np.abs(np.subtract(ras_to_index(case.image, unmatched[t]), found)).max(),
                   default=None)
        if best is None:
            problems.append(f"{case.name}: detection {d.id} has no truth fracture left to match")
            continue
        offset = np.abs(np.subtract(ras_to_index(case.image, unmatched.pop(best)), found)).max()
        if offset > 0.5:
            problems.append(f"{case.name}: detection {d.id} is {offset:.2f} voxels from truth {best} (> 0.5)")
    return problems


def check_nodes(result: ProcessResult, volume=None) -> list[str]:
    """Segments, points and table rows say exactly what the detections say (and sit under the
    input's study when `volume` is given)."""
    problems = []
    nodes, detections = result.nodes, result.detections
    segmentation = nodes.segmentation.GetSegmentation()
    if segmentation.GetNumberOfSegments() != len(detections):
        problems.append(f"{segmentation.GetNumberOfSegments()} segments for {len(detections)} detections")
    for d in detections:
        segment_id = segmentation.GetSegmentIdBySegmentName(fracture_segment_name(d))
        if not segment_id:
            problems.append(f"no segment {fracture_segment_name(d)!r}")
            continue
        segment = segmentation.GetSegment(segment_id)
        if abs(float(_tag(segment, TAG_PREFIX + "confidence")) - d.confidence) > 1e-4:
            problems.append(f"segment {d.id}: confidence tag {_tag(segment, TAG_PREFIX + 'confidence')} != {d.confidence}")
        if "33737001" not in _tag(segment, slicer.vtkSegment.GetTerminologyEntryTagName()):
            problems.append(f"segment {d.id}: no rib-fracture terminology")
        if _segment_voxels(nodes.segmentation, segment_id) != d.voxel_count:
            problems.append(f"segment {d.id}: {_segment_voxels(nodes.segmentation, segment_id)} voxels, "
                            f"detection has {d.voxel_count}")
    points = nodes.points
    if points.GetNumberOfControlPoints() != len(detections):
        problems.append(f"{points.GetNumberOfControlPoints()} points for {len(detections)} detections")
    for index, d in enumerate(detections[: points.GetNumberOfControlPoints()]):
        if points.GetNthControlPointLabel(index) != fracture_label(d):
            problems.append(f"point {index}: label {points.GetNthControlPointLabel(index)!r}")
        if np.abs(np.subtract(points.GetNthControlPointPositionVector(index), d.center_ras)).max() > POSITION_TOL_MM:
            problems.append(f"point {index}: position differs from detection {d.id}")
    problems += check_table(nodes.table, detections)
    if volume is None:
        return problems
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(volume.GetScene())
    study = sh.GetItemParent(sh.GetItemByDataNode(volume))
    for node in nodes.all():
        if sh.GetItemParent(sh.GetItemByDataNode(node)) != study:
            problems.append(f"{node.GetName()} is not under the input's study")
    return problems


def check_table(table, detections) -> list[str]:
    problems = []
    vtk_table = table.GetTable()
    if vtk_table.GetNumberOfRows() != len(detections):
        return [f"table has {vtk_table.GetNumberOfRows()} rows for {len(detections)} detections"]
    columns = {name: vtk_table.GetColumnByName(name)
               for name in ("id", "confidence", "volume_mm3", "center_ras", "code", "type", "type_probability")}
    missing = [name for name, column in columns.items() if column is None]
    if missing:
        return [f"table lacks columns {missing}"]
    for row, d in enumerate(detections):
        got = (columns["id"].GetValue(row), columns["confidence"].GetValue(row), columns["volume_mm3"].GetValue(row),
               columns["center_ras"].GetTuple3(row), columns["code"].GetValue(row), columns["type"].GetValue(row),
               columns["type_probability"].GetValue(row))
        want = (d.confidence, d.volume_mm3, *d.center_ras)
        p = type_probability(d.label_code, d.code_probabilities)
        ok = (got[0] == d.id and got[4] == d.label_code and got[5] == fracture_type(d.label_code)
              and np.allclose((got[1], got[2], *got[3]), want, rtol=TABLE_RTOL, atol=1e-9)
              and (np.isnan(got[6]) if p is None else np.isclose(got[6], p, rtol=TABLE_RTOL)))
        if not ok:
            problems.append(f"table row {row} {got} does not match detection {d.id}")
    return problems


def check_files(scene, result: ProcessResult, out_dir: Path, case: str) -> list[str]:
    """.seg.nrrd / .mrk.json / .tsv written, read back into a scene, and equal to what was written."""
    files = save_results(scene, result.nodes, out_dir, case)
    problems = [f"{kind} not written" for kind in ("segmentation", "points", "table") if not files.get(kind, Path()).is_file()]
    if problems:
        return problems
    before = node_ids(scene)
    try:
        reloaded = ProcessResult(nodes=type(result.nodes)(
            segmentation=load_segmentation(scene, files["segmentation"], "reloaded seg"),
            points=load_markups(scene, files["points"], "reloaded points"),
            table=load_table(scene, files["table"], "reloaded table")), detections=result.detections, output=result.output)
        problems += [f"after reload: {p}" for p in check_nodes(reloaded)]
    finally:
        remove_nodes_added_since(scene, before)
    return problems


def check_cancel(logic: RibFracSegLogicBase, volume, checkpoint: str) -> list[str]:
    """Cancel after the first patch: the library's Cancelled is raised and no node is added or removed."""
    before = sorted(node_ids(logic.scene))
    calls = []
    try:
        logic.process(volume, checkpoint=checkpoint, device="cpu", progress=lambda done, total: calls.append(done),
                      cancel=lambda: len(calls) > 0)
        return ["a cancelled run returned results"]
    except Cancelled:
        pass
    after = sorted(node_ids(logic.scene))
    return [] if after == before else [f"cancel changed the scene: {set(after) ^ set(before)}"]


def check_background(logic: RibFracSegLogicBase, volume, checkpoint: str, expected: ProcessResult) -> list[str]:
    """The PythonSlicer-subprocess path finds the same detections; a cancelled one adds nothing."""
    problems = []
    options = logic.options(checkpoint, device="cpu")
    run = logic.start_background(volume, options, preload=[probe.MODULE])
    if run.wait(timeout=BACKGROUND_TIMEOUT_S) != DONE:
        run.cancel()
        return [f"background run ended {run.state}: {run.error}"]
    if run.progress[1] == 0 or run.progress[0] != run.progress[1]:
        problems.append(f"background progress ended at {run.progress}")
    result = logic.finish_background(volume, run, name="background")
    if result.detections != expected.detections:
        problems.append("background detections differ from the in-process ones")
    before = sorted(node_ids(logic.scene))
    run = logic.start_background(volume, options, preload=[probe.MODULE])
    run.cancel()
    if run.state != CANCELLED or sorted(node_ids(logic.scene)) != before:
        problems.append(f"background cancel left state {run.state} or changed the scene")
    return problems


def run_selftest(scene, workdir: Optional[Path] = None, orientations: tuple[str, ...] = ("LPS", "oblique"),
                 background: bool = True) -> list[str]:
    """The whole chain on marked phantoms; returns every problem found (empty list = pass)."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="RibFracSegSelfTest-"))
    checkpoint = str(probe.write_probe_checkpoint(workdir / "probe.pt"))
    logic = RibFracSegLogicBase(scene)
    problems: list[str] = []
    for orientation in orientations:
        case = phantom_case(orientation)
        if not case.truth_ras:
            problems.append(f"{case.name}: the phantom holds no single-piece fracture to look for")
            continue
        volume = add_case_volume(scene, case)
        result = logic.process(volume, checkpoint=checkpoint, device="cpu")
        problems += check_against_truth(case, result)
        problems += check_nodes(result, volume)
        problems += check_files(scene, result, workdir / "files", case.name)
        problems += check_cancel(logic, volume, checkpoint)
        if background:
            problems += check_background(logic, volume, checkpoint, result)
    for problem in problems:
        logger.error("RibFracSeg self-test: %s", problem)
    return problems


def add_case_volume(scene, case: MarkedCase):
    """The case's CT as a volume node under a patient/study in the subject hierarchy (as DICOM would)."""
    volume = volume_node_from_image(scene, case.image, case.name)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), f"{case.name} patient")
    study = sh.CreateStudyItem(patient, f"{case.name} study")
    item = sh.GetItemByDataNode(volume)
    if item:
        sh.SetItemParent(item, study)
    else:
        sh.CreateItem(study, volume)
    return volume



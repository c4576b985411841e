"""What the panel does from the click to the shown results, without Qt (so pytest drives the same path).

The Widget in RibFracSeg.py only copies its parameter node into `PanelInputs`, calls `PanelRun` from
its QTimer, writes `PanelOutcome.outputs` back into the parameter node, and passes table-row and
unfolded-view clicks to the jump functions here (the rib-unfolded view). Everything that decides
something — which checkpoint an empty field means, which output selectors change, what the status
line says and how long the run took — is here and tested on slicer-core.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from RibFracSegLib import defaults
from RibFracSegLib.shipped import shipped_model

from .compute import RunOptions
from .logic import ProcessResult
from .runner import DONE, BackgroundRun
from .unfolded import (UnfoldedNodes, add_unfolded_view, is_unfolded_picture, jump_ct_views, jump_from_picture,
                       jump_to_fracture, show_in_slice_view, slice_xy_to_ras, unfolded_slice_node, use_unfolded_layout)

logger = logging.getLogger("RibFracSeg")
TABLE_ATTRIBUTE = "RibFracSeg.FractureTable"  # on the unfolded volume: ID of the same run's fracture table
# The Model and L3-model path fields: parameter name on the module's parameter node -> shipped model kind.
# They are plain text parameters of the vtkMRMLScriptedModuleNode ("" = the shipped model), stored the way
# parameterNodeWrapper's StringSerializer stores a str (SetParameter(name, text)), so scenes saved when they
# were wrapper fields read back the same. They are not wrapper fields: its only path-field connector binds a
# pathlib.Path ("" would become ".") and listens to ctkPathLineEdit.currentPathChanged, which CTK emits only
# for text its name filter accepts (ctkPathLineEdit::updateHasValidInput) - never "" nor "x.ckpt".
PATH_FIELDS = {"checkpoint": "fracture", "l3Checkpoint": "l3"}


@dataclass
class PanelInputs:
    """The panel's choices, as the parameter node stores them."""

    checkpoint: str = ""  # "" = the shipped model, resolved at run time (never stored as a path)
    device: str = "auto"
    use_checkpoint_settings: bool = True
    overlap: float = defaults.OVERLAP
    threshold: float = defaults.PROB_THRESHOLD
    compute_l3: bool = False
    height_m: float = 0.0  # 0 = unknown (no skeletal muscle index)
    l3_checkpoint: str = ""  # "" = the shipped L3 model, resolved at run time
    ribs: bool = False  # add the '<CT> ribs' segmentation
    unfolded: bool = False  # add the rib-unfolded picture with its fracture points, shown in its own view

    @classmethod
    def from_parameter_node(cls, p) -> "PanelInputs":
        """From the panel's parameterNodeWrapper; the path fields from its MRML node (`p.parameterNode`)."""
        return cls(checkpoint=path_field(p.parameterNode, "checkpoint"), device=p.device,
                   use_checkpoint_settings=p.useCheckpointSettings, overlap=p.overlap, threshold=p.threshold,
                   compute_l3=p.computeL3, height_m=p.heightM, l3_checkpoint=path_field(p.parameterNode, "l3Checkpoint"),
                   ribs=p.showRibs, unfolded=p.showUnfolded)


def path_field(parameter_node, name: str) -> str:
    """The text of a path field (PATH_FIELDS) on the module's parameter node; "" when never set."""
    if name not in PATH_FIELDS:
        raise KeyError(f"{name!r} is not a path field ({', '.join(PATH_FIELDS)})")
    return parameter_node.GetParameter(name) or ""


def store_path_text(parameter_node, name: str, text: str) -> bool:
    """The text now in a path field -> the parameter node, whatever it is: "" (cleared: the shipped model),
    a file that does not exist or has another extension (the run then refuses it, naming it). The Widget
    calls this on every textChanged of the field's line edit. Returns whether the node changed."""
    text = (text or "").strip()
    if path_field(parameter_node, name) == text:
        return False
    parameter_node.SetParameter(name, text)
    return True


def picture_volume_ids(scene) -> list[str]:
    """IDs of the scalar volumes that are rib-unfolded pictures, hidden from the CT selector (its node-type
    filter cannot tell them from CTs; qMRMLSortFilterProxyModel's hiddenNodeIDs can)."""
    volumes = (scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
               for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")))
    return [v.GetID() for v in volumes if is_unfolded_picture(v)]


def first_ct_volume(scene):
    """The volume the CT selector starts on: the first scalar volume (not a label map, vector volume or
    rib-unfolded picture); None when there is none."""
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        if node.GetClassName() == "vtkMRMLScalarVolumeNode" and not is_unfolded_picture(node):
            return node
    return None


def height_to_keep(previous: float, value: float) -> float:
    """What the height spin box keeps: 0 (unknown) or a height a run accepts (defaults.HEIGHT_RANGE_M).
    A spin box has one range, so the gap between 0 and the lowest height is closed here: a value in it
    goes to the lowest height when it rose (stepping up from unknown), else back to unknown."""
    lo, hi = defaults.HEIGHT_RANGE_M
    if 0.0 < value < lo:
        return lo if value > previous else 0.0
    return min(max(value, 0.0), hi)


def checkpoint_for_run(stored: str, kind: str = "fracture") -> Optional[str]:
    """A checkpoint field -> the file to run, None meaning the shipped model of this installation
    (`kind`: "fracture" or "l3", the Model and the L3 model fields).

    Empty means the shipped model. So does a path to a shipped model that no longer exists — what scenes
    saved by older versions hold (the absolute path of the extension folder of that version or machine).
    """
    text = (stored or "").strip()
    if not text or text == ".":
        return None
    path = Path(text)
    shipped = shipped_model(kind)
    if path == shipped:
        return None
    # another installation's shipped model: RibFracSegLib/models/ (or Resources/Models/ before 0.2)
    if not path.exists() and path.name == shipped.name and path.parent.name in (shipped.parent.name, "Models"):
        logger.info("RibFracSeg: %s is the shipped model of another installation; using %s", path, shipped)
        return None
    return str(path)


def run_options(logic, inputs: PanelInputs) -> RunOptions:
    """Validated RunOptions for the panel's inputs (ValueError names the bad one)."""
    own = not inputs.use_checkpoint_settings
    return logic.options(checkpoint=checkpoint_for_run(inputs.checkpoint), device=inputs.device,
                         overlap=inputs.overlap if own else None, threshold=inputs.threshold if own else None,
                         l3=inputs.compute_l3,
                         height_m=inputs.height_m if inputs.compute_l3 and inputs.height_m > 0 else None,
                         l3_checkpoint=checkpoint_for_run(inputs.l3_checkpoint, "l3") if inputs.compute_l3 else None,
                         ribs=inputs.ribs)


def summary_message(result: ProcessResult, seconds: float) -> str:
    """The status line after a run; `seconds` is wall time from the click."""
    message = f"{len(result.detections)} fractures found in {seconds:.1f} s."
    l3 = result.output.l3
    if l3 is not None:
        message += f" L3 at S = {l3.z_mm:.1f} mm." if l3.in_view else " L3 is not in the field of view."
    return message


def output_selections(result: ProcessResult) -> dict[str, Any]:
    """Parameter-node field -> node for every output selector; None clears a selector (a run without L3
    must not leave the previous run's body-composition table on show)."""
    nodes = result.nodes
    return {"outputSegmentation": nodes.segmentation, "outputPoints": nodes.points, "outputTable": nodes.table,
            "outputBodyComposition": nodes.l3_table}


@dataclass
class PanelOutcome:
    """A finished run as the panel shows it."""

    result: ProcessResult
    seconds: float  # wall time from the click to the nodes in the scene
    message: str
    outputs: dict[str, Any] = field(default_factory=dict)
    unfolded: Optional[UnfoldedNodes] = None  # the rib-unfolded picture, when asked for and ribs were found


class PanelRun:
    """One click of Segment: a background run that the panel polls, finishes or cancels."""

    def __init__(self, logic, volume, inputs: PanelInputs, clicked_at: Optional[float] = None,
                 clock: Callable[[], float] = time.perf_counter, preload: Sequence[str] = ()) -> None:
        self.clock = clock
        self.clicked_at = clock() if clicked_at is None else clicked_at
        self.logic, self.volume, self.inputs = logic, volume, inputs
        self.options = run_options(logic, inputs)
        self.background: BackgroundRun = logic.start_background(volume, self.options, preload=preload)

    @property
    def state(self) -> str:
        return self.background.state

    @property
    def progress(self) -> tuple[int, int]:
        return self.background.progress

    @property
    def error(self) -> Optional[str]:
        return self.background.error

    def poll(self) -> list[str]:
        """The worker's plain log lines since the last call (state and progress are updated)."""
        return self.background.poll()

    def status_text(self) -> str:
        done, total = self.progress
        if not total:
            return "Starting…"
        tail = " — L3 and body composition…" if done == total and self.options.l3 else ""
        return f"Patches {done}/{total}{tail}"

    def wait(self, timeout: Optional[float] = None) -> str:
        """Console and tests: poll until the run ends; returns the final state."""
        return self.background.wait(timeout=timeout)

    def finish(self, name: Optional[str] = None) -> PanelOutcome:
        """Add the finished run's nodes to the scene (raises if it failed or was cancelled)."""
        if self.state != DONE:
            raise RuntimeError(f"No result: the run is {self.state}" + (f" ({self.error})" if self.error else ""))
        result = self.logic.finish_background(self.volume, self.background, name=name)
        unfolded, note = add_unfolded(self.logic.scene, self.volume, result) if self.inputs.unfolded else (None, "")
        seconds = self.clock() - self.clicked_at
        logger.info("RibFracSeg: run finished %.2f s after the click", seconds)
        return PanelOutcome(result=result, seconds=seconds, message=summary_message(result, seconds) + note,
                            outputs=output_selections(result), unfolded=unfolded)

    def cancel(self) -> None:
        self.background.cancel()


def add_unfolded(scene, volume, result: ProcessResult) -> tuple[Optional[UnfoldedNodes], str]:
    """The rib-unfolded picture of a finished run and its fracture points: (nodes, "") or (None, why not).

    The fracture results stay when there is no picture (no ribs found, or unfolding failed): the
    picture is an extra view of them. Its own nodes are added all or none.
    """
    ribs = result.output.fractures.ribs
    if ribs is None or not ribs.ribs:
        return None, " No rib-unfolded view: no ribs were found."
    try:
        nodes = add_unfolded_view(scene, volume, ribs, result.detections)
    except Exception as err:  # the fractures are shown; say why the picture is not
        logger.exception("RibFracSeg: could not unfold the ribs")
        return None, f" No rib-unfolded view: {err}"
    if result.nodes.table is not None:
        nodes.volume.SetAttribute(TABLE_ATTRIBUTE, result.nodes.table.GetID())
    return nodes, ""


def show_unfolded(scene, layout_node, nodes: UnfoldedNodes):
    """Switch to the unfolded layout and show the picture in its view; returns that view's slice node
    (None if no view was made: the layout manager makes it when the layout changes)."""
    use_unfolded_layout(layout_node)
    slice_node = unfolded_slice_node(scene)
    if slice_node is not None:
        show_in_slice_view(scene, slice_node, nodes)
    return slice_node


def fracture_in_table(table, id_text: str) -> Optional[tuple[int, tuple[float, float, float]]]:
    """(id, centre RAS) of the fracture whose 'id' cell reads `id_text` in a fracture table; None otherwise
    (a header cell, another kind of table)."""
    try:
        fracture_id = int(str(id_text).strip())
    except ValueError:
        return None
    columns = table.GetTable() if table is not None else None
    ids = columns.GetColumnByName("id") if columns is not None else None
    centre = columns.GetColumnByName("center_ras") if columns is not None else None
    if ids is None or centre is None or centre.GetNumberOfComponents() != 3:
        return None
    for row in range(ids.GetNumberOfTuples()):
        if int(ids.GetValue(row)) == fracture_id:
            return fracture_id, tuple(float(v) for v in centre.GetTuple3(row))
    return None


def show_l3(scene, result: ProcessResult, exclude=None) -> Optional[tuple[float, float, float]]:
    """After a run: centre the CT views (all but `exclude`, the unfolded view) on L3, so the axial view shows
    the L3 slice with its tissue masks. Returns L3's RAS position, None when L3 was not asked for or not in view."""
    l3 = result.output.l3
    if l3 is None or not l3.in_view:
        return None
    jump_ct_views(scene, l3.center_ras, exclude)
    return tuple(float(v) for v in l3.center_ras)


def jump_to_table_row(scene, table, id_text: str, unfolded: Optional[UnfoldedNodes] = None,
                      unfolded_view=None) -> Optional[tuple[float, float, float]]:
    """A fracture row clicked: the CT views to the fracture, the unfolded view to its box when the picture
    is of the same run as the table. Returns the CT position (None: not a fracture row)."""
    found = fracture_in_table(table, id_text)
    if found is None:
        return None
    fracture_id, ras = found
    if unfolded is not None and unfolded.volume.GetAttribute(TABLE_ATTRIBUTE) != table.GetID():
        unfolded = None  # another run's picture: its boxes are not this table's fractures
    jump_to_fracture(scene, ras, unfolded, fracture_id, unfolded_view)
    return ras


def jump_from_unfolded_click(scene, nodes: UnfoldedNodes, slice_node, x: float, y: float
                             ) -> Optional[tuple[float, float, float]]:
    """A click at (x, y) in the unfolded view: the CT views to the CT position behind it (None: not on a rib)."""
    return jump_from_picture(scene, nodes, slice_xy_to_ras(slice_node, x, y), exclude=slice_node)

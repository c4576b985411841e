"""RibFracSeg: rib-fracture detection and L3 body composition in 3D Slicer.

This file is wiring only: the panel (Widget), the parameter node, and thin Module/Logic/Test
classes. The work lives in RibFracSegLogicLib (headless, tested with pytest) and RibFracSegLib
(the library). Slicer's GUI framework is imported inside a guard so that the Logic imports — and
runs — without the Slicer application (Python console, PythonSlicer, pytest with slicer-core).
"""

import logging
import os
import sys
import unittest
from pathlib import Path
from typing import Annotated, Optional

import slicer
import vtk


def _add_library_to_path() -> None:
    """When loaded from the source tree, RibFracSegLib sits next to this module's folder."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.dirname(here)):
        if os.path.isdir(os.path.join(folder, "RibFracSegLib")) and folder not in sys.path:
            sys.path.insert(0, folder)


_add_library_to_path()

from RibFracSegLib import defaults  # noqa: E402
from RibFracSegLib.shipped import shipped_model  # noqa: E402
from RibFracSegLogicLib.batch import run_batch  # noqa: E402
from RibFracSegLogicLib.logic import ProcessResult, RibFracSegLogicBase  # noqa: E402

try:  # Slicer's GUI framework: present in the application, absent in the slicer-core wheel
    from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
    from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                               ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
    from slicer.util import VTKObservationMixin

    GUI_AVAILABLE = True
except ImportError:
    ScriptedLoadableModule = ScriptedLoadableModuleWidget = object
    ScriptedLoadableModuleTest = unittest.TestCase
    GUI_AVAILABLE = False

logger = logging.getLogger("RibFracSeg")
POLL_MS = 200  # how often the panel reads the background run's progress


class RibFracSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "RibFracSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["RibFracSeg team"]
        self.parent.helpText = (
            "Detects and segments rib fractures in a chest CT (one segment, point and table row per fracture), "
            "and optionally locates the L3 vertebra and measures body composition on that slice. "
            "Runs in the background with progress and Cancel. See the README for batch use from the console.")
        self.parent.acknowledgementText = (
            "Networks after FracNet (Jin et al., EBioMedicine 2020); L3 localisation after Kanavati et al. 2018.")


if GUI_AVAILABLE:

    @parameterNodeWrapper
    class RibFracSegParameterNode:
        """The panel's state, saved with the scene."""

        inputVolume: slicer.vtkMRMLScalarVolumeNode
        checkpoint: Path = shipped_model("fracture")
        device: Annotated[str, Choice(list(defaults.DEVICES))] = "auto"
        useCheckpointSettings: bool = True  # overlap/threshold from the checkpoint
        overlap: Annotated[float, WithinRange(0.0, 0.9)] = defaults.OVERLAP
        threshold: Annotated[float, WithinRange(0.0, 0.99)] = defaults.PROB_THRESHOLD
        computeL3: bool = False
        heightM: Annotated[float, WithinRange(0.0, defaults.HEIGHT_RANGE_M[1])] = 0.0  # 0 = unknown (no SMI)
        outputSegmentation: slicer.vtkMRMLSegmentationNode
        outputPoints: slicer.vtkMRMLMarkupsFiducialNode
        outputTable: slicer.vtkMRMLTableNode
        outputBodyComposition: slicer.vtkMRMLTableNode

    _LOGIC_BASES = (ScriptedLoadableModuleLogic, RibFracSegLogicBase)
    _WIDGET_BASES = (ScriptedLoadableModuleWidget, VTKObservationMixin)
else:  # headless: only the Logic is usable; `object` cannot precede another base class
    _LOGIC_BASES = (RibFracSegLogicBase,)
    _WIDGET_BASES = (object,)


class RibFracSegLogic(*_LOGIC_BASES):
    """Rib fractures (and L3) for a CT volume node; usable from the Python console.

    Console use:
        logic = RibFracSegLogic()
        result = logic.process(getNode("CT"), checkpoint="/path/model.pt", device="auto", l3=True, height_m=1.75)
        reports = logic.batch(["/data/a.nii.gz", "/data/b.nii.gz"], "/data/out")
    """

    def __init__(self, scene=None) -> None:
        if GUI_AVAILABLE:
            ScriptedLoadableModuleLogic.__init__(self)
        RibFracSegLogicBase.__init__(self, scene)

    def getParameterNode(self):
        return RibFracSegParameterNode(super().getParameterNode())

    def batch(self, inputs, out_dir, **options):
        """Every CT file/folder in `inputs` -> <case>.seg.nrrd, .mrk.json, .tsv in out_dir (see batch.run_batch)."""
        return run_batch(self, inputs, out_dir, **options)


class RibFracSegWidget(*_WIDGET_BASES):
    """The panel: inputs, Segment/Cancel with real progress, results, errors."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None
        self._runVolume = None
        self._timer = None

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RibFracSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = RibFracSegLogic()
        self.ui.checkpointPathLineEdit.settingKey = "RibFracSeg/RecentCheckpoints"  # remembers recent files
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.connect("timeout()", self.onPoll)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.progressBar.hide()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.cancelRun()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.cancelRun()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        running = self._run is not None
        self.ui.segmentButton.text = "Cancel" if running else "Segment"
        self.ui.segmentButton.enabled = running or bool(p and p.inputVolume)
        self.ui.segmentButton.toolTip = ("Stop the run; the scene stays as it was." if running
                                         else "Detect rib fractures in the input volume (runs in the background).")
        self.ui.overlapSliderWidget.enabled = bool(p) and not p.useCheckpointSettings
        self.ui.thresholdSliderWidget.enabled = bool(p) and not p.useCheckpointSettings
        self.ui.heightSpinBox.enabled = bool(p) and p.computeL3

    def _options(self):
        p = self._parameterNode
        own = not p.useCheckpointSettings
        return self.logic.options(checkpoint=str(p.checkpoint), device=p.device,
                                  overlap=p.overlap if own else None, threshold=p.threshold if own else None,
                                  l3=p.computeL3, height_m=p.heightM if p.computeL3 and p.heightM > 0 else None)

    def onSegmentButton(self) -> None:
        if self._run is not None:
            self.cancelRun()
            self._setStatus("Cancelled; the scene was not changed.")
            return
        from RibFracSegLogicLib.dependencies import ensure_dependencies

        self._setStatus("")
        try:
            with slicer.util.tryWithErrorDisplay("RibFracSeg could not start.", waitCursor=True):
                ensure_dependencies(ask=slicer.util.confirmOkCancelDisplay)
                options = self._options()
                volume = self._parameterNode.inputVolume
                self._run = self.logic.start_background(volume, options)
                self._runVolume = volume
        except Exception as err:  # already shown in a dialog; keep it in the panel and the log too
            self._setStatus(f"Error: {err}", error=True)
            return
        self.ui.progressBar.setRange(0, 0)  # busy until the first patch count arrives
        self.ui.progressBar.show()
        self._setStatus("Starting…")
        self._timer.start()
        self._updateButtons()

    def onPoll(self) -> None:
        from RibFracSegLogicLib.runner import RUNNING

        run = self._run
        if run is None:
            return
        for line in run.poll():
            logger.debug("RibFracSeg worker: %s", line)
        done, total = run.progress
        if total:
            self.ui.progressBar.setRange(0, total)
            self.ui.progressBar.setValue(done)
            self._setStatus(f"Patches {done}/{total}" + (" — L3 and body composition…" if done == total and
                                                         run.options.l3 else ""))
        if run.state != RUNNING:
            self._timer.stop()
            self._finishRun()

    def _finishRun(self) -> None:
        from RibFracSegLogicLib.runner import DONE

        run, volume = self._run, self._runVolume
        self._run = self._runVolume = None
        self.ui.progressBar.hide()
        self._updateButtons()
        if run.state != DONE:
            self._setStatus(f"Error: {run.error}", error=True)
            return
        if volume is None or volume.GetScene() is None:
            self._setStatus("The input volume was removed during the run; results discarded.", error=True)
            return
        try:
            result = self.logic.finish_background(volume, run)
        except Exception as err:  # shown in the panel; traceback in the log
            logger.exception("RibFracSeg: could not add results")
            self._setStatus(f"Error: {err}", error=True)
            return
        self._showResults(result, run)

    def _showResults(self, result: ProcessResult, run) -> None:
        p = self._parameterNode
        nodes = result.nodes
        p.outputSegmentation, p.outputPoints, p.outputTable = nodes.segmentation, nodes.points, nodes.table
        self.ui.show3DButton.setSegmentationNode(nodes.segmentation)
        if nodes.l3_table is not None:
            p.outputBodyComposition = nodes.l3_table
        self.ui.checkpointPathLineEdit.addCurrentPathToHistory()
        message = f"{len(result.detections)} fractures found in {sum(run.stage_seconds.values()):.1f} s."
        l3 = result.output.l3
        if l3 is not None:
            if l3.in_view:
                slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, *l3.center_ras,
                                                      slicer.vtkMRMLSliceNode.CenteredJumpSlice)
                message += f" L3 at S = {l3.z_mm:.1f} mm."
            else:
                message += " L3 is not in the field of view."
        self._setStatus(message)

    def cancelRun(self) -> None:
        if self._run is not None:
            self._run.cancel()
            self._run = self._runVolume = None
            if self._timer is not None:
                self._timer.stop()
            self.ui.progressBar.hide()
            self._updateButtons()

    def _setStatus(self, text: str, error: bool = False) -> None:
        self.ui.statusLabel.text = text
        self.ui.statusLabel.setStyleSheet("color: #d33;" if error else "")
        if error:
            logger.error("RibFracSeg: %s", text)


class RibFracSegTest(ScriptedLoadableModuleTest):
    """Marked phantoms through the Logic (in-process and background), nodes, files and cancel."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_RibFracSeg_phantoms()

    def test_RibFracSeg_phantoms(self) -> None:
        from RibFracSegLogicLib.selftest import run_selftest

        self.delayDisplay("RibFracSeg: marked phantoms, LPS and oblique")
        problems = run_selftest(slicer.mrmlScene)
        self.assertEqual(problems, [], "\n".join(problems))
        self.delayDisplay("RibFracSeg self-test passed")

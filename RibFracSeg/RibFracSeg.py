"""RibFracSeg: rib-fracture detection and L3 body composition in 3D Slicer.

This file is wiring only: the panel (Widget), the parameter node, and thin Module/Logic/Test
classes. The work lives in RibFracSegLogicLib (headless, tested with pytest) and RibFracSegLib
(the library). Slicer's GUI framework is imported inside a guard so that the Logic imports — and
runs — without the Slicer application (Python console, PythonSlicer, pytest with slicer-core).
"""

import logging
import os
import sys
import time
import unittest
from typing import Annotated

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
from RibFracSegLogicLib.dependencies import check_requirements  # noqa: E402
from RibFracSegLogicLib.logic import RibFracSegLogicBase  # noqa: E402

try:  # translatable strings, as the current module template does (Slicer 5.4+)
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # slicer-core wheel: no translations

    def _(text: str) -> str:
        return text

    def translate(context: str, text: str) -> str:
        return text

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
UNFOLDED_CLICK_PRIORITY = 10.0  # our click observers on the unfolded view run before Slicer's interactor style
HELP_URL = "https://github.com/ribfracseg/RibFracSeg#in-3d-slicer"
# Slicer loads these modules before this one, and not this one without them (qSlicerModuleFactoryManager::
# loadModule): their node classes, logics and widgets are what the results are made of.
SKIPPED_LINE = "RibFracSeg self-test skipped:"  # CTest's SKIP_REGULAR_EXPRESSION for py_RibFracSeg (CMakeLists.txt)
MODULE_DEPENDENCIES = ["Segmentations", "Markups", "Tables", "Terminologies", "SubjectHierarchy"]


def loadTerminology() -> None:
    """Make fracture segments' terminology editable: load our context into the Terminologies module."""
    from RibFracSegLogicLib.terminology import load_terminology

    try:
        load_terminology(slicer.modules.terminologies.logic())
    except Exception:  # never block Slicer's start-up; segments still get their codes
        logger.exception("RibFracSeg: could not load the fracture terminology")


class RibFracSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("RibFracSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = MODULE_DEPENDENCIES
        self.parent.contributors = ["RibFracSeg team"]
        self.parent.helpText = _(
            "Detects and segments rib fractures in a chest CT (one segment, point and table row per fracture), "
            "and optionally locates the L3 vertebra and measures body composition on that slice. "
            "Runs in the background with progress and Cancel.") + " " + _(
            'See the <a href="{url}">module documentation</a> for batch use from the Python console.').format(
            url=HELP_URL)
        self.parent.acknowledgementText = _(
            "Networks after FracNet (Jin et al., EBioMedicine 2020); L3 localisation after Kanavati et al. 2018.")
        slicer.app.connect("startupCompleted()", loadTerminology)


if GUI_AVAILABLE:

    @parameterNodeWrapper
    class RibFracSegParameterNode:
        """The panel's state, saved with the scene."""

        inputVolume: slicer.vtkMRMLScalarVolumeNode
        # The Model and L3-model paths are text parameters of the same node, bound by hand (panel.PATH_FIELDS)
        device: Annotated[str, Choice(list(defaults.DEVICES))] = "auto"
        useCheckpointSettings: bool = True  # overlap/threshold from the checkpoint
        overlap: Annotated[float, WithinRange(0.0, 0.9)] = defaults.OVERLAP
        threshold: Annotated[float, WithinRange(0.0, 0.99)] = defaults.PROB_THRESHOLD
        computeL3: bool = False
        heightM: Annotated[float, WithinRange(0.0, defaults.HEIGHT_RANGE_M[1])] = 0.0  # 0 = unknown (no SMI)
        showRibs: bool = False  # add a '<CT> ribs' segmentation (hidden in 3D)
        showUnfolded: bool = False  # add the rib-unfolded picture and show it in its own view
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
        """Every CT file/folder in `inputs` -> <case>.seg.nrrd, .mrk.json, .tsv in out_dir (see batch.run_batch).

        Raises MissingRequirements naming every package that is not installed before any case starts."""
        check_requirements()
        return run_batch(self, inputs, out_dir, **options)


class RibFracSegWidget(*_WIDGET_BASES):
    """The panel: inputs, Segment/Cancel with real progress, results, errors (decisions: panel.py)."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None  # a RibFracSegLogicLib.panel.PanelRun while one is going
        self._timer = None
        self._unfolded = None  # the last run's RibFracSegLogicLib.unfolded.UnfoldedNodes (maps clicks to the CT)
        self._unfoldedView = None  # the slice node showing it
        self._unfoldedInteractor = None  # that view's interactor, observed for clicks
        self._pressPosition = None
        self._height = 0.0  # the height spin box's last kept value (0 = unknown)

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RibFracSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = RibFracSegLogic()
        loadTerminology()  # again here (no-op when loaded): a module added after start-up missed the signal
        # The checkpoints are text parameters ("" = shipped model), bound by hand (why: panel.PATH_FIELDS). The
        # field's own line edit reports every text, "" included; ctkPathLineEdit.currentPathChanged would not.
        self._pathFields = {"checkpoint": self.ui.checkpointPathLineEdit, "l3Checkpoint": self.ui.l3CheckpointPathLineEdit}
        for field, placeholder in (("checkpoint", _("shipped model (ribfrac_default.pt)")),
                                   ("l3Checkpoint", _("shipped L3 model"))):
            pathEdit = self._pathFields[field]
            pathEdit.settingKey = f"RibFracSeg/Recent{field[0].upper()}{field[1:]}s"  # remembers recent files
            lineEdit = pathEdit.comboBox().lineEdit()
            lineEdit.placeholderText = placeholder
            lineEdit.connect("textChanged(QString)", lambda text, f=field: self.onPathEdited(f, text))
        # The Show 3D button always acts on the segmentation the selector shows, whoever changed it.
        self.ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onOutputSegmentationChanged)
        # The fracture table in the panel (it follows the table selector, in the .ui): a row click jumps the views.
        self.ui.fractureTableView.connect("clicked(QModelIndex)", self.onFractureRowClicked)
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.connect("timeout()", self.onPoll)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self._hidePicturesFromCTSelector)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.heightSpinBox.connect("valueChanged(double)", self.onHeightChanged)
        self.ui.heightSpinBox.toolTip = _("In metres ({low:g}-{high:g}), for the skeletal muscle index (SMI). "
                                          "0 = unknown.").format(low=defaults.HEIGHT_RANGE_M[0],
                                                                 high=defaults.HEIGHT_RANGE_M[1])
        self.ui.progressBar.hide()
        # "Save report": the last run's one-page HTML report (RibFracSegLib.case_report, written by the Logic).
        self._lastRun = None  # (volume node, ProcessResult) of the last run that added results
        self.saveReportButton = qt.QPushButton(_("Save report"))
        self.saveReportButton.toolTip = _("Save the last run's one-page report (pictures, tables, run details) as HTML.")
        self.saveReportButton.enabled = False
        layout = self.ui.statusLabel.parentWidget().layout()
        layout.insertWidget(layout.indexOf(self.ui.statusLabel) + 1, self.saveReportButton)
        self.saveReportButton.connect("clicked(bool)", self.onSaveReport)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.cancelRun()
        self.removeObservers()

    def onReload(self) -> None:
        """Reload the module's own packages too: Slicer's reload re-reads only this file."""
        from RibFracSegLogicLib.reload import forget_own_modules

        self.cancelRun()
        logger.info("RibFracSeg: reloading %d modules", len(forget_own_modules()))
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)

    def onSceneStartClose(self, caller, event) -> None:
        self.cancelRun()
        self._lastRun = None
        self.saveReportButton.enabled = False
        self._forgetUnfolded()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        from RibFracSegLogicLib.panel import first_ct_volume

        self._hidePicturesFromCTSelector()
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = first_ct_volume(slicer.mrmlScene)
            if first:
                self._parameterNode.inputVolume = first

    def _hidePicturesFromCTSelector(self, caller=None, event=None) -> None:
        """Rib-unfolded pictures are scalar volumes too: keep them out of the CT selector."""
        from RibFracSegLogicLib.panel import picture_volume_ids

        self.ui.inputVolumeSelector.sortFilterProxyModel().hiddenNodeIDs = picture_volume_ids(slicer.mrmlScene)

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
            self._updateGUI()

    def onOutputSegmentationChanged(self, node) -> None:
        self.ui.show3DButton.setSegmentationNode(node)

    def onFractureRowClicked(self, index) -> None:
        """Jump the CT views to the fracture of the clicked row, and the unfolded view to its box."""
        from RibFracSegLogicLib.panel import jump_to_table_row

        table = self._parameterNode.outputTable if self._parameterNode else None
        if table is None:
            return
        idText = index.sibling(index.row(), 0).data()  # the 'id' column
        unfolded = self._unfolded if self._unfoldedView is not None else None
        jump_to_table_row(slicer.mrmlScene, table, str(idText or ""), unfolded, self._unfoldedView)

    def _showUnfolded(self, nodes) -> None:
        """Switch to the rib-unfolded layout, show the picture, and listen for clicks on it."""
        from RibFracSegLogicLib.panel import show_unfolded

        layoutManager = slicer.app.layoutManager()
        self._forgetUnfolded()
        if layoutManager is None:  # no main window (--no-main-window): the picture is in the scene, no view
            return
        sliceNode = show_unfolded(slicer.mrmlScene, layoutManager.layoutLogic().GetLayoutNode(), nodes)
        sliceWidget = layoutManager.sliceWidget(defaults.UNFOLD_SLICER_VIEW)
        if sliceNode is None or sliceWidget is None:
            logger.warning("RibFracSeg: the rib-unfolded view was not created; the picture is in the scene")
            return
        self._unfolded, self._unfoldedView = nodes, sliceNode
        self._unfoldedInteractor = sliceWidget.sliceView().interactor()
        for event, method in self._unfoldedClickEvents():  # before the interactor style, which may abort events
            self.addObserver(self._unfoldedInteractor, event, method, priority=UNFOLDED_CLICK_PRIORITY)

    def _unfoldedClickEvents(self) -> list:
        return [(vtk.vtkCommand.LeftButtonPressEvent, self.onUnfoldedPress),
                (vtk.vtkCommand.LeftButtonReleaseEvent, self.onUnfoldedRelease)]

    def _forgetUnfolded(self) -> None:
        for event, method in self._unfoldedClickEvents() if self._unfoldedInteractor is not None else []:
            self.removeObserver(self._unfoldedInteractor, event, method)
        self._unfolded = self._unfoldedView = self._unfoldedInteractor = self._pressPosition = None

    def onUnfoldedPress(self, interactor, event) -> None:
        self._pressPosition = interactor.GetEventPosition()

    def onUnfoldedRelease(self, interactor, event) -> None:
        """A click (not a window/level drag) on the picture jumps the CT views to the point behind it."""
        from RibFracSegLogicLib.panel import jump_from_unfolded_click

        position = interactor.GetEventPosition()
        if self._unfolded is None or position != self._pressPosition or self._unfolded.volume.GetScene() is None:
            return
        jump_from_unfolded_click(slicer.mrmlScene, self._unfolded, self._unfoldedView, *position)

    def onHeightChanged(self, value: float) -> None:
        """Keep 0 (unknown) or a height a run accepts: a value between them steps over the gap."""
        from RibFracSegLogicLib.panel import height_to_keep

        self._height = height_to_keep(self._height, value)
        if self._height != value:
            self.ui.heightSpinBox.value = self._height

    def onPathEdited(self, field: str, text: str) -> None:
        from RibFracSegLogicLib.panel import store_path_text

        if self._parameterNode:
            store_path_text(self._parameterNode.parameterNode, field, text)

    def _updateGUI(self, caller=None, event=None) -> None:
        from RibFracSegLogicLib.panel import path_field

        p = self._parameterNode
        for field, pathEdit in self._pathFields.items():  # its textChanged then stores the same text: no change
            if p and pathEdit.currentPath != path_field(p.parameterNode, field):
                pathEdit.currentPath = path_field(p.parameterNode, field)
        running = self._run is not None
        self.ui.segmentButton.text = _("Cancel") if running else _("Segment")
        self.ui.segmentButton.enabled = running or bool(p and p.inputVolume)
        self.ui.segmentButton.toolTip = (_("Stop the run; the scene stays as it was.") if running
                                         else _("Detect rib fractures in the input volume (runs in the background)."))
        self.ui.overlapSliderWidget.enabled = bool(p) and not p.useCheckpointSettings
        self.ui.thresholdSliderWidget.enabled = bool(p) and not p.useCheckpointSettings
        self.ui.heightSpinBox.enabled = bool(p) and p.computeL3
        self.ui.l3CheckpointPathLineEdit.enabled = bool(p) and p.computeL3

    def onSegmentButton(self) -> None:
        clickedAt = time.perf_counter()  # the reported time is wall time from this click
        if self._run is not None:
            self.cancelRun()
            self._setStatus(_("Cancelled; the scene was not changed."))
            return
        from RibFracSegLogicLib.dependencies import ensure_dependencies
        from RibFracSegLogicLib.panel import PanelInputs, PanelRun

        self._setStatus("")
        try:
            with slicer.util.tryWithErrorDisplay(_("RibFracSeg could not start."), waitCursor=True):
                ensure_dependencies(ask=lambda question: slicer.util.confirmOkCancelDisplay(
                    question, _("RibFracSeg - Install Python packages")))
                self._run = PanelRun(self.logic, self._parameterNode.inputVolume,
                                     PanelInputs.from_parameter_node(self._parameterNode), clicked_at=clickedAt)
        except Exception as err:  # already shown in a dialog; keep it in the panel and the log too
            self._setStatus(_("Error: {error}").format(error=err), error=True)
            return
        self.ui.progressBar.setRange(0, 0)  # busy until the first patch count arrives
        self.ui.progressBar.show()
        self._setStatus(self._run.status_text())
        self._timer.start()
        self._updateGUI()

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
        self._setStatus(run.status_text())
        if run.state != RUNNING:
            self._timer.stop()
            self._finishRun()

    def _finishRun(self) -> None:
        from RibFracSegLogicLib.panel import show_l3
        from RibFracSegLogicLib.runner import DONE

        run, self._run = self._run, None
        self.ui.progressBar.hide()
        self._updateGUI()
        if run.state != DONE:
            self._setStatus(_("Error: {error}").format(error=run.error), error=True)
            return
        if run.volume is None or run.volume.GetScene() is None:
            self._setStatus(_("The input volume was removed during the run; results discarded."), error=True)
            return
        try:
            outcome = run.finish()
        except Exception as err:  # shown in the panel; traceback in the log
            logger.exception("RibFracSeg: could not add results")
            self._setStatus(_("Error: {error}").format(error=err), error=True)
            return
        for name, node in outcome.outputs.items():  # None clears a selector (no stale L3 table)
            setattr(self._parameterNode, name, node)
        for pathEdit in self._pathFields.values():
            pathEdit.addCurrentPathToHistory()
        show_l3(slicer.mrmlScene, outcome.result, exclude=self._unfoldedView)  # an unfolded view keeps its picture
        if outcome.unfolded is not None:
            self._hidePicturesFromCTSelector()
            self._showUnfolded(outcome.unfolded)
        self._setStatus(outcome.message)
        self._lastRun = (run.volume, outcome.result)
        self.saveReportButton.enabled = True

    def onSaveReport(self) -> None:
        import qt

        volume, result = self._lastRun
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Save report"),
                                              f"{volume.GetName()}-report.html", _("Web page (*.html)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("RibFracSeg could not save the report."), waitCursor=True):
                self._setStatus(_("Report saved: {path}").format(path=self.logic.save_report(volume, result, path)))

    def cancelRun(self) -> None:
        if self._run is not None:
            self._run.cancel()
            self._run = None
            if self._timer is not None:
                self._timer.stop()
            self.ui.progressBar.hide()
            self._updateGUI()

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
        from RibFracSegLogicLib.dependencies import missing_message, missing_requirements

        missing = missing_requirements()  # torch and requirements.txt, before anything imports them
        if missing:  # slicer.testing.runUnitTest counts a skip as a pass: CTest marks it skipped on this line
            message = f"{SKIPPED_LINE} {missing_message(missing)}"
            print(message)
            self.skipTest(message)
        from RibFracSegLogicLib.selftest import run_selftest

        self.delayDisplay("RibFracSeg: marked phantoms, LPS and oblique")
        problems = run_selftest(slicer.mrmlScene)
        self.assertEqual(problems, [], "\n".join(problems))
        self.delayDisplay("RibFracSeg self-test passed")

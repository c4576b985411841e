"""A real MRML scene with Slicer's module logics, headless (the `slicer-core` wheel).

Why a helper: without the application logic and the Segmentations/Markups/... logics attached,
the scene has no representation converters and no markups JSON storage, so segments come out
empty and markups save with zero points (../shared/reference/slicer-headless.md). Every test that
builds or loads nodes needs the same set-up, and the objects must stay referenced while the scene
lives.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import slicer
import vtk

REPO = Path(__file__).resolve().parent.parent
MODULE_DIR = REPO / "RibFracSeg"

_LOGIC_CLASSES = {
    "Volumes": "vtkSlicerVolumesLogic",
    "Segmentations": "vtkSlicerSegmentationsModuleLogic",
    "Markups": "vtkSlicerMarkupsLogic",
    "Tables": "vtkSlicerTablesLogic",
    "SubjectHierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
    "Colors": "vtkSlicerColorLogic",
}


@dataclass
class HeadlessScene:
    """A scene plus every logic object that must outlive it."""

    scene: "slicer.vtkMRMLScene"
    app_logic: "slicer.vtkSlicerApplicationLogic"
    logics: dict = field(default_factory=dict)

    def node_ids(self) -> list[str]:
        """IDs of every node in the scene, in scene order (to compare before/after a run)."""
        return [self.scene.GetNthNode(i).GetID() for i in range(self.scene.GetNumberOfNodes())]


def make_scene() -> HeadlessScene:
    """A new scene with the application logic, default colours and the module logics registered."""
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    logics = {}
    for name, cls_name in _LOGIC_CLASSES.items():
        logic = getattr(slicer, cls_name)()
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
        logics[name] = logic
    return HeadlessScene(scene=scene, app_logic=app, logics=logics)


def add_module_path() -> None:
    """Put RibFracSeg/ on sys.path, as Slicer does for a module's folder."""
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))


def import_module_file():
    """Import RibFracSeg/RibFracSeg.py the way Slicer does (module dir on sys.path)."""
    add_module_path()
    import RibFracSeg  # noqa: E402  (the module file, not the package)

    return RibFracSeg


def vtk_version() -> str:
    return vtk.vtkVersion.GetVTKVersion()

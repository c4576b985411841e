"""A marked phantom in a headless scene with the probe checkpoint: what most module tests start from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slicer_scene import HeadlessScene, add_module_path, make_scene

add_module_path()

from RibFracSegLogicLib import probe, selftest  # noqa: E402
from RibFracSegLogicLib.logic import RibFracSegLogicBase  # noqa: E402


@dataclass
class ProbeCase:
    holder: HeadlessScene
    logic: RibFracSegLogicBase
    volume: object  # vtkMRMLScalarVolumeNode under a patient/study
    checkpoint: str  # the probe checkpoint: finds exactly the painted fractures


def probe_case(folder: Path, orientation: str = "LPS") -> ProbeCase:
    holder = make_scene()
    volume = selftest.add_case_volume(holder.scene, selftest.phantom_case(orientation))
    checkpoint = str(probe.write_probe_checkpoint(Path(folder) / "probe.pt"))
    return ProbeCase(holder, RibFracSegLogicBase(holder.scene), volume, checkpoint)

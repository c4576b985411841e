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


def abdomen_case(folder: Path, orientation: str = "LPS", n_fractures: int = 2,
                 shape: tuple[int, int, int] = (150, 150, 170)) -> tuple:
    """A thorax+abdomen phantom (L3 in view), its fractures painted for the probe, in a headless scene:
    (phantom case, marked case, scene holder, volume node, probe checkpoint)."""
    from RibFracSegLib.phantom import PhantomParams, generate_phantom

    case = generate_phantom(PhantomParams(shape=shape, spacing=(2.2, 2.2, 2.5), fov="thorax_abdomen",
                                          n_fractures=n_fractures, orientation=orientation, seed=424243))
    painted = probe.paint_marker(case.image, case.fracture_labels)
    marked = selftest.MarkedCase("abdomen", painted, case.fracture_labels, {})
    holder = make_scene()
    volume = selftest.add_case_volume(holder.scene, marked)
    checkpoint = str(probe.write_probe_checkpoint(Path(folder) / "probe.pt"))
    return case, marked, holder, volume, checkpoint

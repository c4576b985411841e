"""Python packages inside Slicer: check them before any run, install only after the user said yes.

Slicer ships numpy, SimpleITK and vtk built for itself; letting pip replace them breaks Slicer
(TotalSegmentator#4), so every install runs with a constraints file that pins the versions already
installed (instead of slicer.packaging's discouraged `skip_packages`). torch comes from the PyTorch
extension, which picks the CUDA build matching the machine. Everything else is in requirements.txt.

Three callers, one check:
- the panel (`ensure_dependencies`): asks with a confirm dialog on every Slicer version — we ask
  ourselves instead of relying on slicer.packaging.pip_ensure, which only exists from Slicer 5.12 and
  silently skips installing while testing — then installs with slicer.packaging.pip_install (5.12+:
  progress dialog) or slicer.util.pip_install (5.6-5.10);
- the console `process()`/`batch()` and the module's self-tests (`check_requirements`): never install
  (the Logic opens no dialog), raise naming what is missing and how to get it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import re
import tempfile
from pathlib import Path
from typing import Callable, Optional

logger = logging.getLogger("RibFracSeg")

SLICER_OWNED = ("numpy", "simpleitk", "vtk")  # provided by Slicer: never installed or upgraded by us
TORCH = "torch"  # from the PyTorch extension
PINNED = SLICER_OWNED + (TORCH,)  # kept at their installed versions while pip installs our requirements
REQUIREMENTS = Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"
REQUESTER = "RibFracSeg"


class MissingRequirements(RuntimeError):
    """Raised before a run when packages it needs are not installed; `missing` lists them."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = list(missing)
        super().__init__(missing_message(self.missing))


def requirement_name(line: str) -> str:
    """'scikit-image>=0.21  # comment' -> 'scikit-image'."""
    return re.split(r"[<>=!~;\[ ]", line.split("#", 1)[0].strip(), maxsplit=1)[0]


def read_requirements(path: Optional[Path] = None) -> list[str]:
    """Requirement lines (default: the module's requirements.txt), without comments, blanks and what Slicer owns."""
    lines = [line.split("#", 1)[0].strip() for line in Path(path or REQUIREMENTS).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and requirement_name(line).lower() not in SLICER_OWNED]


def _import_name(distribution: str) -> str:
    return {"scikit-image": "skimage", "pyyaml": "yaml"}.get(distribution.lower(), distribution.replace("-", "_"))


def _specifier_allows(requirement: str, version: str) -> bool:
    """Whether `version` meets the requirement's specifier (True when `packaging` is not importable)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # Slicer < 5.12 may lack it: presence is then the check
        return True
    return Requirement(requirement).specifier.contains(version, prereleases=True)


def is_satisfied(requirement: str) -> bool:
    """Installed (as a distribution, or at least importable) and, when known, at an allowed version."""
    name = requirement_name(requirement)
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return importlib.util.find_spec(_import_name(name)) is not None
    return _specifier_allows(requirement, version)


def missing_requirements(requirements: Optional[list[str]] = None, torch: bool = True) -> list[str]:
    """What a run needs and is not installed: torch first (when asked), then requirements.txt lines."""
    requirements = read_requirements() if requirements is None else requirements
    wanted = ([TORCH] if torch else []) + list(requirements)
    return [r for r in wanted if not is_satisfied(r)]


def missing_message(missing: list[str]) -> str:
    names = ", ".join(missing)
    how = []
    if any(requirement_name(r) == TORCH for r in missing):
        how.append("PyTorch: install the 'PyTorch' extension (Extensions Manager) and restart Slicer")
    others = [r for r in missing if requirement_name(r) != TORCH]
    if others:
        how.append("the others: click Segment in the RibFracSeg panel (it asks, then installs them), or run "
                   f"slicer.util.pip_install({' '.join(others)!r}) in the Python console")
    return f"RibFracSeg needs Python packages that are not installed: {names}. Install " + "; ".join(how) + "."


def check_requirements(requirements: Optional[list[str]] = None, torch: bool = True) -> None:
    """Raise MissingRequirements naming every missing package; installs nothing."""
    missing = missing_requirements(requirements, torch=torch)
    if missing:
        raise MissingRequirements(missing)


def pinned_constraints() -> list[str]:
    """'name==version' for every installed package pip must not replace (Slicer's own, and torch)."""
    pins = []
    for name in PINNED:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:  # e.g. Slicer's vtk is no pip distribution
            continue
        pins.append(f"{dist.metadata['Name']}=={dist.version}")
    return pins


def write_constraints(folder: Path) -> Path:
    path = Path(folder) / "ribfracseg-constraints.txt"
    path.write_text("\n".join(pinned_constraints()) + "\n")
    return path


def install_question(missing: list[str]) -> str:
    listing = "\n".join(f"  - {r}" for r in missing)
    return ("RibFracSeg needs these Python packages, not yet installed in Slicer:\n"
            f"{listing}\n\nInstall them now with pip (internet access needed)? Slicer's own numpy, SimpleITK and "
            "vtk, and PyTorch, are kept at their installed versions.")


def ensure_torch(ask: Callable[[str], bool]) -> None:
    """Make torch importable: through the PyTorch extension when present (after asking), else explain."""
    if is_satisfied(TORCH):
        return
    try:
        import PyTorchUtils  # the SlicerPyTorch extension
    except ImportError:
        raise MissingRequirements([TORCH]) from None
    if not ask("RibFracSeg needs PyTorch. Install it now with the PyTorch extension (it can take several minutes)?"):
        raise RuntimeError("PyTorch is required; installation was declined.")
    if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False) is None:
        raise RuntimeError("PyTorch installation failed; see the Python console for pip's message.")


def pip_install(requirements: list[str], constraints: Path) -> None:
    """Slicer's installer: slicer.packaging (5.12+, progress dialog) or slicer.util.pip_install (older)."""
    import slicer

    try:
        import slicer.packaging as packaging
    except ImportError:
        packaging = None
    if packaging is not None and hasattr(packaging, "pip_install"):
        packaging.pip_install(list(requirements), constraints=str(constraints), requester=REQUESTER)
    else:  # 5.6-5.10: a list is passed to pip as its arguments
        slicer.util.pip_install(["-c", str(constraints), *requirements])


def ensure_dependencies(ask: Callable[[str], bool]) -> None:
    """The panel, before a run: ask, then install what is missing. Raises if declined or still missing."""
    ensure_torch(ask)
    missing = missing_requirements(torch=False)
    if not missing:
        return
    if not ask(install_question(missing)):
        raise RuntimeError("RibFracSeg cannot run without " + ", ".join(missing) + "; installation was declined.")
    with tempfile.TemporaryDirectory(prefix="RibFracSeg-pip-") as folder:
        logger.info("RibFracSeg: installing %s", " ".join(missing))
        pip_install(missing, write_constraints(Path(folder)))
    importlib.invalidate_caches()
    check_requirements()

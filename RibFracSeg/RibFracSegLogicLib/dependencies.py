"""Python packages inside Slicer: install what is missing at first use, never Slicer's own.

Slicer ships numpy, SimpleITK and vtk built for itself; letting pip replace them breaks Slicer
(TotalSegmentator#4). torch comes from the PyTorch extension when it is installed, which picks
the CUDA build matching the machine. Everything else is in the module's requirements.txt.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import re
from pathlib import Path
from typing import Callable, Optional

logger = logging.getLogger("RibFracSeg")

SLICER_OWNED = ("numpy", "simpleitk", "vtk")  # provided by Slicer: never installed or upgraded by us
REQUIREMENTS = Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"


def requirement_name(line: str) -> str:
    """'scikit-image>=0.21  # comment' -> 'scikit-image'."""
    return re.split(r"[<>=!~;\[ ]", line.split("#", 1)[0].strip(), maxsplit=1)[0]


def read_requirements(path: Path = REQUIREMENTS) -> list[str]:
    """Requirement lines, without comments, blanks and anything Slicer owns."""
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and requirement_name(line).lower() not in SLICER_OWNED]


def _import_name(distribution: str) -> str:
    return {"scikit-image": "skimage", "pyyaml": "yaml"}.get(distribution.lower(), distribution.replace("-", "_"))


def missing(requirements: list[str]) -> list[str]:
    """Requirements whose package cannot be imported (a version check is left to pip_ensure)."""
    return [r for r in requirements if importlib.util.find_spec(_import_name(requirement_name(r))) is None]


def ensure_torch(ask: Optional[Callable[[str], bool]] = None) -> None:
    """Make torch importable: through the PyTorch extension when present, else explain what to do."""
    if importlib.util.find_spec("torch") is not None:
        return
    try:
        import PyTorchUtils  # the SlicerPyTorch extension
    except ImportError:
        raise RuntimeError("PyTorch is not installed. Install the 'PyTorch' extension from the Extensions "
                           "Manager (it picks the right CUDA build), restart Slicer and try again.") from None
    if ask is not None and not ask("RibFracSeg needs PyTorch. Install it now (it can take several minutes)?"):
        raise RuntimeError("PyTorch is required; installation was declined.")
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)
    if torch is None:
        raise RuntimeError("PyTorch installation failed; see the Python console for pip's message.")


def _slicer_pip_module():
    """Slicer's package helper: slicer.pydeps (5.11+) or slicer.packaging, else None (older Slicer)."""
    for name in ("slicer.pydeps", "slicer.packaging"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "pip_ensure"):
            return module
    return None


def ensure_requirements(requester: str = "RibFracSeg", requirements: Optional[list[str]] = None) -> None:
    """pip-install what is missing from requirements.txt (never Slicer's own numpy/SimpleITK/vtk)."""
    import slicer

    requirements = read_requirements() if requirements is None else requirements
    pip = _slicer_pip_module()
    if pip is not None:  # checks without a subprocess, asks the user, skips while testing
        from packaging.requirements import Requirement

        kwargs = {"requester": requester}
        if "skip_packages" in inspect.signature(pip.pip_ensure).parameters:
            kwargs["skip_packages"] = ["SimpleITK", "numpy", "vtk", "torch"]
        pip.pip_ensure([Requirement(r) for r in requirements], **kwargs)
        return
    todo = missing(requirements)
    if todo:
        logger.info("RibFracSeg: installing %s", " ".join(todo))
        slicer.util.pip_install(" ".join(todo))


def ensure_dependencies(ask: Optional[Callable[[str], bool]] = None) -> None:
    """Everything a run needs, at first use (the panel calls this before the first Segment)."""
    ensure_torch(ask)
    ensure_requirements()

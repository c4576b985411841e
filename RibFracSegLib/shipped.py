"""The shipped models, found as package data through importlib.resources.

The same lookup works from a source checkout, an editable install, an installed wheel and the
Slicer extension (which installs RibFracSegLib/ with its models/ folder beside the module), so no
path is ever computed from where the source tree happens to be.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

from . import defaults

_extracted = contextlib.ExitStack()  # only used when the package is imported from a zip
atexit.register(_extracted.close)


def shipped_model(kind: str) -> Path:
    """Path of the shipped checkpoint of `kind` ("fracture" or "l3")."""
    if kind not in defaults.SHIPPED_MODELS:
        raise KeyError(f"no shipped model {kind!r}; shipped: {', '.join(defaults.SHIPPED_MODELS)}")
    ref = resources.files(__package__) / defaults.MODELS_PACKAGE_DIR / defaults.SHIPPED_MODELS[kind]
    if isinstance(ref, Path):
        return ref
    return _extracted.enter_context(resources.as_file(ref))

"""Developer reload: Slicer's Reload re-reads only RibFracSeg.py, so edits to the module's own
packages (RibFracSegLogicLib, RibFracSegLib) would stay unseen until a restart. The Widget's onReload
forgets them first, then lets Slicer reload the module file, which imports them afresh."""

from __future__ import annotations

import sys

OWN_PACKAGES = ("RibFracSegLogicLib", "RibFracSegLib")


def forget_own_modules(packages: tuple[str, ...] = OWN_PACKAGES) -> list[str]:
    """Drop `packages` and their submodules from sys.modules; returns the names dropped (sorted)."""
    names = sorted(name for name in sys.modules if name.split(".", 1)[0] in packages)
    for name in names:
        del sys.modules[name]
    return names

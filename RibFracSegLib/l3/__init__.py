"""L3 slice localisation from frontal/sagittal MIPs with a 2D U-Net, and body composition at L3.

The network ("l3_unet2d") lives with the others in `RibFracSegLib.networks`. Importing this
package imports neither torch nor the network (Slicer's own process reads L3 results through it);
the picture writers, which need Pillow, load on first use (PEP 562).
"""

from RibFracSegLib.l3.body_composition import BodyComposition, body_composition, slice_composition
from RibFracSegLib.l3.locator import L3Result, locate_l3
from RibFracSegLib.l3.projections import Projections, compute_projections

_LAZY = {"save_mip_png", "save_overlay_png"}  # in RibFracSegLib.l3.overlay

__all__ = ["BodyComposition", "L3Result", "Projections", "body_composition", "compute_projections", "locate_l3",
           "save_mip_png", "save_overlay_png", "slice_composition"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from RibFracSegLib.l3 import overlay

    return getattr(overlay, name)

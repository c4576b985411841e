"""L3 slice localisation from frontal/sagittal MIPs with a 2D U-Net, and body composition at L3.

The network ("l3_unet2d") lives with the others in `RibFracSegLib.networks`.
"""

from RibFracSegLib.l3.body_composition import BodyComposition, body_composition, slice_composition
from RibFracSegLib.l3.locator import L3Result, locate_l3
from RibFracSegLib.l3.overlay import save_mip_png, save_overlay_png
from RibFracSegLib.l3.projections import Projections, compute_projections

__all__ = ["BodyComposition", "L3Result", "Projections", "body_composition", "compute_projections", "locate_l3",
           "save_mip_png", "save_overlay_png", "slice_composition"]

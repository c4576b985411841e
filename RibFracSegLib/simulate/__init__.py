"""Rib fractures simulated into real CTs: the four RibFrac types built from each rib's own bone.

Real fracture-free CTs teach a network real anatomy; fractures built into their ribs (rib masks
from TotalSegmentator or `segment_ribs`) give it real-looking positives on that anatomy.
"""

from .case import SimulatedCase, simulate_case
from .dataset import load_ribs, write_simulated
from .plan import FractureSpec
from .render import BuiltFracture

__all__ = ["BuiltFracture", "FractureSpec", "SimulatedCase", "load_ribs", "simulate_case", "write_simulated"]

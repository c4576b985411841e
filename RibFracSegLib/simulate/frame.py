"""A rib's centreline as a lookup: arc position, foot point and tangent of any point near the rib.

The simulation describes every break in the rib's own coordinates (arc length from the head, and
directions across the rib), so it is independent of how the CT is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .. import defaults
from ..ribs.centrelines import resample_polyline


@dataclass
class RibFrame:
    points: np.ndarray  # (n, 3) LPS mm, dense, head first
    arc_mm: np.ndarray  # (n,)
    tangents: np.ndarray  # (n, 3) unit, towards the anterior end
    tree: cKDTree

    @classmethod
    def from_centreline(cls, centreline_lps: np.ndarray) -> "RibFrame":
        pts = resample_polyline(np.asarray(centreline_lps, float), defaults.SIMULATION_FRAME_STEP_MM)
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        # Tangents over a few mm: a voxel-wise centreline wobbles; the rib does not.
        smooth = ndimage.gaussian_filter1d(pts, 2.0 / defaults.SIMULATION_FRAME_STEP_MM, axis=0, mode="nearest")
        tan = np.gradient(smooth, axis=0)
        tan /= np.maximum(np.linalg.norm(tan, axis=1, keepdims=True), 1e-9)
        return cls(pts, arc, tan, cKDTree(pts))

    @property
    def length_mm(self) -> float:
        return float(self.arc_mm[-1])

    def at(self, arc_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """(point, tangent) at an arc position."""
        i = int(np.clip(np.searchsorted(self.arc_mm, arc_mm), 0, len(self.arc_mm) - 1))
        return self.points[i], self.tangents[i]

    def locate(self, points_lps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(arc mm, foot point, distance mm) of the nearest centreline sample to each point."""
        dist, idx = self.tree.query(points_lps)
        return self.arc_mm[idx], self.points[idx], dist


def perpendicular_basis(tangent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors completing `tangent` to an orthonormal frame."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(tangent[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(tangent, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(tangent, e1)


def rotate_towards(tangent: np.ndarray, direction: np.ndarray, degrees: float) -> np.ndarray:
    """`tangent` tilted by `degrees` towards `direction` (a unit vector perpendicular to it)."""
    a = np.deg2rad(degrees)
    v = np.cos(a) * tangent + np.sin(a) * direction
    return v / np.linalg.norm(v)

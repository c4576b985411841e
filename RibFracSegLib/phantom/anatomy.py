"""Where every structure of a phantom lies, in anatomy coordinates (mm, LPS axes).

x runs to the patient's Left, y to Posterior, z to Superior; x = 0 is the midline, y = 0 the body's
centre and z = 0 the top of T1's vertebral body. Nothing here touches voxels: this is the layout
that `render` rasterises, so it can be inspected and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.interpolate import CubicSpline

from RibFracSegLib.defaults import VERTEBRA_IDS
from RibFracSegLib.phantom.variation import Variation

# Levels drawn, top to bottom; body and disc heights in mm for a body_scale of 1.
LEVELS = ["C6", "C7"] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
_BODY_H = {"C6": 13, "C7": 14, **{f"T{i}": 16 + 8 * (i - 1) / 11 for i in range(1, 13)},
           "L1": 26, "L2": 27, "L3": 28, "L4": 28, "L5": 27}
_DISC_H = {"C6": 5, "C7": 5, **{f"T{i}": 4.5 + 1.5 * (i - 1) / 11 for i in range(1, 13)},
           "L1": 9, "L2": 10, "L3": 10, "L4": 11, "L5": 11}  # disc below each level
SACRUM_HEIGHT = 100.0

# Rib layout per rib number 1..12: drop of the anterior end below the head (mm), angle at which the
# bony rib ends (radians from posterior), and whether costal cartilage continues it.
RIB_DROP = np.array([35, 55, 70, 80, 85, 90, 90, 85, 75, 65, 40, 30], float)
RIB_THETA_END = np.pi * np.array([0.90, 0.86, 0.85, 0.85, 0.85, 0.84, 0.83, 0.80, 0.75, 0.70, 0.55, 0.42])
RIB_HAS_CARTILAGE = np.array([True] * 10 + [False] * 2)
RIB_WALL_RAMP_MM = 30.0  # ribs follow the cavity with its step at the diaphragm (fat and muscle) eased over
#   this height: followed as a step, a lower rib crossing that height was kinked by 20-43 degrees within 2 mm


@dataclass(frozen=True)
class Vertebra:
    name: str
    label_id: int
    z_top: float
    z_bottom: float
    y_body: float  # AP centre of the vertebral body
    half_width: float  # lateral semi-axis of the body
    half_depth: float  # AP semi-axis of the body

    @property
    def z_center(self) -> float:
        return 0.5 * (self.z_top + self.z_bottom)

    @property
    def center(self) -> np.ndarray:
        return np.array([0.0, self.y_body, self.z_center])


@dataclass(frozen=True)
class RibPath:
    """Centreline of one rib sampled uniformly along its length."""

    number: int  # 1..12
    side: int  # -1 right (x < 0), +1 left
    points: np.ndarray  # (n, 3) anatomy mm
    arc_mm: np.ndarray  # (n,) arc length from the head
    bony_length_mm: float  # beyond this the centreline is costal cartilage
    half_thickness: np.ndarray  # (n,) radial semi-axis, mm
    half_height: np.ndarray  # (n,) cranio-caudal semi-axis, mm

    @property
    def label(self) -> str:
        return f"{'R' if self.side < 0 else 'L'}{self.number}"

    @property
    def rib_id(self) -> int:
        """1..12 right ribs, 13..24 left ribs."""
        return self.number + (0 if self.side < 0 else 12)


class Anatomy:
    """Body outline, cavities, spine and ribs of one patient, as functions of z."""

    def __init__(self, body_scale: float = 1.0, fat_mm: float = 18.0, rng: np.random.Generator | None = None,
                 variation: Variation | None = None):
        rng = rng or np.random.default_rng(0)
        self.variation = variation
        self.scale = s = float(body_scale)
        self.fat_mm = float(fat_mm)
        self.contrast = bool(rng.random() < 0.5)
        self.vertebrae = self._stack_vertebrae(s)
        self.by_name = {vb.name: vb for vb in self.vertebrae}
        # AP position of each body follows the column's curve (kyphosis, lordosis).
        self.vertebrae = [replace(vb, y_body=float(self.spine_y(vb.z_center))) for vb in self.vertebrae]
        v = self.by_name = {vb.name: vb for vb in self.vertebrae}
        self.z_sacrum_top = v["L5"].z_bottom - self.disc_height("L5")
        self.z_sacrum_bottom = self.z_sacrum_top - SACRUM_HEIGHT * s
        self.z_crest = v["L4"].z_bottom - 0.5 * self.disc_height("L4")  # iliac crests: the L4/L5 disc
        zt1, zt4, zt8, zt12 = v["T1"].z_top, v["T4"].z_center, v["T8"].z_center, v["T12"].z_center
        zl3 = v["L3"].z_center
        # Outline control points (z, Bx, By), top to bottom, jittered per patient.
        jit = 1.0 + 0.04 * rng.standard_normal(2)
        z = [zt1 + 60 * s, zt1 + 25 * s, zt1, zt4, zt8, zt12, zl3, self.z_sacrum_top, self.z_sacrum_bottom - 60 * s]
        bx = np.array([60, 80, 125, 150, 160, 152, 150, 165, 170], float) * s * jit[0]
        by = np.array([60, 75, 95, 108, 115, 115, 112, 110, 105], float) * s * jit[1]
        self._outline_z = np.array(z[::-1])
        self._bx, self._by = bx[::-1], by[::-1]
        self.z_diaphragm = v["T10"].z_center + 10 * s  # top of the right dome
        self.z_apex = zt1 + 25 * s
        self.ribs = [self._rib(n, side, rng) for side in (-1, 1) for n in range(1, 13)]

    # --- spine ----------------------------------------------------------------------------------
    def _stack_vertebrae(self, s: float) -> list[Vertebra]:
        z = sum(_BODY_H[n] + _DISC_H[n] for n in ("C6", "C7")) * s  # T1 top at z = 0
        bodies = self.variation.body_factor if self.variation else {}
        out = []
        for i, name in enumerate(LEVELS):
            h = _BODY_H[name] * s * bodies.get(name, 1.0)
            frac = i / (len(LEVELS) - 1)
            half_w = (13 + 13 * frac) * s
            half_d = (10 + 9 * frac) * s
            out.append(Vertebra(name, VERTEBRA_IDS[name], z, z - h, 0.0, half_w, half_d))
            z -= h + self.disc_height(name)
        return out

    def disc_height(self, name: str) -> float:
        """Height of the disc below level `name` (mm)."""
        factor = self.variation.disc_factor.get(name, 1.0) if self.variation else 1.0
        return _DISC_H[name] * self.scale * factor

    def spine_x(self, z: float) -> float:
        """Lateral position of the column at height z: 0 unless the variation has a scoliosis."""
        return float(self.variation.spine_x(z)) if self.variation else 0.0

    def spine_y(self, z: np.ndarray) -> np.ndarray:
        """AP centre of the vertebral column (bodies) at height z; a smooth kyphosis/lordosis."""
        z = np.asarray(z, float)
        zt = self.by_name["T1"].z_top
        zl5 = self.by_name["L5"].z_bottom
        zc = self.by_name["T7"].z_center
        kf, lf = (self.variation.kyphosis, self.variation.lordosis) if self.variation else (1.0, 1.0)
        kypho = kf * 6 * self.scale * np.exp(-((z - zc) / (0.35 * (zt - zl5))) ** 2)
        lordo = lf * -14 * self.scale * np.exp(-((z - self.by_name["L3"].z_center) / (70 * self.scale)) ** 2)
        return (40 * self.scale) + kypho + lordo

    def vertebra_at(self, z: float) -> tuple[Vertebra | None, str]:
        """The vertebra whose body spans z ('body'), the one whose disc below spans z ('disc'), or None."""
        for vb in self.vertebrae:
            if vb.z_bottom <= z <= vb.z_top:
                return vb, "body"
            if vb.z_bottom - self.disc_height(vb.name) <= z < vb.z_bottom:
                return vb, "disc"
        return None, ""

    # --- outline and cavities ---------------------------------------------------------------------
    def outline(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Semi-axes (lateral, AP) of the skin ellipse at z."""
        z = np.asarray(z, float)
        return np.interp(z, self._outline_z, self._bx), np.interp(z, self._outline_z, self._by)

    def _thorax(self, z: np.ndarray, ramp_mm: float) -> np.ndarray:
        """1 above the diaphragm, 0 below: a step, or eased (smoothstep) over `ramp_mm` about it."""
        z = np.asarray(z, float)
        if ramp_mm <= 0:
            return (z > self.z_diaphragm).astype(float)
        t = np.clip((z - self.z_diaphragm) / ramp_mm + 0.5, 0.0, 1.0)
        return t * t * (3 - 2 * t)

    def fat(self, z: np.ndarray, ramp_mm: float = 0.0) -> np.ndarray:
        return (1.0 - 0.3 * self._thorax(z, ramp_mm)) * self.fat_mm

    def muscle(self, z: np.ndarray, ramp_mm: float = 0.0) -> np.ndarray:
        return (12.0 + 2.0 * self._thorax(z, ramp_mm)) * self.scale

    def rib_layer(self, z: np.ndarray) -> np.ndarray:
        """Thickness of the rib/intercostal layer between muscle and cavity: 12 mm in the chest."""
        z = np.asarray(z, float)
        z_l1 = self.by_name["L1"].z_center
        return 12.0 * self.scale * np.clip((z - z_l1) / (self.z_diaphragm - z_l1), 0, 1)

    def cavity(self, z: np.ndarray, ramp_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Semi-axes and AP centre of the thoracic/abdominal cavity at z (lateral 0 above the apex);
        `ramp_mm`: its step at the diaphragm eased over that height (`_thorax`)."""
        z = np.asarray(z, float)
        bx, by = self.outline(z)
        inset = self.fat(z, ramp_mm) + self.muscle(z, ramp_mm) + self.rib_layer(z)
        taper = np.clip((self.z_apex - z) / (self.z_apex - self.by_name["T1"].z_top + 1e-6), 0, 1) ** 0.5
        cx = np.maximum(bx - inset, 0) * taper
        cy = np.maximum(by - inset, 0) * taper
        return cx, cy, np.full_like(cx, -5.0 * self.scale)

    # --- ribs -------------------------------------------------------------------------------------
    def _rib(self, n: int, side: int, rng: np.random.Generator) -> RibPath:
        s = self.scale
        vb = self.by_name[f"T{n}"]
        y_body = float(self.spine_y(vb.z_center))
        z0 = vb.z_top + 1.0 * s
        x_spine = self.spine_x(z0)
        head = [x_spine + side * (vb.half_width + 7.5 * s), y_body + 0.3 * vb.half_depth, z0]
        tubercle = [x_spine + side * (vb.half_width + 26 * s), y_body + vb.half_depth + 16 * s, z0 - 1.5 * s]
        drop = RIB_DROP[n - 1] * s * (1 + 0.05 * rng.standard_normal())
        theta_end = RIB_THETA_END[n - 1]
        if self.variation is not None:  # steeper or flatter ribs; floating ribs longer or shorter
            drop *= self.variation.rib_drop
            theta_end *= self.variation.floating_rib_length if n >= 11 else 1.0
        theta_cart = np.pi - np.arcsin(min(1.0, 16 * s / 80)) if n <= 7 else theta_end + 0.15 * np.pi
        if not RIB_HAS_CARTILAGE[n - 1]:
            theta_cart = theta_end
        # Arc round the chest wall, 6 mm outside the cavity, from the rib angle to the front.
        x_angle = vb.half_width + 45 * s
        thetas = np.union1d(np.linspace(0.0, theta_cart, 48), [theta_end])
        z_arc = z0 - 3 * s - drop * np.clip(thetas / theta_end, 0, None) ** 1.8
        cx, cy, yc = self.cavity(z_arc, RIB_WALL_RAMP_MM)
        rx, ry = cx + 6 * s, cy + 6 * s
        x_arc = side * rx * np.sin(thetas)
        y_arc = yc + ry * np.cos(thetas)
        keep = (np.abs(x_arc) >= x_angle) | (thetas > np.pi / 2)
        ctrl = np.vstack([head, tubercle, np.column_stack([x_arc, y_arc, z_arc])[keep]])
        is_end = np.r_[False, False, np.isclose(thetas[keep], theta_end)]
        t = np.r_[0, np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))]
        spline = CubicSpline(t, ctrl, bc_type="natural")
        fine = np.linspace(0, t[-1], int(t[-1] / 0.25) + 2)
        pts = spline(fine)
        arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
        # Bony length: the arc length at the control point where the bone ends and cartilage begins.
        bony = float(np.interp(t[is_end][0], fine, arc)) if RIB_HAS_CARTILAGE[n - 1] else float(arc[-1])
        frac = arc / max(bony, 1e-6)
        flat = 1.0 if n > 1 else 0.8
        half_t = s * np.interp(frac, [0, 0.1, 0.3, 1.0, 2.0], [3.6, 3.0, 3.0 * flat, 2.6, 2.8])
        half_h = s * np.interp(frac, [0, 0.1, 0.3, 1.0, 2.0], [4.0, 4.2, 5.0 / flat, 5.2, 4.8])
        return RibPath(n, side, pts, arc, bony, half_t, half_h)

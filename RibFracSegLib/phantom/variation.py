"""Patient-to-patient variation of a phantom, for training the L3 locator toward real CTs.

Off by default (PhantomParams.variation False): the default phantoms, which every fracture and rib
test uses, stay byte-identical. On, it draws from its own random stream (so the rest of the phantom
is drawn as before): vertebral body and disc heights (the L3 row is not a fixed distance below T12),
the amount of kyphosis and lordosis, a scoliosis, how steep the ribs run and how long the floating
ribs are (the lowest ribs' tips are no fixed distance above L3), marrow density, oral contrast in the bowel, arms
beside the body and a CT table - what real CTs show and regular phantoms do not. (body.ARCH_VARIED:
vertebral arches that hang over the disc below.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from RibFracSegLib.phantom.tissue import Tissue as T


@dataclass(frozen=True)
class Variation:
    body_factor: dict[str, float] = field(default_factory=dict)  # vertebral body height x, per level
    disc_factor: dict[str, float] = field(default_factory=dict)  # disc height x, per level
    kyphosis: float = 1.0  # x the regular thoracic kyphosis
    lordosis: float = 1.0  # x the regular lumbar lordosis
    scoliosis_mm: float = 0.0  # peak lateral shift of the column
    scoliosis_period_mm: float = 400.0
    scoliosis_phase: float = 0.0
    oral_contrast: bool = False  # bowel filled with positive contrast
    arms: bool = False  # arms beside the body (else raised above the head, out of view)
    table_gap_mm: float | None = None  # CT table this far behind the back (None: no table)
    table_mm: float = 4.0  # thickness of the table's dense shell
    marrow_hu: float | None = None  # vertebral marrow (None: the regular 230 HU)
    rib_drop: float = 1.0  # x how far each rib's front end lies below its head
    floating_rib_length: float = 1.0  # x the arc of ribs 11 and 12
    sacral_tilt_deg: float = 20.0  # S1 endplate against L5's lower plate (phantom.pelvis)
    pelvis_width: float = 1.0  # x the iliac wings' lateral reach

    def spine_x(self, z: np.ndarray) -> np.ndarray:
        """Lateral shift of the column at height z (anatomy mm)."""
        return self.scoliosis_mm * np.sin(2 * np.pi * np.asarray(z, float) / self.scoliosis_period_mm
                                          + self.scoliosis_phase)


def draw_variation(rng: np.random.Generator, levels: list[str]) -> Variation:
    """Random variation within what adult CTs show (heights +-10 % per patient and +-5 % per level,
    discs +-25 %, lordosis 0.3-2x, scoliosis up to 15 mm in a third of patients)."""
    patient = rng.normal(1.0, 0.06)
    body = {n: float(np.clip(patient * rng.normal(1.0, 0.05), 0.8, 1.25)) for n in levels}
    disc = {n: float(np.clip(rng.normal(1.0, 0.25), 0.4, 1.6)) for n in levels}
    scol = float(rng.uniform(3, 15)) * (1 if rng.random() < 0.5 else -1) if rng.random() < 0.35 else 0.0
    return Variation(body, disc, kyphosis=float(rng.uniform(0.3, 2.0)), lordosis=float(rng.uniform(0.3, 2.0)),
                     scoliosis_mm=scol, scoliosis_period_mm=float(rng.uniform(300, 700)),
                     scoliosis_phase=float(rng.uniform(0, 2 * np.pi)), oral_contrast=bool(rng.random() < 0.35),
                     arms=bool(rng.random() < 0.4),
                     table_gap_mm=float(rng.uniform(2, 40)) if rng.random() < 0.7 else None,
                     table_mm=float(rng.uniform(2, 8)), marrow_hu=float(rng.uniform(180, 420)),
                     rib_drop=float(rng.uniform(0.7, 1.6)), floating_rib_length=float(rng.uniform(0.6, 1.3)),
                     sacral_tilt_deg=float(rng.uniform(10, 30)), pelvis_width=float(rng.uniform(0.9, 1.08)))


def paint_extras(c, z: float, anat, bx: float, by: float) -> None:
    """Arms beside the trunk (humerus above the elbow, radius and ulna below) and the CT table."""
    var, s = anat.variation, anat.scale
    if var.arms and z < anat.by_name["T1"].z_top:
        elbow = anat.by_name["L1"].z_center
        for side in (-1, 1):
            xa = side * (bx + 12 * s + 38 * s)
            c.ellipse(T.SKIN, xa, 0, 40 * s, 45 * s)
            c.ellipse(T.FAT, xa, 0, 38 * s, 43 * s)
            c.ellipse(T.MUSCLE, xa, 0, 30 * s, 35 * s)
            if z > elbow:
                c.shelled_ellipse(xa, 0, 11 * s, 11 * s, 3 * s)
            else:
                for dy in (-12, 12):
                    c.shelled_ellipse(xa, dy * s, 6 * s, 6 * s, 2 * s)
    if var.table_gap_mm is not None:
        y0 = by + var.table_gap_mm
        c.ellipse(T.TABLE, 0, y0 + var.table_mm / 2, 230.0, var.table_mm / 2, power=8.0, region=(T.AIR,))
        c.ellipse(T.TABLE, 0, y0 + 40.0, 230.0, var.table_mm / 2, power=8.0, region=(T.AIR,))

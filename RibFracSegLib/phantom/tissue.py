"""Tissue classes of a phantom and the HU each is given.

The renderer paints classes, not intensities: the class map is the truth the tests check
(tissue HU ranges, ribs as separate bones), and the CT is made from it in one place.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Tissue(IntEnum):
    AIR = 0
    SKIN = 1
    FAT = 2  # subcutaneous and intermuscular fat
    MUSCLE = 3
    LUNG = 4
    SOFT = 5  # mediastinum, vessels, fracture haematoma
    BLOOD = 6  # heart chambers and great vessels
    LIVER = 7
    SPLEEN = 8
    KIDNEY = 9
    BOWEL = 10
    GAS = 11  # gas inside the body (bowel, airway)
    VISCERAL_FAT = 12
    CORD = 13
    DISC = 14
    CARTILAGE = 15
    CANCELLOUS = 16  # vertebral, sternal and pelvic marrow
    CORTICAL = 17  # vertebral, sternal and pelvic cortex
    RIB_MARROW = 18
    RIB_CORTEX = 19
    BLADDER = 20
    MEDIASTINAL_FAT = 21
    TABLE = 22  # CT table shell (phantom.variation only)


# Mean HU and the standard deviation of the tissue's own texture (before scanner noise).
_HU = {
    Tissue.AIR: (-1000, 3), Tissue.SKIN: (30, 8), Tissue.FAT: (-100, 10), Tissue.MUSCLE: (50, 8),
    Tissue.LUNG: (-850, 25), Tissue.SOFT: (40, 8), Tissue.BLOOD: (40, 5), Tissue.LIVER: (60, 6),
    Tissue.SPLEEN: (50, 6), Tissue.KIDNEY: (35, 6), Tissue.BOWEL: (25, 12), Tissue.GAS: (-950, 20),
    Tissue.VISCERAL_FAT: (-95, 10), Tissue.CORD: (30, 5), Tissue.DISC: (85, 10),
    Tissue.CARTILAGE: (130, 20), Tissue.CANCELLOUS: (230, 30), Tissue.CORTICAL: (800, 60),
    Tissue.RIB_MARROW: (190, 25), Tissue.RIB_CORTEX: (1250, 80), Tissue.BLADDER: (10, 5),
    Tissue.MEDIASTINAL_FAT: (-80, 10), Tissue.TABLE: (150, 30),
}
CONTRAST_BLOOD_HU = 180.0
ORAL_CONTRAST_HU = 250.0  # bowel mean with positive oral contrast

BONE = (Tissue.CANCELLOUS, Tissue.CORTICAL, Tissue.RIB_MARROW, Tissue.RIB_CORTEX)
RIB_BONE = (Tissue.RIB_MARROW, Tissue.RIB_CORTEX)


def hu_tables(contrast: bool, oral_contrast: bool = False, marrow_hu: float | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(mean HU, texture SD) indexed by tissue class; `marrow_hu`: a patient's own vertebral marrow."""
    mean = np.zeros(len(Tissue), np.float32)
    sd = np.zeros(len(Tissue), np.float32)
    for t, (m, d) in _HU.items():
        mean[t], sd[t] = m, d
    if contrast:
        mean[Tissue.BLOOD] = CONTRAST_BLOOD_HU
        mean[Tissue.KIDNEY] += 100
        mean[Tissue.LIVER] += 40
        mean[Tissue.SPLEEN] += 50
    if marrow_hu is not None:
        mean[Tissue.CANCELLOUS], sd[Tissue.CANCELLOUS] = marrow_hu, 60
    if oral_contrast:
        mean[Tissue.BOWEL], sd[Tissue.BOWEL] = ORAL_CONTRAST_HU, 60
    return mean, sd


def is_bone(tissue: np.ndarray) -> np.ndarray:
    return np.isin(tissue, np.array(BONE, np.uint8))

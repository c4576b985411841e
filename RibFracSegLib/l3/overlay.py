"""QC pictures: the L3 slice with the tissue overlay, and the two MIPs with the L3 line.

Written atomically as PNG (Pillow, already required by scikit-image). A reader should be able to
judge at a glance whether the slice and the compartments are right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from RibFracSegLib import defaults
from RibFracSegLib.io import atomic_path
from RibFracSegLib.l3.body_composition import TISSUE_COLOURS
from RibFracSegLib.pictures import grey_rgb


def _scaled(rgb: np.ndarray, pixel_mm: tuple[float, float] = (1.0, 1.0), min_side: int = 512) -> Image.Image:
    """RGB as a picture with square pixels in mm (anisotropic in-plane spacing) and at least `min_side` pixels."""
    h, w = rgb.shape[:2]
    rows_mm, cols_mm = pixel_mm
    scale = max(1.0, min_side / max(h * rows_mm / min(pixel_mm), w * cols_mm / min(pixel_mm)))
    size = (int(round(w * scale * cols_mm / min(pixel_mm))), int(round(h * scale * rows_mm / min(pixel_mm))))
    image = Image.fromarray(rgb)
    return image if size == (w, h) else image.resize(size, Image.NEAREST)


def _save(rgb: np.ndarray, path: str | Path, pixel_mm: tuple[float, float] = (1.0, 1.0), min_side: int = 512) -> Path:
    with atomic_path(path) as tmp:
        _scaled(rgb, pixel_mm, min_side).save(tmp, format="PNG")
    return Path(path)


def overlay_picture(composition, alpha: float = 0.45) -> Image.Image:
    """The L3 slice (abdominal window) with muscle red, SAT yellow, VAT green and IMAT blue."""
    rgb = grey_rgb(composition.hu, defaults.L3_OVERLAY_WINDOW_HU).astype(np.float32)
    for label, colour in TISSUE_COLOURS.items():
        sel = composition.mask == label
        rgb[sel] = (1 - alpha) * rgb[sel] + alpha * np.array(colour, np.float32)
    return _scaled(rgb.astype(np.uint8), composition.pixel_mm)


def save_overlay_png(composition, path: str | Path, alpha: float = 0.45) -> Path:
    """`overlay_picture` as a PNG file (atomically)."""
    with atomic_path(path) as tmp:
        overlay_picture(composition, alpha).save(tmp, format="PNG")
    return Path(path)


def save_mip_png(projections, l3, path: str | Path) -> Path:
    """Frontal and sagittal MIPs side by side with the L3 row: red if in view, grey otherwise."""
    mips = [projections.frontal, projections.sagittal]
    gap = np.zeros((mips[0].shape[0], 8))
    rgb = grey_rgb(np.concatenate([mips[0], gap, mips[1]], axis=1), (0.0, 1.0))
    row = int(round(l3.row_mm / projections.spacing_mm))
    colour = (255, 0, 0) if l3.in_view else (128, 128, 128)
    rgb[max(0, row - 1):row + 2, :] = colour
    return _save(rgb, path)

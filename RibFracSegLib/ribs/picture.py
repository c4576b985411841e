"""One-look QC picture of the rib cage: frontal and posterior views, each rib coloured and numbered.

The views are first-hit projections of the label image along the antero-posterior axis (surface
views, so a rib in front hides the one behind it), drawn over a bone MIP, in millimetre aspect.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont

from ..io import atomic_path
from ..orientation import canonical_volume
from .labels import RibLabels, rib_from_label_value

PIXEL_MM = 0.6  # picture scale
FONT_PX = 18


def _palette() -> np.ndarray:
    """Distinct colours per label value: 12 hues per side, alternating brightness for neighbours."""
    colours = np.zeros((256, 3), np.uint8)
    for value in range(1, 27):
        if value > 24:
            colours[value] = (150, 150, 150)
            continue
        k = (value - 1) % 12
        hue = (k * 0.618) % 1.0
        rgb = np.array([abs(hue * 6 - 3) - 1, 2 - abs(hue * 6 - 2), 2 - abs(hue * 6 - 4)]).clip(0, 1)
        colours[value] = (rgb * (255 if k % 2 == 0 else 190)).astype(np.uint8)
    return colours


def _first_hit(labels: np.ndarray, from_front: bool) -> np.ndarray:
    """[z, x] label of the first rib voxel met along y (canonical y runs anterior -> posterior)."""
    lab = labels if from_front else labels[:, ::-1]
    hit = lab > 0
    index = np.argmax(hit, axis=1)
    values = np.take_along_axis(lab, index[:, None, :], axis=1)[:, 0]
    return np.where(hit.any(axis=1), values, 0)


def rib_cage_views(ct: sitk.Image, ribs: RibLabels) -> Image.Image:
    """Frontal (left) and posterior (right) views side by side, head up, numbers beside each rib."""
    ct_view = canonical_volume(ct)
    lab_view = canonical_volume(ribs.labels)
    labels = np.asarray(lab_view.array)
    hu = np.asarray(ct_view.array)
    sz, _, sx = ct_view.spacing_zyx
    mip = np.clip((hu.max(axis=1).astype(np.float32) - 100.0) / 900.0, 0, 1)
    colours = _palette()
    size = (max(1, int(round(labels.shape[2] * sx / PIXEL_MM))), max(1, int(round(labels.shape[0] * sz / PIXEL_MM))))
    panels = []
    for from_front in (True, False):
        surface = _first_hit(labels, from_front)
        rgb = np.repeat((mip * 90).astype(np.uint8)[..., None], 3, axis=2)
        rgb[surface > 0] = colours[surface[surface > 0]]
        # head up; frontal view shows the patient's right on the picture's left (as facing them)
        rgb = rgb[::-1]
        if not from_front:
            rgb = rgb[:, ::-1]
        panel = Image.fromarray(np.ascontiguousarray(rgb)).resize(size, Image.NEAREST)
        draw = ImageDraw.Draw(panel)
        font = ImageFont.load_default(size=FONT_PX)
        for value in np.unique(surface[surface > 0]):
            z, x = np.nonzero(surface == value)
            side, number = rib_from_label_value(int(value))
            text = str(number) if number else "?"
            outermost = int(np.argmax(np.abs(x - labels.shape[2] / 2.0)))
            px = x[outermost] if from_front else labels.shape[2] - 1 - x[outermost]
            py = labels.shape[0] - 1 - z[outermost]
            px, py = px * sx / PIXEL_MM, py * sz / PIXEL_MM
            shift = 8 if (px > size[0] / 2) else -8 - FONT_PX
            draw.text((px + shift, py - FONT_PX / 2), text, fill=tuple(int(c) for c in colours[value]), font=font,
                      stroke_width=2, stroke_fill=(0, 0, 0))
        draw.text((4, 4), "frontal" if from_front else "posterior", fill=(255, 255, 255), font=font)
        panels.append(panel)
    out = Image.new("RGB", (2 * size[0] + 8, size[1] + FONT_PX + 8), (0, 0, 0))
    out.paste(panels[0], (0, FONT_PX + 8))
    out.paste(panels[1], (size[0] + 8, FONT_PX + 8))
    numbered = sum(r.number is not None for r in ribs.ribs)
    ImageDraw.Draw(out).text((4, 4), f"{len(ribs.ribs)} ribs found, {numbered} numbered (anchor: {ribs.numbering})",
                             fill=(255, 255, 255), font=ImageFont.load_default(size=FONT_PX))
    return out


def write_rib_picture(ct: sitk.Image, ribs: RibLabels, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        rib_cage_views(ct, ribs).save(tmp, format="PNG")
    return Path(path)

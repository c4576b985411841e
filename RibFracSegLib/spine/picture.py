"""QC picture of the vertebral count: a sagittal slab through the vertebral bodies, head up, in mm
aspect, each body's extent and name drawn beside it, and optional L3 lines (count, network)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw

from ..io import atomic_path
from ..pictures import grey
from ..orientation import canonical_volume
from .levels import SpineLevels

PIXEL_MM = 0.5
HALF_WIDTH_MM = 110.0  # antero-posterior half width of the picture around the bodies
WINDOW_HU = (-250.0, 1100.0)
BONE_WINDOW_HU = (100.0, 1000.0)  # the coronal bone MIP beside it


def _canonical_index(canon, image: sitk.Image, lps) -> np.ndarray:
    """LPS point -> canonical continuous index (z, y, x)."""
    kji = np.array(image.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in lps)))[::-1]
    shape = np.array(canon.array.shape, float)
    out = kji[list(canon.axes)]
    return np.where(canon.flips, shape - 1 - out, out)


def spine_picture(image: sitk.Image, levels: SpineLevels, lines: Optional[dict] = None,
                  reading: Optional[dict] = None) -> Image.Image:
    """The picture; `lines` maps a label (e.g. 'L3 count') to (superior z in mm, RGB colour); `reading`
    maps a vertebra's name to the superior z (mm) of its body's centre as a reader named it, written in
    yellow in front of the bodies, so the tool's names (blue, behind) can be checked against it."""
    canon = canonical_volume(image)
    hu = np.asarray(canon.array)
    sz, sy, sx = canon.spacing_zyx
    nz = hu.shape[0]
    if levels.vertebrae:
        idx = np.array([_canonical_index(canon, image, v.centre_lps) for v in levels.vertebrae])
        order = np.argsort(idx[:, 0])
        xs = np.interp(np.arange(nz), idx[order, 0], idx[order, 2])
        yc = float(np.median(idx[:, 1]))
    else:
        xs, yc = np.full(nz, hu.shape[2] / 2.0), hu.shape[1] / 2.0
    half = max(1, int(round(3.0 / sx)))
    sag = np.stack([hu[k, :, max(0, int(x) - half):int(x) + half + 1].mean(axis=1) for k, x in enumerate(xs)])
    picture = Image.fromarray(grey(sag, WINDOW_HU)[::-1])  # head up
    picture = picture.resize((max(1, int(hu.shape[1] * sy / PIXEL_MM)), max(1, int(nz * sz / PIXEL_MM))))
    y0 = max(0, int((yc * sy - HALF_WIDTH_MM) / PIXEL_MM))
    picture = picture.crop((y0, 0, min(picture.width, y0 + int(2 * HALF_WIDTH_MM / PIXEL_MM)), picture.height))
    picture = picture.convert("RGB")
    draw = ImageDraw.Draw(picture)
    zs = [canon.source.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in canon.index_to_input(
        np.array([[k, yc, xs[int(k)]]]))[0]))[2] for k in (0, nz - 1)]

    def row(z_mm: float) -> float:  # superior z -> picture row (head up)
        k = (z_mm - zs[0]) / (zs[1] - zs[0]) * (nz - 1) if zs[1] != zs[0] else 0.0
        return (nz - 1 - k + 0.5) * sz / PIXEL_MM

    col = (yc * sy / PIXEL_MM) - y0
    for v in levels.vertebrae:
        top, bottom = row(v.z_top_mm), row(v.z_bottom_mm)
        colour = (80, 200, 255) if v.name else (160, 160, 160)
        draw.line([(col + 40, top), (col + 70, top)], fill=colour, width=2)
        draw.line([(col + 40, bottom), (col + 70, bottom)], fill=colour, width=2)
        draw.line([(col + 70, top), (col + 70, bottom)], fill=colour, width=1)
        draw.text((col + 76, 0.5 * (top + bottom) - 6), v.name or "?", fill=colour)
    for name, z_mm in (reading or {}).items():
        draw.text((col - 150, row(z_mm) - 6), f"{name} (reading)", fill=(255, 255, 0))
    for i, (label, (z_mm, colour)) in enumerate((lines or {}).items()):
        r = row(z_mm)
        draw.line([(0, r), (col + 36, r)], fill=colour, width=2)
        draw.text((4, r - 14 - 12 * i), label, fill=colour)
    picture = _with_coronal(picture, hu, canon.spacing_zyx, yc, levels, row)
    draw = ImageDraw.Draw(picture)
    lumbar = f", {levels.lumbar_count} lumbar" if levels.lumbar_count else ""
    draw.text((4, 4), f"count from {levels.anchor}{lumbar}", fill=(255, 255, 0))
    return picture


def _with_coronal(sagittal: Image.Image, hu: np.ndarray, spacing_zyx, yc: float, levels: SpineLevels,
                  row) -> Image.Image:
    """Append a coronal bone MIP of the slab behind the bodies' front (ribs, heads, transverse
    processes), so the rib-to-vertebra count can be checked by eye; names repeated on the right."""
    sz, sy, sx = spacing_zyx
    j0, j1 = max(0, int(yc - 20.0 / sy)), min(hu.shape[1], int(yc + 70.0 / sy))
    mip = hu[:, j0:j1].max(axis=1)[::-1]
    coronal = Image.fromarray(grey(mip, BONE_WINDOW_HU))
    coronal = coronal.resize((max(1, int(hu.shape[2] * sx / PIXEL_MM)), sagittal.height)).convert("RGB")
    draw = ImageDraw.Draw(coronal)
    for v in levels.vertebrae:
        for z in (v.z_top_mm, v.z_bottom_mm):
            draw.line([(coronal.width - 60, row(z)), (coronal.width - 40, row(z))], fill=(80, 200, 255), width=2)
        draw.text((coronal.width - 36, 0.5 * (row(v.z_top_mm) + row(v.z_bottom_mm)) - 6), v.name or "?",
                  fill=(80, 200, 255))
    out = Image.new("RGB", (sagittal.width + coronal.width, sagittal.height))
    out.paste(sagittal, (0, 0))
    out.paste(coronal, (sagittal.width, 0))
    return out


def save_spine_png(image: sitk.Image, levels: SpineLevels, path: str | os.PathLike,
                   lines: Optional[dict] = None, reading: Optional[dict] = None) -> Path:
    """Write the picture atomically; returns its path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        spine_picture(image, levels, lines, reading).save(tmp, format="PNG")
    return path

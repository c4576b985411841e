"""QC pictures of the rib step: `<name>-unfolded.png` and `<name>-qc.png` (unfolded + frontal view).

The unfolded picture shows every rib straightened (bone window), rib names at the spine, missing
ribs as labelled empty rows, and each fracture as a numbered box. The QC picture puts it beside a
frontal rendering of the rib cage — a bone MIP with each rib's front-most voxels coloured by its
number — carrying the same numbered boxes, so a reader checks at one glance that the ribs were
found and numbered right and where each fracture sits. Written atomically (Pillow).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont

from .. import defaults
from ..detections import Detection
from ..io import atomic_path
from .labels import RibLabels, rib_from_label_value
from .unfold import UnfoldedRibs, unfold_ribs
from .unfold_marks import UnfoldedMark, map_detections

EMPTY = (18, 18, 26)  # no rib sampled here
MISSING = (70, 28, 28)  # the row of a rib that was not found
MARK = (255, 220, 0)  # fracture boxes and their numbers
HEADER_PX = 22


@dataclass(frozen=True)
class QcFiles:
    unfolded_png: Path
    qc_png: Path
    marks: dict  # detection id -> UnfoldedMark or None (not on a rib)


def _font(size: int):
    return ImageFont.load_default(size=size)


def _grey(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    g = (np.clip((np.nan_to_num(values, nan=lo) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def rib_colour(label: int) -> tuple[int, int, int]:
    """Colour of a rib by number (same hue left and right); unnumbered ribs are white."""
    _, number = rib_from_label_value(int(label))
    if number is None:
        return (255, 255, 255)
    r, g, b = colorsys.hsv_to_rgb(((number - 1) * 0.61803) % 1.0, 0.75, 1.0)
    return int(255 * r), int(255 * g), int(255 * b)


def _box(draw: ImageDraw.ImageDraw, box: Sequence[float], number: int, font, width: int = 2) -> None:
    r0, c0, r1, c1 = box
    draw.rectangle([c0, r0, c1, r1], outline=MARK, width=width)
    text = str(number)
    x, y = c0, max(0, r0 - font.size - 4)
    tb = draw.textbbox((x, y), text, font=font)
    draw.rectangle([tb[0] - 1, tb[1] - 1, tb[2] + 1, tb[3] + 1], fill=(0, 0, 0))
    draw.text((x, y), text, fill=MARK, font=font)


def unfolded_picture(unfolded: UnfoldedRibs, marks: dict, title: str = "",
                     window: tuple[float, float] = defaults.UNFOLD_WINDOW_HU) -> Image.Image:
    """The unfolded ribs as an RGB picture: a header line, rib names at the spine, fracture boxes."""
    rgb = _grey(unfolded.image, window)
    rgb[np.isnan(unfolded.image)] = EMPTY
    for slot in unfolded.slots:
        if slot.status == "missing":
            top = slot.slot * unfolded.pitch_px
            head = unfolded.head_col(slot.side)
            cols = slice(0, head + 1) if slot.side == "R" else slice(head, rgb.shape[1])
            rgb[top:top + unfolded.strip_px, cols] = MISSING
    body = Image.fromarray(rgb)
    picture = Image.new("RGB", (body.width, body.height + HEADER_PX), (0, 0, 0))
    picture.paste(body, (0, HEADER_PX))
    draw = ImageDraw.Draw(picture)
    font, small = _font(16), _font(13)
    draw.text((4, 2), "patient's RIGHT  (head at the spine)", fill=(220, 220, 220), font=small)
    right_text = "(head at the spine)  patient's LEFT"
    draw.text((picture.width - 4 - draw.textlength(right_text, font=small), 2), right_text, fill=(220, 220, 220),
              font=small)
    if title:
        draw.text(((picture.width - draw.textlength(title, font=small)) / 2, 2), title, fill=MARK, font=small)
    mid = unfolded.half_width_px + unfolded.gutter_px / 2
    for slot in unfolded.slots:
        y = HEADER_PX + unfolded.centre_row(slot.slot) - font.size / 2
        colour = (255, 120, 120) if slot.status == "missing" else (230, 230, 230)
        name = slot.name
        if slot.side == "R":
            draw.text((mid - 4 - draw.textlength(name, font=font), y), name, fill=colour, font=font)
        else:
            draw.text((mid + 4, y), name, fill=colour, font=font)
        if slot.status == "missing":
            note = f"{slot.name} not found"
            x = 10 if slot.side == "R" else picture.width - 10 - draw.textlength(note, font=small)
            draw.text((x, y), note, fill=(255, 160, 160), font=small)
    for det_id, mark in sorted(marks.items()):
        if mark is not None:
            r0, c0, r1, c1 = mark.box
            _box(draw, (r0 + HEADER_PX, c0, r1 + HEADER_PX, c1), det_id, small)
    return picture


def frontal_picture(ct: sitk.Image, rib_labels: RibLabels, detections: Sequence[Detection],
                    marks: Optional[dict] = None, window: tuple[float, float] = defaults.FRONTAL_WINDOW_HU,
                    height: Optional[int] = None) -> Image.Image:
    """Frontal view (patient's right on the left): bone MIP, each rib's front-most voxels coloured by
    number and its name at its lateral end, and a numbered box at every detection that lies on a rib (all detections if no marks).
    Square pixels; `height` scales the picture before the boxes are drawn (sharp boxes and text)."""
    ct_c, lab_c = sitk.DICOMOrient(ct, "LPS"), sitk.DICOMOrient(rib_labels.labels, "LPS")
    hu = sitk.GetArrayViewFromImage(ct_c)  # [k, j, i]: superior, posterior, left
    labels = sitk.GetArrayViewFromImage(lab_c)
    rgb = _grey(hu.max(axis=1).astype(np.float32), window).astype(np.float32) * 0.8
    has = labels > 0
    first = np.argmax(has, axis=1)  # front-most (smallest j, most anterior) rib voxel per (k, i)
    front = np.take_along_axis(labels, first[:, None, :], axis=1)[:, 0, :]
    seen = has.any(axis=1)
    if seen.any():
        depth = first[seen].astype(np.float32)
        shade = 1.0 - 0.55 * (depth - depth.min()) / max(float(np.ptp(depth)), 1.0)
        shade[np.isin(front[seen], (defaults.RIB_UNNUMBERED_LEFT, defaults.RIB_UNNUMBERED_RIGHT))] = 1.0  # white, not grey
        lut = np.array([rib_colour(v) if 1 <= v <= 26 else (0, 0, 0) for v in range(256)], np.float32)
        rgb[seen] = 0.25 * rgb[seen] + 0.75 * lut[front[seen]] * shade[:, None]
    rgb = rgb[::-1].clip(0, 255).astype(np.uint8)  # superior up
    sk, si = ct_c.GetSpacing()[2], ct_c.GetSpacing()[0]
    px = min(sk, si)
    if height is not None:
        px = rgb.shape[0] * sk / height
    size = (int(round(rgb.shape[1] * si / px)), int(round(rgb.shape[0] * sk / px)))
    picture = Image.fromarray(rgb).resize(size, Image.BILINEAR)
    draw = ImageDraw.Draw(picture)
    nk = hu.shape[0]

    def to_xy(lps) -> tuple[float, float]:
        i, _, k = ct_c.TransformPhysicalPointToContinuousIndex([float(v) for v in lps])
        return (i + 0.5) * si / px - 0.5, (nk - 1 - k + 0.5) * sk / px - 0.5

    small = _font(13)
    for rib in rib_labels.ribs:  # each rib's name at its most lateral point, outside the cage
        if len(rib.centreline_lps) == 0:
            continue
        lateral = rib.centreline_lps[:, 0] * (1 if rib.side == "L" else -1)  # LPS x: + towards the left
        x, y = to_xy(rib.centreline_lps[int(np.argmax(lateral))])
        text = rib.name if rib.number else f"{rib.side}?"
        x = x + 4 if rib.side == "L" else x - 4 - draw.textlength(text, font=small)
        draw.text((x, y - small.size / 2), text, fill=rib_colour(rib.label), font=small, stroke_width=2,
                  stroke_fill=(0, 0, 0))
    direction = np.array(ct.GetDirection(), float).reshape(3, 3)
    for det in detections:
        if marks is not None and marks.get(det.id) is None:
            continue
        (i0, j0, k0), (i1, j1, k1) = det.bbox_ijk
        corners = [np.array(ct.GetOrigin()) + direction @ (np.array(c, float) * ct.GetSpacing())
                   for c in product((i0, i1), (j0, j1), (k0, k1))]
        xy = np.array([to_xy(c) for c in corners])
        cx, cy = to_xy(det.center_lps)
        h = 0.5 * defaults.UNFOLD_MIN_BOX_MM / px
        c0, r0 = min(xy[:, 0].min(), cx - h), min(xy[:, 1].min(), cy - h)
        c1, r1 = max(xy[:, 0].max(), cx + h), max(xy[:, 1].max(), cy + h)
        _box(draw, (r0, c0, r1, c1), det.id, small)
    return picture


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 8) -> Image.Image:
    """`right` scaled to `left`'s height, placed beside it."""
    scale = left.height / right.height
    right = right.resize((max(1, int(round(right.width * scale))), left.height), Image.BILINEAR)
    out = Image.new("RGB", (left.width + gap + right.width, left.height), (0, 0, 0))
    out.paste(left, (0, 0))
    out.paste(right, (left.width + gap, 0))
    return out


def save_png(picture: Image.Image, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG", optimize=True)
    return Path(path)


def write_unfolded_qc(ct: sitk.Image, rib_labels: RibLabels, detections: Sequence[Detection],
                      out_dir: str | Path, name: str, unfolded: Optional[UnfoldedRibs] = None) -> QcFiles:
    """Write `<name>-unfolded.png` and `<name>-qc.png` into `out_dir`; return them with the marks
    (for the JSON summary: `unfold_marks.add_unfolded_to_summary`)."""
    unfolded = unfolded if unfolded is not None else unfold_ribs(ct, rib_labels)
    marks = map_detections(unfolded, detections, ct)
    flat = unfolded_picture(unfolded, marks, title=name)
    frontal = frontal_picture(ct, rib_labels, detections, marks, height=flat.height)
    out_dir = Path(out_dir)
    unfolded_png = save_png(flat, out_dir / f"{name}-unfolded.png")
    qc_png = save_png(side_by_side(flat, frontal), out_dir / f"{name}-qc.png")
    return QcFiles(unfolded_png, qc_png, marks)


__all__ = ["QcFiles", "UnfoldedMark", "frontal_picture", "rib_colour", "save_png", "side_by_side",
           "unfolded_picture", "write_unfolded_qc"]

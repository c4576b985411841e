"""QC pictures of the rib step: `<name>-unfolded.png` and `<name>-qc.png` (unfolded + rib-cage views).

The unfolded picture shows every rib straightened (bone window), rib names at the spine, missing
ribs as labelled empty rows, and each fracture as a numbered box (with its type's letter, D/N/B/S,
and a key below, when a classifier typed it). The QC picture puts it beside the
rib step's own frontal and posterior views of the cage (`picture.rib_cage_views`: each rib coloured
and numbered) carrying the same numbered boxes, so a reader checks at one glance that the ribs were
found and numbered right and where each fracture sits. Written atomically (Pillow).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont

from .. import defaults
from ..detections import Detection, type_legend, type_letter
from ..io import atomic_path
from ..orientation import CanonicalVolume, canonical_volume
from .labels import RibLabels
from .picture import PIXEL_MM, rib_cage_views
from .unfold import UnfoldedRibs, unfold_ribs
from .unfold_marks import UnfoldedMark, box_corners_lps, map_detections, mark_text

EMPTY = (18, 18, 26)  # no rib sampled here
MISSING = (70, 28, 28)  # the row of a rib that was not found
MARK = (255, 220, 0)  # fracture boxes and their numbers
HEADER_PX = 22
LEGEND_PX = 20  # a line under the unfolded picture with the type letters' key, when any mark has a type
LEGEND_TEXT = (200, 200, 200)


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


def _box(draw: ImageDraw.ImageDraw, box: Sequence[float], text: str, font, width: int = 2) -> None:
    """A box with its label ('3', or '3 D' with the type's letter) above its top-left corner."""
    r0, c0, r1, c1 = box
    draw.rectangle([c0, r0, c1, r1], outline=MARK, width=width)
    x, y = c0, max(0, r0 - font.size - 4)
    tb = draw.textbbox((x, y), text, font=font)
    draw.rectangle([tb[0] - 1, tb[1] - 1, tb[2] + 1, tb[3] + 1], fill=(0, 0, 0))
    draw.text((x, y), text, fill=MARK, font=font)


def unfolded_picture(unfolded: UnfoldedRibs, marks: dict, title: str = "",
                     window: tuple[float, float] = defaults.UNFOLD_WINDOW_HU) -> Image.Image:
    """The unfolded ribs as an RGB picture: a header line, rib names at the spine, fracture boxes
    (number and type letter), and the letters' key in a line below when any fracture has a type."""
    rgb = _grey(unfolded.image, window)
    rgb[np.isnan(unfolded.image)] = EMPTY
    for slot in unfolded.slots:
        if slot.status == "missing":
            top = slot.slot * unfolded.pitch_px
            head = unfolded.head_col(slot.side)
            cols = slice(0, head + 1) if slot.side == "R" else slice(head, rgb.shape[1])
            rgb[top:top + unfolded.strip_px, cols] = MISSING
    body = Image.fromarray(rgb)
    typed = any(m is not None and type_letter(m.label_code) for m in marks.values())
    picture = Image.new("RGB", (body.width, body.height + HEADER_PX + (LEGEND_PX if typed else 0)), (0, 0, 0))
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
            _box(draw, (r0 + HEADER_PX, c0, r1 + HEADER_PX, c1), mark.text, small)
    if typed:
        draw.text((4, HEADER_PX + body.height + 3), f"fracture type: {type_legend()}", fill=LEGEND_TEXT, font=small)
    return picture


def _canonical_zyx(volume: CanonicalVolume, ct: sitk.Image, lps) -> np.ndarray:
    """LPS mm -> continuous index in the canonical view's numpy order (inverse of index_to_input)."""
    kji = np.array(ct.TransformPhysicalPointToContinuousIndex([float(v) for v in lps]))[::-1]
    zyx = kji[list(volume.axes)]
    return np.where(volume.flips, np.array(volume.array.shape) - 1 - zyx, zyx)


def cage_picture(ct: sitk.Image, rib_labels: RibLabels, detections: Sequence[Detection],
                 marks: Optional[dict] = None, height: Optional[int] = None) -> Image.Image:
    """The rib step's frontal and posterior views (`picture.rib_cage_views`), scaled to `height`, with
    a numbered box on both views at every detection on a rib (every detection if no marks)."""
    views = rib_cage_views(ct, rib_labels)
    volume = canonical_volume(ct)
    nz, _, nx = volume.array.shape
    sz, _, sx = volume.spacing_zyx
    panel_w, panel_h = int(round(nx * sx / PIXEL_MM)), int(round(nz * sz / PIXEL_MM))
    header, gap = views.height - panel_h, views.width - 2 * panel_w  # the views' own layout
    f = 1.0 if height is None else height / views.height
    views = views.resize((max(1, int(round(views.width * f))), int(round(views.height * f))), Image.BILINEAR)
    draw = ImageDraw.Draw(views)
    small = _font(13)

    def panels_xy(lps) -> list[tuple[float, float]]:
        z, _, x = _canonical_zyx(volume, ct, lps)
        y = header + (nz - 0.5 - z) * sz / PIXEL_MM
        front, back = (x + 0.5) * sx / PIXEL_MM, panel_w + gap + (nx - 0.5 - x) * sx / PIXEL_MM
        return [(front * f, y * f), (back * f, y * f)]

    half = 0.5 * defaults.UNFOLD_MIN_BOX_MM / PIXEL_MM * f
    for det in detections:
        if marks is not None and marks.get(det.id) is None:
            continue
        corners = box_corners_lps(det, ct)
        for panel, (cx, cy) in enumerate(panels_xy(det.center_lps)):
            xy = np.array([panels_xy(c)[panel] for c in corners])
            _box(draw, (min(xy[:, 1].min(), cy - half), min(xy[:, 0].min(), cx - half),
                        max(xy[:, 1].max(), cy + half), max(xy[:, 0].max(), cx + half)),
                 mark_text(det.id, det.label_code), small)
    return views


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
    cage = cage_picture(ct, rib_labels, detections, marks, height=flat.height)
    out_dir = Path(out_dir)
    unfolded_png = save_png(flat, out_dir / f"{name}-unfolded.png")
    qc_png = save_png(side_by_side(flat, cage), out_dir / f"{name}-qc.png")
    return QcFiles(unfolded_png, qc_png, marks)


__all__ = ["QcFiles", "UnfoldedMark", "cage_picture", "save_png", "side_by_side", "unfolded_picture",
           "write_unfolded_qc"]

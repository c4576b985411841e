"""Rib unfolding (curved planar reformation): every rib straightened, all 24 in one picture.

Each rib is resampled along its centreline at a fixed `pixel_mm`: arc length from the head runs
along the strip, the position across the rib (binormal, superior up) down it, and a thin slab
through the rib's thickness (outward normal) is summarised per pixel by its maximum or mean. The
strips are laid out as a chest is read: the patient's right on the picture's left, so right ribs
fill the left half and left ribs the right half, rib heads meet at the spine in the middle, rib 1
on top; unnumbered ribs get rows below rib 12 and a missing rib's row stays empty (NaN). Every
unfolded pixel keeps its place in the CT (`pixel_to_lps`), and any CT point finds its place on the
unfolded picture (`lps_to_pixel`), so a click can jump either way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from .. import defaults
from ..geometry import lps_to_indices, lps_to_ras, ras_to_lps
from .labels import Rib, RibLabels

EZ = np.array([0.0, 0.0, 1.0])  # LPS superior
PROJECT_WINDOW_MM = 2.0  # a point's arc length stays this close to its nearest centreline sample's


@dataclass
class RibStrip:
    """One rib resampled: sample m lies at arc m * pixel_mm from the head, with its frame."""

    name: str  # "L5", or "unnumbered L"
    side: str
    number: Optional[int]
    slot: int  # layout row: 0..11 = ribs 1-12, 12.. = unnumbered ribs of this side
    pixel_mm: float
    points_lps: np.ndarray  # (m, 3)
    tangent: np.ndarray  # (m, 3) unit, towards the anterior end
    normal: np.ndarray  # (m, 3) unit, through the rib's thickness, outward (the slab axis)
    binormal: np.ndarray  # (m, 3) unit, across the rib, pointing superior (up in the picture)

    @property
    def length_mm(self) -> float:
        return (len(self.points_lps) - 1) * self.pixel_mm

    def frame_at(self, arc_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Point, tangent, normal and binormal at an arc length, interpolated between samples."""
        x = float(np.clip(arc_mm / self.pixel_mm, 0, len(self.points_lps) - 1))
        m = min(int(x), len(self.points_lps) - 2)
        f = x - m
        mix = lambda a: (1 - f) * a[m] + f * a[m + 1]  # noqa: E731
        return mix(self.points_lps), mix(self.tangent), mix(self.normal), mix(self.binormal)


@dataclass(frozen=True)
class RowSlot:
    side: str
    slot: int
    name: str  # "R5", or "R?" for an unnumbered rib's row
    status: str  # "found", "missing" or "unnumbered"


@dataclass(frozen=True)
class RibPosition:
    """Where a CT point lies relative to one rib, and on the unfolded picture."""

    rib: str
    strip_index: int  # into UnfoldedRibs.strips (names repeat: several ribs may be "unnumbered L")
    arc_mm: float  # along the centreline from the head
    across_mm: float  # along the binormal (superior +)
    depth_mm: float  # along the outward normal (out of the picture's plane)
    row: float  # continuous pixel position on the unfolded picture
    col: float
    distance_mm: float  # to the nearest centreline point (as the rib step's `locate_on_rib` measures it)


@dataclass
class UnfoldedRibs:
    image: np.ndarray  # (rows, cols) float32 HU; NaN where no rib was sampled
    pixel_mm: float
    half_across_px: int
    row_gap_px: int
    half_width_px: int  # columns of one half (the longest rib), without the gutter
    gutter_px: int
    strips: list[RibStrip]
    slots: list[RowSlot]
    notes: list[str] = field(default_factory=list)
    _tree: Optional[tuple] = field(default=None, repr=False)

    # --- layout ------------------------------------------------------------------------------------
    @property
    def strip_px(self) -> int:
        return 2 * self.half_across_px + 1

    @property
    def pitch_px(self) -> int:
        return self.strip_px + self.row_gap_px

    def head_col(self, side: str) -> int:
        """Column of the rib heads: right ribs run leftwards from it, left ribs rightwards."""
        return self.half_width_px - 1 if side == "R" else self.half_width_px + self.gutter_px

    def centre_row(self, slot: int) -> int:
        return slot * self.pitch_px + self.half_across_px

    def strip(self, name: str) -> Optional[RibStrip]:
        return next((s for s in self.strips if s.name == name), None)

    def arc_to_col(self, side: str, arc_mm: float) -> float:
        step = arc_mm / self.pixel_mm
        return self.head_col(side) - step if side == "R" else self.head_col(side) + step

    # --- mapping -----------------------------------------------------------------------------------
    def pixel_to_lps(self, row: float, col: float) -> Optional[tuple[float, float, float]]:
        """LPS mm of an unfolded pixel (continuous row, col) on the rib's mid-surface; None off ribs."""
        side = "R" if col < self.half_width_px - 0.5 + self.gutter_px / 2 else "L"
        slot, r = divmod(float(row) + 0.5, self.pitch_px)
        if r > self.strip_px:
            return None
        strip = next((s for s in self.strips if s.side == side and s.slot == int(slot)), None)
        if strip is None:
            return None
        arc = (self.head_col(side) - col if side == "R" else col - self.head_col(side)) * self.pixel_mm
        if not -0.5 * self.pixel_mm <= arc <= strip.length_mm + 0.5 * self.pixel_mm:
            return None
        across = (self.half_across_px - (r - 0.5)) * self.pixel_mm
        p, _, _, b = strip.frame_at(arc)
        return tuple(float(v) for v in p + across * b)

    def pixel_to_ras(self, row: float, col: float) -> Optional[tuple[float, float, float]]:
        lps = self.pixel_to_lps(row, col)
        return None if lps is None else lps_to_ras(lps)

    def lps_to_pixel(self, point_lps, rib: Optional[str] = None) -> Optional[RibPosition]:
        """Place a CT point on the nearest rib (or the nearest rib named `rib`): arc, across, depth, pixel."""
        x = np.asarray(point_lps, float)
        named = [i for i, s in enumerate(self.strips) if s.name == rib] if rib else []
        if not self.strips or (rib and not named):
            return None
        if named:
            dist = [np.linalg.norm(self.strips[i].points_lps - x, axis=1) for i in named]
            best = int(np.argmin([d.min() for d in dist]))
            si, m = named[best], int(np.argmin(dist[best]))
            nearest = float(dist[best][m])
        else:
            tree, owner, index = self._index()
            nearest, k = tree.query(x)
            si, m = int(owner[k]), int(index[k])
        strip = self.strips[si]
        arc = m * strip.pixel_mm
        lo, hi = max(0.0, arc - PROJECT_WINDOW_MM), min(strip.length_mm, arc + PROJECT_WINDOW_MM)
        for _ in range(3):  # onto the normal plane, near the nearest sample: never walks round a bend
            p, t, _, _ = strip.frame_at(arc)
            arc = float(np.clip(arc + np.dot(x - p, t), lo, hi))
        p, t, n, b = strip.frame_at(arc)
        d = x - p
        across, depth = float(np.dot(d, b)), float(np.dot(d, n))
        col = self.arc_to_col(strip.side, arc)
        row = self.centre_row(strip.slot) - across / self.pixel_mm
        return RibPosition(strip.name, si, arc, across, depth, float(row), float(col), float(nearest))

    def ras_to_pixel(self, point_ras, rib: Optional[str] = None) -> Optional[RibPosition]:
        return self.lps_to_pixel(ras_to_lps(point_ras), rib)

    def _index(self):
        if self._tree is None:
            pts = np.concatenate([s.points_lps for s in self.strips])
            owner = np.concatenate([np.full(len(s.points_lps), i) for i, s in enumerate(self.strips)])
            index = np.concatenate([np.arange(len(s.points_lps)) for s in self.strips])
            self._tree = (cKDTree(pts), owner, index)
        return self._tree


def rib_strip(rib: Rib, slot: int, pixel_mm: float, smooth_mm: float = defaults.UNFOLD_FRAME_SMOOTH_MM,
              max_mm: float = defaults.UNFOLD_MAX_RIB_MM) -> Optional[RibStrip]:
    """Resample a rib's centreline at `pixel_mm` and give it a smooth, consistently oriented frame."""
    line = np.asarray(rib.centreline_lps, float)
    arc = rib.arc_mm
    if len(line) < 2 or arc[-1] < 2 * pixel_mm:
        return None
    n = int(np.ceil(min(arc[-1], max_mm) / pixel_mm - 1e-6))  # the last sample is the rib's end itself
    s = np.arange(n + 1) * pixel_mm
    pts = np.column_stack([np.interp(s, arc, line[:, a]) for a in range(3)])
    t = ndimage.gaussian_filter1d(np.gradient(pts, axis=0), smooth_mm / pixel_mm, axis=0, mode="nearest")
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
    n = np.cross(t, EZ)
    steep = np.linalg.norm(n, axis=1) < 0.2  # tangent nearly vertical: borrow a neighbour's normal
    if steep.all():
        n = np.tile(np.cross(t[0], [1.0, 0.0, 0.0]), (len(t), 1))
    elif steep.any():
        good = np.flatnonzero(~steep)
        n[steep] = n[good[np.abs(good[None, :] - np.flatnonzero(steep)[:, None]).argmin(axis=1)]]
    n -= np.sum(n * t, axis=1, keepdims=True) * t
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    centre = pts.mean(axis=0)  # the rib curves round the chest: outward = away from its own middle
    if np.sum(np.sum((n * (pts - centre))[:, :2], axis=1)) < 0:
        n = -n
    b = np.cross(n, t)
    if b[:, 2].sum() < 0:
        b = -b
    return RibStrip(rib.name, rib.side, rib.number, slot, pixel_mm, pts, t, n, b)


def layout_slots(ribs: list[Rib]) -> tuple[dict[int, int], list[RowSlot], list[str]]:
    """Row of each rib (by list index) and the rows' labels: numbered ribs in rows 0-11, unnumbered
    (and a second rib claiming a number already taken) in rows 12.. of their side."""
    slot_of, notes = {}, []
    taken = {"L": set(), "R": set()}
    extra = {"L": 12, "R": 12}
    slots = []
    for i, rib in enumerate(ribs):
        if rib.number is not None and rib.number not in taken[rib.side]:
            taken[rib.side].add(rib.number)
            slot_of[i] = rib.number - 1
            continue
        if rib.number is not None:
            notes.append(f"two ribs numbered {rib.name}: the second is shown among the unnumbered")
        slot_of[i] = extra[rib.side]
        slots.append(RowSlot(rib.side, extra[rib.side], f"{rib.side}?", "unnumbered"))
        extra[rib.side] += 1
    for side in ("R", "L"):
        for n in range(1, 13):
            slots.append(RowSlot(side, n - 1, f"{side}{n}", "found" if n in taken[side] else "missing"))
    return slot_of, sorted(slots, key=lambda s: (s.side, s.slot)), notes


def sample_strip(volume: np.ndarray, ct: sitk.Image, strip: RibStrip, half_across_px: int,
                 slab_half_mm: float, slab_step_mm: float, summary: str) -> np.ndarray:
    """(2 * half_across_px + 1, m) HU: rows top (superior) to bottom, columns head to anterior end."""
    across = (half_across_px - np.arange(2 * half_across_px + 1)) * strip.pixel_mm
    n_depth = max(1, int(round(2 * slab_half_mm / slab_step_mm)) + 1)
    depth = np.linspace(-slab_half_mm, slab_half_mm, n_depth) if n_depth > 1 else np.zeros(1)
    pts = (strip.points_lps[None, :, None, :] + across[:, None, None, None] * strip.binormal[None, :, None, :]
           + depth[None, None, :, None] * strip.normal[None, :, None, :])
    kji = lps_to_indices(ct, pts)[..., ::-1]
    shape = np.array(volume.shape)
    lo = np.clip(np.floor(kji.reshape(-1, 3).min(axis=0)).astype(int), 0, shape - 1)
    hi = np.clip(np.ceil(kji.reshape(-1, 3).max(axis=0)).astype(int) + 1, lo + 1, shape)
    sub = volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    local = (kji - lo).reshape(-1, 3).T
    values = ndimage.map_coordinates(sub, local, order=1, mode="nearest", output=np.float32)
    values = values.reshape(pts.shape[:3])
    inside = np.all((kji >= -0.5) & (kji <= shape - 0.5), axis=-1)
    values[~inside] = np.nan
    with warnings.catch_warnings():  # all-NaN columns (outside the CT) stay NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.nanmax(values, axis=2) if summary == "max" else np.nanmean(values, axis=2)
    return out.astype(np.float32)


def unfold_ribs(ct: sitk.Image, rib_labels: RibLabels, pixel_mm: float = defaults.UNFOLD_PIXEL_MM,
                half_across_mm: float = defaults.UNFOLD_HALF_ACROSS_MM,
                slab_half_mm: float = defaults.UNFOLD_SLAB_HALF_MM,
                slab_step_mm: float = defaults.UNFOLD_SLAB_STEP_MM, summary: str = defaults.UNFOLD_SUMMARY,
                ) -> UnfoldedRibs:
    """Unfold every rib of `rib_labels` out of `ct` (any orientation) into one picture."""
    if summary not in ("max", "mean"):
        raise ValueError(f"summary must be 'max' or 'mean', got {summary!r}")
    if pixel_mm <= 0:
        raise ValueError(f"pixel_mm must be positive, got {pixel_mm}")
    if ct.GetDimension() != 3:
        raise ValueError("unfold_ribs needs a 3-D CT image")
    slot_of, slots, notes = layout_slots(rib_labels.ribs)
    strips = []
    for i, rib in enumerate(rib_labels.ribs):
        strip = rib_strip(rib, slot_of[i], pixel_mm)
        if strip is None:
            notes.append(f"{rib.name}: centreline too short to unfold")
            continue
        if rib.length_mm > defaults.UNFOLD_MAX_RIB_MM:
            notes.append(f"{rib.name}: centreline cut at {defaults.UNFOLD_MAX_RIB_MM:.0f} of {rib.length_mm:.0f} mm")
        strips.append(strip)
    half_across_px = int(round(half_across_mm / pixel_mm))
    gap, gutter = defaults.UNFOLD_ROW_GAP_PX, int(round(defaults.UNFOLD_GUTTER_MM / pixel_mm))
    half_width = max([len(s.points_lps) for s in strips] + [int(100 / pixel_mm)])
    n_slots = max(s.slot for s in slots) + 1
    pitch = 2 * half_across_px + 1 + gap
    image = np.full((n_slots * pitch - gap, 2 * half_width + gutter), np.nan, np.float32)
    unfolded = UnfoldedRibs(image, pixel_mm, half_across_px, gap, half_width, gutter, strips, slots, notes)
    volume = sitk.GetArrayViewFromImage(ct)
    for strip in strips:
        values = sample_strip(volume, ct, strip, half_across_px, slab_half_mm, slab_step_mm, summary)
        top, head = strip.slot * pitch, unfolded.head_col(strip.side)
        m = values.shape[1]
        if strip.side == "R":
            image[top:top + values.shape[0], head - m + 1:head + 1] = values[:, ::-1]
        else:
            image[top:top + values.shape[0], head:head + m] = values
    return unfolded

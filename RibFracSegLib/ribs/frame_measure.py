"""A fracture measured in its rib's frame: gap, cortical step-off and angulation, and the type they give.

Only a stretch of the detection's rib is straightened (`RibFrame.crop`, +-`FRAME_MEASURE_HALF_MM` of
arc), so a detection costs about a tenth of a second. Per section of the stretch the rib's bone
is found (bone HU, the components reaching the centreline, holes filled so marrow counts) and two
sums are read: its mass (HU above the surrounding soft tissue, times area: linear in partial
volume, so blur and thick slices keep it) and its mass-weighted centroid on (u, v).

- Gap: a break removes a slab of bone. Dips of the mass below its running median along the arc are
  the candidate breaks; the deficit against the rib's level on the dip's own flanks, integrated over
  the dip, is the slab's length along the arc however oblique the cut and however blurred (the
  cortex is interrupted over gap / cos(tilt) on every line along the rib).
- Step-off: the centroid lines fitted on each side of the dip, beyond it, extrapolated to the break;
  their difference on u (outward) and v (head-wards).
- Angulation: the angle between those two lines (the frame follows the rib's own bend, so an intact
  rib reads about 0; a frame bent by the break itself bends both lines alike, which cancels).
  Noise floor on an intact phantom rib: step 0.2 mm, angle 2.5 degrees (mean).
- Two breaks on one rib within `FRAME_SEGMENTAL_MAX_MM` make it segmental, whether one stretch shows
  both or two detections each show one (`segmental_pairs`); a local excess of bone (`bulge`) is a
  buckle's fold.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import defaults
from .frame import RibFrame
from .frame_build import body_centre, rib_frame
from .labels import Rib

if TYPE_CHECKING:
    from ..detections import Detection

DISPLACED, NON_DISPLACED, BUCKLE, SEGMENTAL = 1, 2, 3, 4  # RibFrac codes


@dataclass(frozen=True)
class FrameMeasurement:
    """What the frame shows at one detection (mm and degrees; gap 0 and no step where no break)."""

    rib: str
    arc_mm: float  # arc position from the rib's head of the break measured (the detection's, without a break)
    gap_mm: float  # along the arc, where the cortex is interrupted
    step_u_mm: float  # shift of the far side across the break, outward (u)
    step_v_mm: float  # ... and head-wards (v)
    angulation_deg: float
    breaks: int  # breaks seen on the stretch: 0, 1, or 2 (two within FRAME_SEGMENTAL_MAX_MM)
    bulge: float  # the rib's largest local excess of bone near the detection (0.3: 30 % more mass): a buckle's fold
    code: int  # the RibFrac type these give (1..4)
    point_lps: tuple[float, float, float]  # the centreline point of the break (of the detection, without a break)

    @property
    def step_mm(self) -> float:
        return float(np.hypot(self.step_u_mm, self.step_v_mm))


@dataclass(frozen=True)
class _Profile:
    mass: np.ndarray  # (n,) per section, HU * mm^2
    centroid: np.ndarray  # (n, 2) mm from the centreline on (u, v); NaN where no bone
    level: np.ndarray  # (n,) the rib's own mass level (running median)


def _profile(volume: np.ndarray, voxel_mm: float) -> _Profile:
    """Per section of a sampled stretch: the rib's bone mass, its centroid and the running level."""
    n, side, _ = volume.shape
    half = side // 2
    across = (np.arange(side) - half) * voxel_mm
    radius = np.hypot(across[:, None], across[None, :])
    disc = radius <= defaults.FRAME_MEASURE_TUBE_MM
    smooth = ndimage.gaussian_filter(volume, defaults.FRAME_MEASURE_SMOOTH_MM / voxel_mm)
    bone = (smooth > defaults.FRAME_MEASURE_BONE_HU) & disc[None]
    labels, _ = ndimage.label(bone)
    core = radius <= defaults.FRAME_MEASURE_CORE_MM
    keep = np.unique(labels[:, core])
    rib = np.isin(labels, keep[keep > 0])
    rib = ndimage.binary_fill_holes(rib, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool))  # per section
    reach = max(1, int(round(defaults.FRAME_MEASURE_ARC_REACH_MM / voxel_mm)))  # the blurred faces of a gap
    rib = ndimage.binary_dilation(rib, np.ones((2 * reach + 1, 3, 3), bool)) & disc[None]
    around = (volume >= defaults.SOFT_TISSUE_HU[0]) & (volume <= defaults.SOFT_TISSUE_HU[1]) & disc[None] & ~rib
    soft = float(np.median(volume[around])) if around.sum() > 50 else float(np.mean(defaults.SOFT_TISSUE_HU))
    weight = np.clip(volume - soft, 0.0, None) * rib
    mass = weight.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = np.stack([(weight.sum(axis=2) @ across) / mass, (weight.sum(axis=1) @ across) / mass], axis=1)
    window = max(3, int(round(defaults.FRAME_MEASURE_LEVEL_MM / voxel_mm)) | 1)
    bony = mass > defaults.FRAME_MEASURE_MIN_BONE * np.median(mass[mass > 0]) if (mass > 0).any() else mass > 0
    # the level over sections holding bone only: past the rib's end (cartilage) it must not sag to 0
    with warnings.catch_warnings():  # windows past the rib's end hold no bone: level 0 there
        warnings.simplefilter("ignore", RuntimeWarning)
        level = np.nan_to_num(ndimage.generic_filter(np.where(bony, mass, np.nan), np.nanmedian, size=window,
                                                     mode="constant", cval=np.nan))
    return _Profile(mass * voxel_mm ** 2, centroid, level * voxel_mm ** 2)


def _dips(profile: _Profile, deficit: np.ndarray, voxel_mm: float) -> list[tuple[int, int, float]]:
    """(first, stop, gap mm) of every dip of the relative mass deficit deep and large enough to be a
    break: sections around a deficit peak down to where the deficit fades. The gap is measured
    against the rib's level on the dip's own flanks (median mass just beyond each side, linear
    between): the running median sags where a dip is wide or the rib thins."""
    runs, count = ndimage.label(deficit > defaults.FRAME_BREAK_EDGE_DEFICIT)
    n = len(deficit)
    flank = int(round(defaults.FRAME_FIT_MM / voxel_mm))
    guard = int(round(defaults.FRAME_FIT_GUARD_MM / voxel_mm))
    found = []
    for r in range(1, count + 1):
        idx = np.flatnonzero(runs == r)
        first, stop = int(idx[0]), int(idx[-1]) + 1
        if deficit[first:stop].max() < defaults.FRAME_BREAK_MIN_DEFICIT:
            continue
        sides = []
        for lo, hi in ((first - guard - flank, first - guard), (stop + guard, stop + guard + flank)):
            take = np.arange(max(0, lo), min(n, hi))
            take = take[(runs[take] == 0) & (deficit[take] > -defaults.FRAME_FLANK_MAX_EXCESS)]  # no other dip, no fold
            sides.append((float(take.mean()), float(np.median(profile.mass[take]))) if len(take) else None)
        if any(v is None or v[1] <= 0 for v in sides):
            continue  # bone on one side only: the rib's end (or the stretch's), not a break
        (a0, m0), (a1, m1) = sides
        level = np.interp(np.arange(first, stop), [a0, a1], [m0, m1])
        gap = float(max(0.0, np.sum(1.0 - profile.mass[first:stop] / level)) * voxel_mm)
        if defaults.FRAME_BREAK_MIN_GAP_MM <= gap <= defaults.FRAME_BREAK_MAX_GAP_MM:  # longer: bone missing, not a break
            found.append((first, stop, gap))
    return found


def _side_line(profile: _Profile, sections: np.ndarray, at: float,
               voxel_mm: float) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(centroid at the break, slope per mm) of a line fitted to the centroids of `sections`."""
    ok = sections[np.isfinite(profile.centroid[sections, 0]) & (profile.mass[sections] > 0.3 * profile.level[sections])]
    if len(ok) < defaults.FRAME_FIT_MIN_SECTIONS:
        return None
    x = (ok - at) * voxel_mm
    fit = np.polyfit(x, profile.centroid[ok], 1, w=np.sqrt(profile.mass[ok]))
    return fit[1], fit[0]


def _step_and_angle(profile: _Profile, first: int, stop: int, at: float, voxel_mm: float,
                    others: Sequence[tuple[int, int, float]]) -> tuple[float, float, float]:
    """(step u, step v, angulation degrees) across the dip [first, stop) centred at section `at`."""
    n = len(profile.mass)
    reach = int(round(defaults.FRAME_FIT_MM / voxel_mm))
    guard = int(round(defaults.FRAME_FIT_GUARD_MM / voxel_mm))  # the dip's edge sections hold both pieces
    first, stop = max(0, first - guard), min(n, stop + guard)
    lo, hi = max(0, first - reach), min(n, stop + reach)
    for o_first, o_stop, _ in others:  # never fit across another break
        if o_stop <= first:
            lo = max(lo, o_stop)
        elif o_first >= stop:
            hi = min(hi, o_first)
    before = _side_line(profile, np.arange(lo, first), at, voxel_mm)
    after = _side_line(profile, np.arange(stop, hi), at, voxel_mm)
    if before is None or after is None:
        return float("nan"), float("nan"), float("nan")
    step = after[0] - before[0]
    d0, d1 = np.r_[1.0, before[1]], np.r_[1.0, after[1]]
    cos = float(d0 @ d1 / (np.linalg.norm(d0) * np.linalg.norm(d1)))
    return float(step[0]), float(step[1]), float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def measure_settings() -> dict:
    """The constants measuring and typing read: a cached first stage (`first_stage.run_key`) holds the
    types they gave, so another setting must not reuse it."""
    prefixes = ("FRAME_MEASURE_", "FRAME_BREAK_", "FRAME_FIT_", "FRAME_FLANK_", "FRAME_SEGMENTAL_", "FRAME_DISPLACED_",
                "FRAME_BULGE_", "FRAME_BUCKLE_")
    return {k: v for k, v in sorted(vars(defaults).items()) if k.startswith(prefixes)}


def frame_type(breaks: int, gap_mm: float, step_mm: float, angulation_deg: float, bulge: float) -> int:
    """The RibFrac code the measurements give: two breaks segmental; a strong fold of extra bone a
    buckle (a fold's own flanks can look like a dip); one break displaced when its sides are shifted
    or angled or far apart, else non-displaced; no break a buckle when the bone bulges there, else
    non-displaced (a crack too fine for the frame)."""
    if breaks >= 2:
        return SEGMENTAL
    if bulge >= defaults.FRAME_BUCKLE_STRONG_BULGE:
        return BUCKLE
    if breaks == 1:
        shifted = np.nan_to_num(step_mm) >= defaults.FRAME_DISPLACED_STEP_MM
        angled = np.nan_to_num(angulation_deg) >= defaults.FRAME_DISPLACED_ANGLE_DEG
        return DISPLACED if (shifted or angled or gap_mm >= defaults.FRAME_DISPLACED_GAP_MM) else NON_DISPLACED
    return BUCKLE if bulge >= defaults.FRAME_BUCKLE_BULGE else NON_DISPLACED


def measure_stretch(stretch: RibFrame, centre_index: float) -> FrameMeasurement:
    """Measure a sampled stretch of a rib's frame around continuous section `centre_index` (the detection)."""
    if stretch.volume is None:
        raise ValueError(f"the stretch of {stretch.name}'s frame is not sampled; call sample(ct) first")
    vox = stretch.voxel_mm
    profile = _profile(stretch.volume, vox)
    with np.errstate(invalid="ignore", divide="ignore"):
        deficit = np.where(profile.level > 0, 1.0 - profile.mass / profile.level, 0.0)
    dips = _dips(profile, deficit, vox)
    near = int(round(defaults.FRAME_BREAK_NEAR_MM / vox))
    centre = float(centre_index)
    fold = int(round(defaults.FRAME_BULGE_NEAR_MM / vox))
    bulge_zone = slice(max(0, int(centre) - fold), int(centre) + fold + 1)
    bulge = float(max(0.0, -deficit[bulge_zone].min())) if deficit[bulge_zone].size else 0.0
    close = [d for d in dips if d[0] - near <= centre <= d[1] + near]
    if not close:  # between the two breaks of a segmental fracture (one annotation over both)
        span = near + int(round(0.5 * defaults.FRAME_SEGMENTAL_MAX_MM / vox))
        below = [d for d in dips if centre - span <= d[1] <= centre]
        above = [d for d in dips if centre <= d[0] <= centre + span]
        close = below + above if below and above else []
    if not close:
        return FrameMeasurement(stretch.name, round(float(stretch.arc_mm(centre)), 1), 0.0, 0.0, 0.0, 0.0, 0,
                                round(bulge, 3), frame_type(0, 0.0, 0.0, 0.0, bulge), _on_line(stretch, centre))
    main = max(close, key=lambda d: d[2])  # the clearest break near the detection
    first, stop, gap = main
    weights = deficit[first:stop]
    at = float(np.sum(np.arange(first, stop) * weights) / max(weights.sum(), 1e-9))
    others = [d for d in dips if d is not main]
    step_u, step_v, angle = _step_and_angle(profile, first, stop, at, vox, others)
    partner = [d for d in others if abs(0.5 * (d[0] + d[1]) - at) * vox <= defaults.FRAME_SEGMENTAL_MAX_MM
               and d[2] >= defaults.FRAME_SEGMENTAL_MIN_GAP_MM
               and deficit[d[0]:d[1]].max() >= defaults.FRAME_SEGMENTAL_MIN_DEFICIT]
    breaks = 2 if partner else 1
    step = float(np.hypot(step_u, step_v))
    return FrameMeasurement(stretch.name, round(float(stretch.arc_mm(at)), 1), round(gap, 2),
                            round(step_u, 2), round(step_v, 2), round(angle, 1), breaks, round(bulge, 3),
                            frame_type(breaks, gap, step, angle, bulge), _on_line(stretch, at))


def _on_line(frame: RibFrame, a: float) -> tuple[float, float, float]:
    return tuple(float(round(v, 2)) for v in frame.index_to_lps([a, frame.half, frame.half]))


def centre_section(frame: RibFrame, point_lps: Sequence[float]) -> float:
    """Continuous section index of a point: its frame coordinate, or its nearest section's when the
    point lies beyond the frame's cross-section."""
    a = float(frame.lps_to_index(np.asarray(point_lps, float))[0])
    return a if np.isfinite(a) else float(frame.tree().query(np.asarray(point_lps, float))[1])


def measure_at(frame: RibFrame, point_lps: Sequence[float], ct: sitk.Image,
               array: Optional[np.ndarray] = None) -> FrameMeasurement:
    """Measure the break at `point_lps` (a detection's centre) on `frame` (its rib's, not sampled):
    only +-FRAME_MEASURE_HALF_MM of arc around it is sampled from `ct` (`array`: its voxels, if at hand)."""
    a = centre_section(frame, point_lps)
    reach = int(round(defaults.FRAME_MEASURE_HALF_MM / frame.voxel_mm))
    first = max(0, int(np.floor(a)) - reach)
    stretch = frame.crop(first, int(np.ceil(a)) + reach + 1)
    stretch.sample(ct, array)
    return measure_stretch(stretch, a - first)


def combined_type(m: FrameMeasurement, label_code: int) -> int:
    """The type a detection reports: the frame's where it saw a break or a fold (two breaks,
    a step-off, a gap, a bulge are what the types are defined by), else the classifier's when it gave
    one (a crack too fine for the frame), else the frame's."""
    return reported_type(m.code, m.breaks > 0, label_code)


def reported_type(frame_code: int, saw_break: bool, label_code: int) -> int:
    """`combined_type` from what a `Detection` keeps (`frame_code`; a break seen: `gap_mm` > 0), so a
    detection measured before its classifier ran is typed as `segment_ct` types it."""
    if saw_break or frame_code == BUCKLE or int(label_code) not in (DISPLACED, NON_DISPLACED, BUCKLE, SEGMENTAL):
        return int(frame_code)
    return int(label_code)


def segmental_pairs(detections: Sequence["Detection"]) -> list["Detection"]:
    """Each detection over a break the frame saw (`gap_mm` > 0) typed segmental where another such lies
    on its named rib within `FRAME_SEGMENTAL_MAX_MM` of arc (the two breaks of one segmental fracture,
    each detected on its own while the stretch around either showed the other's dip too shallow to
    count), else as its frame measured it (`reported_type` of a break). A function of the set alone, so
    it is run again on any subset kept (a partner dropped by a floor or a classifier is no break)."""
    broken = [d for d in detections if d.gap_mm and d.frame_code in (DISPLACED, NON_DISPLACED, BUCKLE, SEGMENTAL)
              and d.rib_arc_mm is not None and d.rib != "none" and not d.rib.startswith("unnumbered")]
    paired = {d.id for d in broken for e in broken if e.id != d.id and e.rib == d.rib
              and abs(e.rib_arc_mm - d.rib_arc_mm) <= defaults.FRAME_SEGMENTAL_MAX_MM}
    codes = {d.id: SEGMENTAL if d.id in paired else d.frame_code for d in broken}
    return [replace(d, label_code=int(codes[d.id])) if d.id in codes else d for d in detections]


def _rib_of(d: "Detection", ribs: Sequence[Rib]) -> Optional[Rib]:
    """The rib named by the detection (of several unnumbered ribs sharing a name, the nearest)."""
    named = [r for r in ribs if r.name == d.rib and len(r.centreline_lps) >= 2]
    point = np.asarray(d.center_lps, float)
    return min(named, key=lambda r: float(np.min(np.linalg.norm(r.centreline_lps - point, axis=1))), default=None)


def measure_detections(image: sitk.Image, detections: Sequence["Detection"], ribs: Sequence[Rib]) -> list["Detection"]:
    """Each detection on a rib with its frame measurements and the type they give (`combined_type`
    with the classifier's); detections on no rib unchanged. One frame per rib, sampled near detections only."""
    array = sitk.GetArrayViewFromImage(image)
    centre = body_centre(ribs) if ribs else None
    frames: dict[int, Optional[RibFrame]] = {}
    out = []
    for d in detections:
        rib = _rib_of(d, ribs) if d.rib != "none" else None
        if rib is not None and id(rib) not in frames:
            frames[id(rib)] = rib_frame(rib, centre, smooth_mm=defaults.FRAME_MEASURE_LINE_SMOOTH_MM)
        frame = frames.get(id(rib)) if rib is not None else None
        if frame is None:
            out.append(d)
            continue
        m = measure_at(frame, d.center_lps, image, array)
        finite = lambda v: None if not np.isfinite(v) else float(v)  # noqa: E731
        out.append(replace(d, label_code=combined_type(m, d.label_code), frame_code=m.code, gap_mm=m.gap_mm,
                           step_mm=finite(round(m.step_mm, 2)),
                           step_uv_mm=() if not np.isfinite(m.step_mm) else (m.step_u_mm, m.step_v_mm),
                           angulation_deg=finite(m.angulation_deg)))
    return out

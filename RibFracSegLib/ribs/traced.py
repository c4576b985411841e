"""`trace_ribs(image, landmarks) -> RibLabels`: ribs followed as curves from their seeds.

Rib-cage bone -> one seed per rib in the paravertebral band -> each rib followed as a curve from its
seed out to its anterior end and in to its head, on the full-resolution CT (`ribs.trace`) -> traces
that reach far enough from the spine are ribs -> numbered by seed height -> labels: bone within a
tube around each centreline, nearest centreline wins, on the input grid at full resolution.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from .. import defaults
from .anatomy import ColumnLandmarks, Lungs
from .cage import CageStart, cage_start
from ..geometry import indices_to_lps
from .centrelines import resample_polyline
from .labels import RibLabels
from .numbering import RibRegion, number_ribs
from .regions import rib_labels
from .trace import Sampler, Trace, follow, seed_direction

def trace_ribs(image: sitk.Image, marks: ColumnLandmarks, lungs: Lungs, start: Optional[CageStart] = None,
               labelled: bool = True) -> RibLabels:
    """Segment and number the ribs of a CT (HU) by tracing them; unnumbered ribs keep their side.
    `start`: the CT's `cage_start`, when the grown ribs made it already. `labelled=False`: the label
    image deferred (`RibLabels.finish_labels`)."""
    t0, timings = time.perf_counter(), {}
    grid, body, bone, track = marks.grid, marks.body, marks.bone, marks.track
    canon, sp, extent = marks.canon, grid.spacing_zyx, lungs.extent
    nz = grid.hu.shape[0]
    start = start if start is not None else cage_start(marks, lungs)
    thick, markers, seeds = start.thick, start.markers, start.seeds
    timings["seeds"] = time.perf_counter() - t0 - sum(timings.values())
    frame = _Frame(grid, canon, track, body)
    boxes = ndimage.find_objects(markers)  # each seed's voxels from its box, not the whole grid 24 times
    traces = [t for t in (_trace(seed, markers, boxes[seed.label - 1] if seed.label <= len(boxes) else None, frame)
                                  for seed in seeds) if t is not None]
    traces = _drop_duplicates(traces, frame)
    traces = _rib_like(traces, extent, sp, frame)
    timings["trace"] = time.perf_counter() - t0 - sum(timings.values())
    regions = [RibRegion(label=t.seed_label, side=t.side, z_mean_mm=_height(t, frame),
                         z_top_mm=float(t.points_mm[:, 0].max()), z_bottom_mm=float(t.points_mm[:, 0].min()),
                         voxels=len(t.points_mm)) for t in traces]
    lung_top = None if extent.top is None else float(extent.top * sp[0])
    anchor, notes = number_ribs(regions, fov_top_mm=(nz - 1) * sp[0], fov_bottom_mm=0.0, lung_top_mm=lung_top,
                                apex_in_view=extent.apex_in_view, local_pitch=True)
    lines = {t.seed_label: frame.to_lps(resample_polyline(_smooth(t.points_mm), defaults.CENTRELINE_STEP_MM))
             for t in traces}
    timings["numbering"] = time.perf_counter() - t0 - sum(timings.values())
    regions_img = _tubes(traces, bone & body & ~thick, frame)
    result = rib_labels(image, regions_img, regions, lines, grid, canon, anchor, notes, labelled)
    result.timings_s = {**timings, "labels": time.perf_counter() - t0 - sum(timings.values())}
    return result


class _Frame:
    """Where things are, in the canonical full-resolution mm the tracer works in: the working grid's
    voxels, the spine per slice, the body, and the map to LPS."""

    def __init__(self, grid, canon, track, body) -> None:
        self.factors = np.array(grid.factors, float)
        self.full_mm = np.array(canon.spacing_zyx, float)
        self.work_mm = np.array(grid.spacing_zyx, float)
        self.track, self.body, self.canon = track, body, canon
        self.spine_x = self.to_mm_axis(track.x, 2)
        self.spine_y = self.to_mm_axis(track.y, 1)
        self.sampler = Sampler(canon.array, canon.spacing_zyx)

    def to_mm_axis(self, working_index: np.ndarray, axis: int) -> np.ndarray:
        f = self.factors[axis]
        return (np.asarray(working_index, float) * f + (f - 1) / 2.0) * self.full_mm[axis]

    def working_index(self, mm: np.ndarray) -> np.ndarray:
        """Canonical mm (..., 3) -> nearest working-grid index (clipped)."""
        w = (np.asarray(mm, float) / self.full_mm - (self.factors - 1) / 2.0) / self.factors
        return np.clip(np.rint(w).astype(int), 0, np.array(self.body.shape) - 1)

    def working_mm(self, index: np.ndarray) -> np.ndarray:
        """Working-grid indices (..., 3) -> canonical mm."""
        return (np.asarray(index, float) * self.factors + (self.factors - 1) / 2.0) * self.full_mm

    def from_spine(self, p: np.ndarray) -> tuple[float, float]:
        """(left-right, antero-posterior) offset of point `p` from the spine at its height, mm."""
        k = int(self.working_index(p)[0])
        return float(p[2] - self.spine_x[k]), float(p[1] - self.spine_y[k])

    def to_lps(self, mm: np.ndarray) -> np.ndarray:
        if len(mm) == 0:
            return np.empty((0, 3))
        return indices_to_lps(self.canon.source, self.canon.index_to_input(np.asarray(mm, float) / self.full_mm))


def _trace(seed, markers: np.ndarray, box: Optional[tuple], frame: _Frame) -> Optional[Trace]:
    """Follow one seed's rib out to its anterior end and in to its head; None if it is no rib.
    `box`: the seed's bounding box in `markers` (`ndimage.find_objects`)."""
    lateral = 1.0 if seed.side == "L" else -1.0
    if box is None:
        return None
    pts = frame.working_mm(np.argwhere(markers[box] == seed.label) + [b.start for b in box])
    if len(pts) < 3:
        return None
    start = pts.mean(axis=0)
    d = seed_direction(pts, lateral)

    def outward_stop(p, _d) -> str:
        dx, dy = frame.from_spine(p)
        if not frame.body[tuple(frame.working_index(p))]:
            return "left the body"
        if abs(dx) < defaults.RIB_STERNUM_HALF_WIDTH_MM and dy < -defaults.RIB_SPINE_FRONT_MM:
            return "sternum"
        return ""

    def inward_stop(p, _d) -> str:
        dx, _ = frame.from_spine(p)
        return "head" if dx * lateral < defaults.RIB_TRACE_HEAD_MM else ""

    out, out_hit, why = follow(frame.sampler, start, d, outward_stop, defaults.UNFOLD_MAX_RIB_MM, defaults.RIB_TRACE_GAP_MM)
    inward, in_hit, _ = follow(frame.sampler, start, -d, inward_stop, defaults.RIB_TRACE_MAX_INWARD_MM,
                       defaults.RIB_TRACE_HEAD_GAP_MM)
    points = np.concatenate([inward[::-1], start[None], out])
    dx = points[:, 2] - frame.spine_x[frame.working_index(points)[:, 0]]
    dy = points[:, 1] - frame.spine_y[frame.working_index(points)[:, 0]]
    # a rib reaches far out from the spine, or (rib 1, short and tight) round to the front;
    # lumbar transverse processes do neither
    reach = float(np.abs(dx).max())
    front = float(-dy.min())
    span = float(np.ptp(points[:, 0]))
    if (reach < defaults.RIB_MIN_REACH_MM and front < defaults.RIB_MIN_FRONT_MM) or span < defaults.RIB_MIN_HEIGHT_SPAN_MM:
        return None
    return Trace(seed.side, seed.label, points, len(inward), why, np.concatenate([in_hit[::-1], [True], out_hit]))


def _drop_duplicates(traces: list[Trace], frame: _Frame) -> list[Trace]:
    """Two seeds on one rib (a posterior arc split in the band) give two traces along the same bone:
    where a trace's posterior arc (RIB_TRACE_ARC_DX_MM from the spine) runs within RIB_TRACE_SAME_MM of
    a longer trace over most of it, it is that rib again (the two may part later, where one strays)."""
    keep: list[Trace] = []
    for t in sorted(traces, key=lambda t: -t.length_mm):
        dx = np.abs(np.array([frame.from_spine(p)[0] for p in t.points_mm]))
        lo, hi = defaults.RIB_TRACE_ARC_DX_MM
        posterior = np.arange(len(dx)) <= int(np.argmax(dx))  # front ends converge at the costal margin
        arc = t.points_mm[(dx >= lo) & (dx <= hi) & posterior]
        arc = arc if len(arc) else t.points_mm
        if any(max(np.mean(tree.query(arc)[0] <= defaults.RIB_TRACE_SAME_MM),
                   np.mean(tree.query(t.points_mm)[0] <= defaults.RIB_TRACE_SAME_MM)) > 0.5
               for tree in (cKDTree(k.points_mm) for k in keep if k.side == t.side)):
            continue
        keep.append(t)
    return sorted(keep, key=lambda t: t.seed_label)


def _height(trace: Trace, frame: _Frame) -> float:
    """The height that orders ribs: where the rib's path is RIB_TRACE_HEIGHT_DX_MM from the spine's
    centre (its posterior arc, where the ribs form a clean stack), whatever seed piece began the trace."""
    dx = np.abs(np.array([frame.from_spine(p)[0] for p in trace.points_mm]))
    past = np.flatnonzero(dx >= defaults.RIB_TRACE_HEIGHT_DX_MM)
    if past.size == 0:
        return float(trace.points_mm[trace.seed_at, 0])
    i = int(past[0])
    if i == 0:
        return float(trace.points_mm[0, 0])
    w = (defaults.RIB_TRACE_HEIGHT_DX_MM - dx[i - 1]) / max(dx[i] - dx[i - 1], 1e-6)
    return float(trace.points_mm[i - 1, 0] + w * (trace.points_mm[i, 0] - trace.points_mm[i - 1, 0]))


def _rib_like(traces: list[Trace], extent, sp, frame: _Frame) -> list[Trace]:
    """Keep traces shaped and placed like ribs. Beyond its posterior arc a rib runs sideways and down
    (ribs 1-12 alike), while the scapular spine rises to the acromion; and some part of every rib
    lies at the height of the lungs (ribs 11-12 at least beside the costophrenic recesses), while
    lumbar transverse processes and kidney rims lie wholly below them. Both tests are on the path
    alone: a lung mask broken by an effusion or a consolidation changes neither."""
    out = []
    (a0, a1), (b0, b1) = defaults.RIB_TRACE_ARC_DX_MM, defaults.RIB_TRACE_RISE_DX_MM
    for t in traces:
        dx = np.abs(np.array([frame.from_spine(p)[0] for p in t.points_mm]))
        # the way out to the rib's most lateral point (its front half rises to the sternum, rightly)
        out_way = np.arange(len(dx)) <= int(np.argmax(dx))
        arc, beyond = (dx >= a0) & (dx <= a1) & out_way, (dx >= b0) & (dx <= b1) & out_way
        if arc.any() and beyond.any() and \
                t.points_mm[beyond, 0].max() - np.median(t.points_mm[arc, 0]) > defaults.RIB_TRACE_MAX_RISE_MM:
            continue
        if extent.base is not None and t.points_mm[:, 0].max() < extent.base * sp[0]:
            continue
        out.append(t)
    return out


def _smooth(points: np.ndarray) -> np.ndarray:
    if len(points) < 5:
        return points
    return ndimage.gaussian_filter1d(points, 1.0, axis=0, mode="nearest")


def _tubes(traces: list[Trace], candidates: np.ndarray, frame: _Frame) -> np.ndarray:
    """Working-grid partition: candidate bone within RIB_TRACE_TUBE_MM of a rib's centreline, given to
    the nearest centreline (neighbouring ribs part half-way between their centres)."""
    out = np.zeros(candidates.shape, np.int32)
    if not traces:
        return out
    pts = [resample_polyline(t.points_mm, 1.0) for t in traces]
    owner = np.concatenate([np.full(len(p), t.seed_label) for p, t in zip(pts, traces)])
    tree = cKDTree(np.concatenate(pts))
    lo = np.floor(frame.working_index(np.concatenate(pts).min(axis=0) - defaults.RIB_TRACE_TUBE_MM)).astype(int)
    hi = frame.working_index(np.concatenate(pts).max(axis=0) + defaults.RIB_TRACE_TUBE_MM) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    idx = np.argwhere(candidates[box]) + lo
    dist, nearest = tree.query(frame.working_mm(idx), distance_upper_bound=defaults.RIB_TRACE_TUBE_MM)
    ok = np.isfinite(dist)
    out[tuple(idx[ok].T)] = owner[nearest[ok]]
    return out

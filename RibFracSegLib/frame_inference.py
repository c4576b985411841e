"""Fracture probability from a rib-frame checkpoint: a network slid along each straightened rib, its
probabilities written back onto the CT grid, and what the frames cannot examine sent through the
whole-volume sliding window with the shipped model (the fallback; its detections through that model's
second stage, `inference.segment_ct`).

Windows and their blending: `frame_windows` (the overlap along the arc `frame_overlap`: the checkpoint's,
else RIB_FRAME_OVERLAP; the sliding window's overlap is the fallback's), with windows added centred on
what the network saw near seams (`frame_relook_from`). The few section voxels outside the windows' width
take the nearest computed value, so a frame covers its whole section (what `RibFrame.lps_to_index` calls inside).

The write-back (`ribs/frame.frame_to_ct`, max over ribs) costs seconds per rib when every section
writes, so values below the post-processing threshold (at least FRAME_MIN_PROBABILITY) are written as 0
and only sections holding more are visited. Coverage is asked of the frames only where it decides something (`frame_coverage.frames_reach`): on bone,
to place the fallback's windows, and where the fallback's probability reaches the threshold and
exceeds the frames'.

Bone here is what today's sliding window would examine (HU > bone_hu in `inference.fracture_cells`'
blocks: near the ribs when the rib set is complete, else bone in the body). Of its part no frame
reaches, the fallback examines (`fallback_bone`) bone labelled rib when the rib set is complete (a
rib's ends beyond its frame), all of it in the rib step's cage when the set is incomplete (a rib not
found); the rest (spine, sternum, scapulae) goes unexamined, and the result says how
many mm^3 (`FrameProbability.summary`, `note`). The frames run on `frame_end_mm` past each traced end
(rib heads reach past the trace); bone labelled rib that lies beside its own rib's frame, not past an
end, is another structure grown into the label (`beside_own_frame`: reported, not examined); and the
fallback computes only a few windows holding every voxel it examines in their core
(`window_cover.cover_windows`), not every grid patch touching one. The network and the fallback come in as
callables (`inference.segment_ct` builds them), so this module needs nothing from inference.py.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from . import defaults
from .candidates.classifier import keep_detections
from .checkpoint import Checkpoint, cached_checkpoint
from .detections import Detection
from .frame_coverage import coverage, fallback_margin, frames_reach, input_box
from .errors import CheckpointError
from .orientation import CanonicalVolume
from .options import worker_threads
from .progress import Cancel, Progress
from .ribs.assign import at_rib_end
from .ribs.frame import RibFrame, frame_to_ct
from .ribs.frame_build import rib_frames
from .ribs.labels import RibLabels
from .frame_windows import Predict, frame_values, frame_windows
from .sliding_window import Box, PatchGrid, importance_map, keep_mask
from .window_cover import cover_windows

SPACES = ("ct", "rib_frame")  # preprocessing["space"]: where the network's input lives ("ct" when absent)
_CHUNK = 1 << 20  # CT voxels asked of the frames at a time (their LPS points: 24 MB)


def checkpoint_space(ckpt: Checkpoint) -> str:
    """"rib_frame" or "ct" (a checkpoint without "space" slides over the CT as always)."""
    space = ckpt.preprocessing.get("space", "ct")
    if space not in SPACES:
        raise CheckpointError(f"checkpoint preprocessing space {space!r} is unknown; expected one of {', '.join(SPACES)}")
    return space


def frame_geometry(ckpt: Checkpoint) -> tuple[float, float]:
    """(voxel_mm, half_mm) of the frames a checkpoint's windows slide along, checked: the trained
    frame_half_mm, cut to what a window's cross-section holds (a frame reaching further would count
    bone as covered that no window saw; the cut frame's windows hold the same voxels)."""
    pre = ckpt.preprocessing
    voxel = float(pre.get("frame_voxel_mm", defaults.RIB_FRAME_VOXEL_MM))
    half = float(pre.get("frame_half_mm", defaults.RIB_FRAME_HALF_MM))
    if voxel <= 0 or half < voxel:
        raise CheckpointError(f"rib-frame checkpoint needs frame_voxel_mm > 0 and frame_half_mm >= frame_voxel_mm, "
                              f"got {voxel} and {half}")
    across = min(int(p) for p in ckpt.patch_size[1:]) if len(ckpt.patch_size) == 3 else 0
    if across:
        half = min(half, (across // 2) * voxel)
    return voxel, half


def frame_overlap(ckpt: Checkpoint) -> float:
    """Windows' overlap along the arc: the checkpoint's inference["frame_overlap"], else RIB_FRAME_OVERLAP."""
    overlap = float(ckpt.inference.get("frame_overlap", defaults.RIB_FRAME_OVERLAP))
    if not 0.0 <= overlap < 1.0:
        raise CheckpointError(f"rib-frame checkpoint frame_overlap must be in [0, 1), got {overlap}")
    return overlap


def frame_relook_from(ckpt: Checkpoint) -> float:
    """The blended peak from which a window is added centred on it where no window holds it in its centre
    (`frame_windows.relook_windows`): the checkpoint's inference["frame_relook_from"], else FRAME_RELOOK_FROM (0: never)."""
    level = float(ckpt.inference.get("frame_relook_from", defaults.FRAME_RELOOK_FROM))
    if not 0.0 <= level <= 1.0:
        raise CheckpointError(f"rib-frame checkpoint frame_relook_from must be in [0, 1], got {level}")
    return level


def frame_confidence(ckpt: Checkpoint) -> str:
    """How a frame detection's first-stage confidence is read: inference["confidence"], "peak" (its
    highest probability) or "mean" (over its voxels; a checkpoint calibrated before this knob)."""
    rule = str(ckpt.inference.get("confidence", "mean"))
    if rule not in ("mean", "peak"):
        raise CheckpointError(f"rib-frame checkpoint inference['confidence'] must be 'mean' or 'peak', got {rule!r}")
    return rule


def frame_end_mm(ckpt: Checkpoint) -> float:
    """How far the frames run on past each rib's traced ends: the checkpoint's inference["frame_end_mm"],
    else RIB_FRAME_INFERENCE_END_MM (rib heads reach a few mm past the training frames' run-on)."""
    end = float(ckpt.inference.get("frame_end_mm", defaults.RIB_FRAME_INFERENCE_END_MM))
    if not 0.0 <= end <= 50.0:
        raise CheckpointError(f"rib-frame checkpoint frame_end_mm must be in [0, 50] mm, got {end}")
    return end


def fallback_checkpoint(ckpt: Checkpoint) -> Checkpoint:
    """The CT-space checkpoint for bone no frame covers: inference["fallback"], "shipped" (the shipped
    sliding-window model, ribfrac_ct.pt) or a checkpoint file."""
    name = ckpt.inference.get("fallback", "shipped")
    if name == "shipped":
        from .shipped import shipped_model

        path = shipped_model("fracture_ct")
    else:
        path = Path(str(name))
    fallback = cached_checkpoint(path)
    if checkpoint_space(fallback) != "ct" or len(fallback.patch_size) != 3:
        raise CheckpointError(f"the fallback {path.name} of a rib-frame checkpoint must be a CT-space 3-D fracture "
                              "checkpoint (e.g. the shipped ribfrac_ct.pt)")
    return fallback


def fallback_classifier(ckpt: Checkpoint, device: Any = "cpu"):
    """The loaded classifier (`ClassifierSpec`; None when the fallback has none) a rib-frame checkpoint's
    fallback detections go through: the fallback checkpoint's, at the frame checkpoint's
    inference["fallback_min_probability"] when calibrate-frame chose one (never below the classifier's own floor)."""
    from .candidates.classifier import load_classifier

    spec = load_classifier(fallback_checkpoint(ckpt).candidate_classifier, device)
    floor = ckpt.inference.get("fallback_min_probability")
    if spec is None or floor is None:
        return spec
    return replace(spec, min_probability=max(spec.min_probability, float(floor)))


@dataclass
class Fallback:
    """The sliding-window model for uncovered bone: its patch size, the grid's overlap (the patches
    it would compute, `FrameProbability.fallback_patches_total`), and `run(boxes, blocks, progress)`
    appending to `blocks` (canonical region, float32 values there) what patches at `boxes` (canonical,
    placed by `window_cover.cover_windows`) give; regions holding non-zero values at one voxel are
    one block; returns what ran (e.g. `inference.WindowStats`)."""

    patch_size: Sequence[int]
    overlap: float
    run: Callable[[np.ndarray, list, Optional[Progress]], Any]


@dataclass
class FrameProbability:
    """One CT's fracture probability from the rib frames and the fallback, on the input grid."""

    probability: np.ndarray  # [k, j, i] float32: the frames' where a frame reaches, the fallback's elsewhere
    #   (exactly so from the post-processing threshold up; below it, see `_merge_fallback`)
    covered_bone: Optional[np.ndarray]  # [k, j, i] bool: bone (as below) some frame reaches (other voxels are not
    #   asked); None unless `frame_probability(keep_coverage=True)`: a byte a voxel, at the run's peak
    bone_voxels: int  # bone where fractures are looked for (HU > bone_hu in the rule's blocks)
    uncovered_bone_voxels: int  # ... of which no frame reaches
    voxel_mm3: float
    rule: str  # which bone: `inference.fracture_cells`' rule ("ribs", "bone (why)") or "none" (HU alone)
    fallback_bone_voxels: int = 0  # ... of the uncovered bone, what the fallback examines (`fallback_bone`);
    #   the rest (spine, sternum, scapulae when the rib set is complete) is examined by nothing
    beside_rib_voxels: int = 0  # ... of that rest, bone labelled rib beside its own rib's frame (`beside_own_frame`)
    frames: int = 0
    windows: int = 0
    sections: int = 0
    sections_written: int = 0  # sections holding a value >= the write-back floor (the write-back visits these)
    fallback_boxes: Optional[list[Box]] = None  # canonical patch boxes the fallback ran (None: nothing to examine)
    fallback_patches_total: int = 0  # the fallback's whole grid
    fallback_patches: int = 0  # computed (len(fallback_boxes))
    fallback_stats: Any = None
    fallback_voxels: Optional[np.ndarray] = None  # (n, 3) rows k, j, i holding the fallback's value from the
    #   post-processing threshold up: a detection made mostly of these was found by the fallback
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def uncovered_bone_mm3(self) -> float:
        return self.uncovered_bone_voxels * self.voxel_mm3

    @property
    def uncovered_bone_percent(self) -> float:
        return 100.0 * self.uncovered_bone_voxels / max(1, self.bone_voxels)

    @property
    def unexamined_bone_voxels(self) -> int:
        """Bone in no frame that the fallback leaves alone (not rib, the rib set being complete)."""
        return self.uncovered_bone_voxels - self.fallback_bone_voxels

    def summary(self) -> dict:
        """Plain values for the case JSON."""
        mm3 = self.voxel_mm3
        return {"frames": self.frames, "windows": self.windows, "sections": self.sections,
                "sections_written": self.sections_written, "bone_mm3": round(self.bone_voxels * mm3, 1),
                "uncovered_bone_mm3": round(self.uncovered_bone_mm3, 1),
                "uncovered_bone_percent": round(self.uncovered_bone_percent, 2),
                "fallback_bone_mm3": round(self.fallback_bone_voxels * mm3, 1),
                "unexamined_bone_mm3": round(self.unexamined_bone_voxels * mm3, 1),
                "unexamined_bone_percent": round(100.0 * self.unexamined_bone_voxels / max(1, self.bone_voxels), 2),
                "beside_rib_mm3": round(self.beside_rib_voxels * mm3, 1),
                "bone_rule": self.rule,
                "fallback_patches": self.fallback_patches, "fallback_patches_total": self.fallback_patches_total}

    def note(self) -> str:
        mm3 = self.voxel_mm3
        text = (f"rib frames: {self.frames} ribs, {self.windows} windows; {self.uncovered_bone_mm3:.0f} mm^3 of bone "
                f"({self.uncovered_bone_percent:.1f}% of {self.bone_voxels * mm3:.0f} mm^3, bone rule: {self.rule}) "
                f"lies in no frame; {self.fallback_bone_voxels * mm3:.0f} mm^3 of it went through the sliding window "
                f"({self.fallback_patches} patches)")
        if self.unexamined_bone_voxels:
            text += (f"; {self.unexamined_bone_voxels * mm3:.0f} mm^3 of bone was not examined (not labelled rib "
                     "beside a complete rib set, or outside the rib cage beside an incomplete one: spine, sternum, "
                     "scapulae")
            if self.beside_rib_voxels:
                text += (f"; {self.beside_rib_voxels * mm3:.0f} mm^3 of it labelled rib but beside its rib's frame, "
                         "more than the frame's half width off the centreline: another structure in the label")
            text += ")"
        return text


def found_by_fallback(framed: FrameProbability, instances: np.ndarray, counts: dict[int, int]) -> set[int]:
    """Ids of the instances (input-grid labels, voxel count per id) most of whose voxels hold the
    fallback's value: they go through the fallback checkpoint's second stage."""
    if framed.fallback_voxels is None or not len(framed.fallback_voxels) or not counts:
        return set()
    hits = np.bincount(instances[tuple(framed.fallback_voxels.T)].ravel(), minlength=max(counts) + 1)
    return {i for i, n in counts.items() if 2 * hits[i] > n}


RIB_END = "rib end"  # a frame detection `at_rib_end`: the network never saw a break there
JUDGED_BY_FALLBACK = ("fallback", RIB_END)  # sources the fallback checkpoint's classifier scores


def by_source(detections: list[Detection], labels: np.ndarray, framed: FrameProbability, frame_floor: float,
              fallback_floor: float, peaks: Optional[dict[int, float]] = None,
              lengths: Optional[dict[str, tuple[float, Optional[float]]]] = None) -> list[Detection]:
    """Each detection marked "frame" or "fallback" (most of its voxels hold the fallback's value) and
    kept when it reaches its own detector's confidence floor: the frame checkpoint's floor is
    calibrated for the frame network alone and would silence the fallback, or the fallback's
    floor would flood the frames (`labels` erased and renumbered to match). With `peaks` (id -> highest
    probability: `frame_confidence` "peak") a frame detection's confidence is its peak. With `lengths`
    (`rib_lengths`) a frame detection `at_rib_end` is a RIB_END: kept at the frame floor, then scored
    by the fallback's classifier, because there (rib heads at their joints, costochondral junctions)
    the network learned only intact anatomy and fires on joints as breaks."""
    by_fallback = found_by_fallback(framed, labels, {d.id: d.voxel_count for d in detections})

    def frame_source(d: Detection) -> str:
        if not lengths or d.rib not in lengths or d.rib_arc_mm is None:
            return "frame"
        return RIB_END if at_rib_end(d.rib_arc_mm, *lengths[d.rib]) else "frame"

    tagged = [replace(d, source="fallback") if d.id in by_fallback else
              replace(d, source=frame_source(d), confidence=peaks[d.id] if peaks else d.confidence)
              for d in detections]
    kept = [d for d in tagged if d.confidence >= (fallback_floor if d.source == "fallback" else frame_floor)]
    return tagged if len(kept) == len(tagged) else keep_detections(kept, labels)


def floor_odds(detections: Sequence[Detection], floor: float) -> list[Detection]:
    """Frame detections (no classifier of their own) reported with their first-stage confidence's odds
    over the floor's odds, as a probability: 0.5 at the floor, sigmoid(logit(c) - logit(floor)); the
    first-stage confidence stays as `network_confidence`. Why: peaks above a calibrated floor crowd
    into 0.986-0.9999, where RibFrac's FROC thresholds (0.00 .. 0.99) cannot tell them apart; the map
    keeps their order, so the floor and every kept detection are unchanged, and spreads them."""
    def logit(p: float) -> float:
        p = min(max(float(p), defaults.FRAME_ODDS_CLIP), 1.0 - defaults.FRAME_ODDS_CLIP)
        return math.log(p / (1.0 - p))

    shift = logit(floor)
    return [replace(d, confidence=1.0 / (1.0 + math.exp(shift - logit(d.confidence))), network_confidence=d.confidence)
            if d.source in ("frame", RIB_END) else d for d in detections]


def frame_probability(image: sitk.Image, volume: CanonicalVolume, ribs: Optional[RibLabels], ckpt: Checkpoint,
                      predict: Predict, fallback: Fallback, *, cells: Optional[np.ndarray], rule: str,
                      bone_hu: float, overlap: Optional[float] = None, batch_size: int = defaults.CPU_BATCH_SIZE,
                      blend: str = "gaussian", progress: Optional[Progress] = None, cancel: Optional[Cancel] = None,
                      output: Optional[np.ndarray] = None,
                      decide_from: float = defaults.FRAME_MIN_PROBABILITY, keep_coverage: bool = False
                      ) -> FrameProbability:
    """Probability of a CT (input grid) from a rib-frame checkpoint: frames of `ribs` (never segmented
    here), windows through `predict` (`inference._Runner`), write-back, then `fallback` on windows
    covering the uncovered bone it examines (`fallback_bone`). `cells`/`rule`: `inference.fracture_cells`
    (None, "none": bone anywhere counts).
    progress(done, total) counts windows, then fallback patches (the total first counts every patch the
    fallback could need, then those it does); cancel() is polled before each batch of either.
    `overlap`: the windows' along the arc (None: `frame_overlap`). `output`: a zeroed input-grid float32 array to fill. `decide_from`: the post-processing threshold
    (the fallback's values below it are merged without asking the frames, `_merge_fallback`).
    `keep_coverage`: the result holds `covered_bone` (otherwise freed before the fallback runs)."""
    timings = dict.fromkeys(("frames", "frame_network", "write_back", "coverage", "fallback"), 0.0)
    voxel_mm, half_mm = frame_geometry(ckpt)
    patch = tuple(int(s) for s in ckpt.patch_size)
    hu_window = [float(v) for v in ckpt.preprocessing.get("hu_window", defaults.HU_WINDOW)]
    t = time.perf_counter()
    frames = (rib_frames(ribs.ribs, voxel_mm=voxel_mm, half_mm=half_mm, end_mm=frame_end_mm(ckpt))
              if ribs is not None else [])
    overlap = frame_overlap(ckpt) if overlap is None else overlap
    relook_from = frame_relook_from(ckpt)
    plans = [(frame, frame_windows(frame.shape, patch, overlap)) for frame in frames]
    timings["frames"] += time.perf_counter() - t
    n_windows = sum(len(boxes) for _, boxes in plans)
    grid = PatchGrid.build(volume.array.shape, fallback.patch_size, fallback.overlap)
    bound = int(sum(keep_mask(grid, cells)))
    done = [0, n_windows + bound]

    def step(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], done[1])

    def more(n: int) -> None:  # windows added centred on what a seam saw (`frame_windows.relook_windows`)
        nonlocal n_windows
        n_windows += n
        done[1] += n

    step(0)
    prob = output if output is not None else np.zeros(sitk.GetArrayViewFromImage(image).shape, np.float32)
    array = sitk.GetArrayViewFromImage(image)
    weights = importance_map(patch, blend)
    written = 0
    # a trained network leaves small values on much of every rib: below the post-processing threshold they
    # can make no detection, and writing them back cost 10-22 s per CT (issue 24)
    floor = max(defaults.FRAME_MIN_PROBABILITY, float(decide_from))
    t = time.perf_counter()

    with ThreadPoolExecutor(max(1, min(len(frames), worker_threads(1)))) as pool:
        list(pool.map(lambda f: f.sample(image, array), frames))  # interpolation frees the GIL: 1.85x on 2 cores
    timings["frames"] += time.perf_counter() - t
    for frame, boxes in plans:
        t = time.perf_counter()
        values = frame_values(frame.volume, boxes, predict, patch, hu_window, weights, max(1, int(batch_size)), step,
                              cancel, floor, relook_from, more)
        frame.volume = None  # freed once its windows ran (all ribs' volumes together: ~100 MB)
        written += int(np.count_nonzero(values.reshape(len(values), -1).max(axis=1)))
        timings["frame_network"] += time.perf_counter() - t
        t = time.perf_counter()
        frame_to_ct(frame, values, image, prob)
        timings["write_back"] += time.perf_counter() - t

    t = time.perf_counter()
    cover = coverage(volume, image, cells, bone_hu, ribs, frames, _CHUNK)
    n_examined = cover.examined_voxels
    fallback_boxes = None
    if n_examined:
        fallback_boxes = cover_windows(cover.examined_canonical(volume), volume.array.shape,
                                       fallback.patch_size, fallback_margin(fallback.patch_size))
    timings["coverage"] = time.perf_counter() - t
    result = FrameProbability(prob, cover.covered if keep_coverage else None, cover.bone_voxels, cover.uncovered_voxels,
                              float(np.prod(image.GetSpacing())), rule, fallback_bone_voxels=n_examined,
                              beside_rib_voxels=cover.beside_voxels, frames=len(frames),
                              windows=n_windows,
                              sections=sum(f.shape[0] for f in frames), sections_written=written,
                              fallback_boxes=fallback_boxes, fallback_patches_total=len(grid), timings_s=timings)
    del cover
    if fallback_boxes is not None:
        t = time.perf_counter()
        result.fallback_patches = len(fallback_boxes)
        done[1] = n_windows + result.fallback_patches
        shifted = (lambda d, total: progress(n_windows + d, n_windows + total)) if progress else None
        blocks: list = []
        result.fallback_stats = fallback.run(fallback_boxes, blocks, shifted)
        result.fallback_voxels = _merge_fallback(prob, [(input_box(volume, r), volume.to_input(v)) for r, v in blocks],
                                                 frames, image, decide_from)
        timings["fallback"] = time.perf_counter() - t
    elif progress:
        progress(n_windows, n_windows)
    return result


def _merge_fallback(prob: np.ndarray, blocks: Sequence[tuple[tuple[slice, ...], np.ndarray]],
                    frames: Sequence[RibFrame], image: sitk.Image, decide_from: float) -> np.ndarray:
    """The fallback's probability where no frame reaches, in place; `blocks`: (input-grid box, the
    fallback's values there). Coverage is asked only where the fallback says at least `decide_from`
    (the post-processing threshold: where a detection can come from) and more than the frames; below
    it the fallback fills the voxels the frames left at 0 (a quiet frame section may then show the
    fallback's quiet value: neither reaches the threshold).
    Returns the voxels (rows k, j, i) where the fallback's value from `decide_from` up was taken."""
    taken = []
    for box, values in blocks:
        in_box, offset = prob[box], np.array([b.start for b in box])
        slab = max(1, (_CHUNK // 4) // max(1, in_box[0].size))  # masks in slabs (a slice of 512^2): the arrays set the peak
        for k0 in range(0, len(in_box), slab):
            p, e = in_box[k0:k0 + slab], values[k0:k0 + slab]
            kji = np.argwhere((e >= max(decide_from, defaults.FRAME_MIN_PROBABILITY)) & (e > p))
            if len(kji):
                kji[:, 0] += k0
                kji = kji[~frames_reach(frames, image, kji + offset)]
                prob[tuple((kji + offset).T)] = values[tuple(kji.T)]
                taken.append(kji + offset)
            np.copyto(p, e, where=(e > 0) & (e < decide_from) & (p == 0))  # no zeros over zeros: untouched pages stay unmapped
    return np.concatenate(taken) if taken else np.zeros((0, 3), np.int64)

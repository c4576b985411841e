"""Fracture inference: CT in, detections out (pre-process -> sliding window -> post-process).

`segment_ct` is the one entry point the CLI, the Slicer Logic and training call. It works on a
canonical LPS view of the input (no copy, no resampling), computes only patches near the ribs (or,
when the rib set is incomplete, those holding bone inside the body: `fracture_cells`), blends patches with Gaussian weights in float32, and maps every result back onto the
input grid exactly. Cancelling raises `Cancelled` and returns nothing partial.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from . import defaults
from .checkpoint import Checkpoint, CheckpointError, build_model, load_checkpoint
from .detections import Detection, FractureResult
from .errors import Cancelled
from .frame_inference import (JUDGED_BY_FALLBACK, Fallback, FrameProbability, by_source, checkpoint_space,
                              fallback_checkpoint, fallback_classifier, floor_odds, frame_confidence,
                              frame_probability)
from .geometry import lps_to_ras
from .networks.fusion import fold_batchnorm, keep_full_resolution_fp32
from .precision import AutoPrecision, auto_precision
from .postprocess import Component, PostprocessParams, find_fractures
from .preprocess import bone_cells, patch_batch
from .orientation import CanonicalVolume, canonical_volume
from .progress import Cancel, Progress
from .ribs import RibLabels, segment_ribs
from .candidates.classifier import classify, keep_detections, load_classifier
from .ribs.assign import locate_on_rib, near_ribs, rib_lengths
from .ribs.frame_measure import measure_detections, segmental_pairs
from .sliding_window import Box, PatchGrid, SlabAggregator, blend_groups, importance_map, keep_mask, shifted

SUPPORTED_NORMALISATION = "window_to_minus1_1"


@dataclass(frozen=True)
class WindowStats:
    patches_total: int
    patches_skipped: int
    precision: str  # "fp32", "bf16"/"fp16" (autocast on CPU/CUDA) or "mixed" (full resolution in fp32)
    device: str


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu or auto")
    return device


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Fracture probability per voxel: sigmoid of one channel, else 1 - softmax background."""
    logits = logits.float()
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return 1.0 - torch.softmax(logits, dim=1)[:, 0]


PRECISIONS = defaults.PRECISIONS


class _Runner:
    """Runs batches on the device in the chosen precision.

    "bf16"/"fp16" autocast the whole network (bf16 on CPU, fp16 on CUDA); "mixed" keeps the layers
    the network declares full-resolution in fp32. "auto" follows `precision.auto_precision`: fp32
    unless the device runs a reduced precision natively; then the first batch runs in fp32 and in each
    candidate, and a candidate is kept (for every batch, the first included) only if it runs
    `defaults.REDUCED_PRECISION_MIN_SPEEDUP` times faster than fp32 there and, without a stored
    verdict, its probabilities stay within `defaults.BF16_PROB_TOLERANCE`.
    Out of GPU memory, batches are halved down to one patch before the work moves to the CPU in fp32.
    """

    def __init__(self, model: nn.Module, device: torch.device, precision: str,
                 auto: Optional[AutoPrecision] = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "fp16" and device.type != "cuda":
            raise ValueError("fp16 autocast is for CUDA; on CPU use bf16, mixed, fp32 or auto")
        self.device, self.precision, self.auto = device, precision, auto
        if precision == "auto":
            self.auto = auto or auto_precision(None, device)
            self.precision = "calibrate" if self.auto.candidates else "fp32"
        self.models = {"full": model, "mixed": keep_full_resolution_fp32(model)}
        self.errors: dict[str, float] = {}
        self.seconds: dict[str, float] = {}  # first-batch forward time per precision tried
        self.max_batch = 1 << 30  # lowered when a batch runs out of GPU memory

    def _forward(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        model = self.models["mixed" if precision == "mixed" else "full"]
        with torch.inference_mode(), _autocast(self.device, precision):
            return _probabilities(model(x))

    def _timed(self, x: torch.Tensor, precision: str) -> tuple[torch.Tensor, float]:
        start = time.perf_counter()
        out = self._forward(x, precision)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return out, time.perf_counter() - start

    def _calibrate(self, x: torch.Tensor) -> torch.Tensor:
        """fp32 (the reference, and the one-time set-up), then each candidate: its first call judges its
        output, fp32 is timed again warm, and a candidate slower than that is timed again warm too.
        Returns the first batch in the precision chosen."""
        self.errors, self.seconds = {}, {}  # a batch halved after running out of memory starts again
        reference, _ = self._timed(x, "fp32")
        chosen, mixed = "fp32", bool(getattr(self.models["full"], "fp32_modules", ()))
        for candidate in [c for c in self.auto.candidates if c != "mixed" or mixed]:
            out, seconds = self._timed(x, candidate)
            if self.auto.check_output:
                self.errors[candidate] = float((out - reference).abs().max())
                if self.errors[candidate] > defaults.BF16_PROB_TOLERANCE:
                    continue
            if "fp32" not in self.seconds:
                self.seconds["fp32"] = self._timed(x, "fp32")[1]
            needed = self.seconds["fp32"] / defaults.REDUCED_PRECISION_MIN_SPEEDUP
            if seconds >= needed:  # its first call may have paid its own set-up
                seconds = self._timed(x, candidate)[1]
            self.seconds[candidate] = seconds
            if seconds < needed:
                chosen, reference = candidate, out
                break
        self.precision = chosen
        return reference

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) > self.max_batch:  # an earlier batch ran out of GPU memory: go on in smaller ones
            return np.concatenate([self(batch[i:i + self.max_batch]) for i in range(0, len(batch), self.max_batch)])
        x = torch.from_numpy(batch).unsqueeze(1)
        if self.device.type == "cuda":
            x = x.pin_memory()  # lets the copy below overlap with the previous batch's kernels
        if x.ndim == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        x = x.to(self.device, non_blocking=True)
        while True:
            try:
                if self.precision == "calibrate":
                    return self._calibrate(x).cpu().numpy()
                return self._forward(x, self.precision).cpu().numpy()
            except torch.cuda.OutOfMemoryError:  # smaller batches first; at one patch, the CPU in fp32
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if len(batch) > 1:
                    self.max_batch = len(batch) // 2
                    del x
                    return self(batch)
                if self.device.type == "cpu":
                    raise
                self.device, self.precision = torch.device("cpu"), "fp32"
                self.models = {k: m.to(self.device) for k, m in self.models.items()}
                x = x.cpu()


def predict_probability(array: np.ndarray, model: nn.Module, *, patch_size: Sequence[int],
                        hu_window: Sequence[float], overlap: float = defaults.OVERLAP,
                        batch_size: int = defaults.CPU_BATCH_SIZE, cells: Optional[np.ndarray] = None,
                        blend: str = "gaussian", device: torch.device = torch.device("cpu"),
                        precision: str = "auto", progress: Optional[Progress] = None,
                        cancel: Optional[Cancel] = None, output: Optional[np.ndarray] = None,
                        auto: Optional[AutoPrecision] = None, boxes: Optional[Sequence[Box]] = None,
                        blocks: Optional[list] = None) -> tuple[Optional[np.ndarray], WindowStats]:
    """Blended probability map (float32, shape of `array`) of a 3-D HU array by sliding window.

    `cells` (from `preprocess.bone_cells`) marks where fractures may be; patches touching none are
    skipped and their voxels get no contribution (0 where no computed patch covers them).
    `output` (zeroed float32, e.g. a canonical view of an input-grid array) receives the map in place.
    `auto` is what precision "auto" tries (`precision.auto_precision`; default: uncalibrated).
    `boxes`: the patches to compute instead of the grid's (the rib-frame fallback's, `window_cover`).
    `blocks`: a list to receive each overlapping group of `boxes` as (region, its blended values) instead
    of a map (None is returned): scattered patches then never touch a whole CT's fresh array, whose
    first writes cost about 0.1-0.3 s a 64^3 patch on a 512 x 512 CT here.
    """
    grid = PatchGrid.build(array.shape, patch_size, overlap)
    if boxes is None:
        boxes = [box for box, keep in zip(grid.boxes(), keep_mask(grid, cells)) if keep]
        groups = [(tuple(slice(0, int(n)) for n in array.shape), boxes)]
    else:  # scattered patches blend group by group on their own region (`blend_groups`)
        groups = blend_groups(boxes)
    if output is None and blocks is None:
        output = np.zeros(array.shape, dtype=np.float32)
    weights = importance_map(patch_size, blend)
    runner = _Runner(model, device, precision, auto)
    if progress:
        progress(0, len(boxes))
    batch_size = max(1, int(batch_size))
    done = 0
    for region, members in groups:
        shape = [r.stop - r.start for r in region]
        target = np.zeros(shape, np.float32) if blocks is not None else output[region]
        aggregator = SlabAggregator(shape, weights, target)
        for first in range(0, len(members), batch_size):
            if cancel is not None and cancel():
                raise Cancelled("inference cancelled; no result was produced")
            chunk = members[first:first + batch_size]
            predictions = runner(patch_batch(array, chunk, patch_size, hu_window))
            for box, prediction in zip(chunk, predictions):
                aggregator.add(shifted(box, region), prediction[tuple(slice(0, b.stop - b.start) for b in box)])
            done += len(chunk)
            if progress:
                progress(done, len(boxes))
        aggregator.finish()
        if blocks is not None:
            blocks.append((region, target))
    stats = WindowStats(len(grid), len(grid) - len(boxes), runner.precision.replace("calibrate", "fp32"),
                        str(runner.device))
    return output, stats


def fracture_cells(volume: CanonicalVolume, ribs: Optional[RibLabels], bone_hu: float) -> tuple[np.ndarray, str]:
    """Blocks (`preprocess.bone_cells` grid) where a rib fracture may be, and the rule that chose them:
    "ribs" (bone within RIB_SKIP_MARGIN_MM of a rib) when the rib set is complete, else "bone (why)"
    (bone inside the body). Patches touching none of these blocks are not computed."""
    cells = bone_cells(volume.array, bone_hu)
    if not defaults.SKIP_BY_RIBS:
        return cells, "bone (skipping by ribs is off)"
    if ribs is None or not ribs.ribs:
        return cells, "bone (no ribs found)"
    if not ribs.complete():
        return cells, f"bone (rib set incomplete: {' '.join(sorted(r.name for r in ribs.ribs if r.number))} found)"
    return cells & near_ribs(ribs, volume, defaults.RIB_SKIP_MARGIN_MM, cell=defaults.SKIP_CELL_VOXELS), "ribs"


def _detection(component: Component, volume: CanonicalVolume, image: sitk.Image, voxel_mm3: float,
               ribs: Optional[RibLabels] = None) -> Detection:
    ijk = volume.index_to_input(np.array(component.centroid_zyx))
    lps = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in ijk])
    rib, arc, region = locate_on_rib(lps, ribs.ribs) if ribs is not None else ("none", None, "")
    corners = volume.index_to_input(np.array(component.bbox_zyx, dtype=float))
    lo, hi = np.rint(corners.min(axis=0)).astype(int), np.rint(corners.max(axis=0)).astype(int)
    return Detection(id=component.label, confidence=component.mean_probability, voxel_count=component.voxel_count,
                     volume_mm3=component.voxel_count * voxel_mm3, centroid_ijk=tuple(float(v) for v in ijk),
                     center_ras=lps_to_ras(lps), center_lps=tuple(float(v) for v in lps),
                     bbox_ijk=(tuple(int(v) for v in lo), tuple(int(v) for v in hi)),
                     rib=rib, rib_arc_mm=arc, rib_region=region)


def _postprocess_params(ckpt: Checkpoint, threshold: Optional[float],
                        postprocess: Optional[PostprocessParams]) -> PostprocessParams:
    if postprocess is not None:
        return postprocess if threshold is None else replace(postprocess, probability=float(threshold))
    t = ckpt.thresholds
    return PostprocessParams(probability=float(threshold if threshold is not None else
                                               t.get("probability", defaults.PROB_THRESHOLD)),
                             bone_hu=float(t.get("bone_hu", defaults.BONE_HU)),
                             min_volume_mm3=float(t.get("min_volume_mm3", defaults.MIN_FRACTURE_VOLUME_MM3)),
                             min_confidence=float(t.get("min_confidence", defaults.MIN_CONFIDENCE)),
                             on_rib=bool(t.get("on_rib", defaults.ON_RIB_FILTER)),
                             rib_margin_mm=float(t.get("rib_margin_mm", defaults.ON_RIB_MARGIN_MM)))


def _check_preprocessing(ckpt: Checkpoint) -> tuple[float, float]:
    pre = ckpt.preprocessing
    if pre.get("normalisation", SUPPORTED_NORMALISATION) != SUPPORTED_NORMALISATION:
        raise CheckpointError(f"checkpoint normalisation {pre['normalisation']!r} is not supported; "
                              f"expected {SUPPORTED_NORMALISATION!r}")
    if pre.get("target_spacing"):
        raise CheckpointError("checkpoint asks for resampling to target_spacing, which this inference engine "
                              "does not do; train at native spacing (target_spacing None)")
    if len(ckpt.patch_size) != 3:
        raise CheckpointError(f"fracture inference needs a 3-D patch size, checkpoint has {ckpt.patch_size}")
    lo, hi = (float(v) for v in pre.get("hu_window", defaults.HU_WINDOW))
    return lo, hi


def _prepared_model(ckpt: Checkpoint, dev: torch.device) -> nn.Module:
    """The checkpoint's network for inference: batch norm folded, channels-last on the CPU."""
    model = fold_batchnorm(build_model(ckpt, dev))
    return model.to(memory_format=torch.channels_last_3d) if dev.type == "cpu" else model


def _second_stage(image: sitk.Image, detections: list[Detection], labels: np.ndarray, ckpt: Checkpoint,
                  dev: torch.device, floor: float) -> list[Detection]:
    """The candidate classifier re-scores, types and drops detections (`labels` erased and renumbered
    to match). A rib-frame checkpoint's fallback and rib-end detections go through the fallback
    checkpoint's classifier, so a fracture keeps the confidence the CT path gives it; the others through
    the frame checkpoint's own (none: reported by `floor_odds` over the first-stage `floor`)."""
    fallback = [d for d in detections if d.source in JUDGED_BY_FALLBACK]
    groups = [([d for d in detections if d.source not in JUDGED_BY_FALLBACK],
               load_classifier(ckpt.candidate_classifier, dev))]
    if fallback:
        groups.append((fallback, fallback_classifier(ckpt, dev)))
    if not any(spec is not None and group for group, spec in groups):
        return floor_odds(detections, floor)
    kept = [d for group, spec in groups
            for d in (classify(image, group, spec, dev) if spec is not None and group else floor_odds(group, floor))]
    return keep_detections(sorted(kept, key=lambda d: d.id), labels)


def _frame_run(image: sitk.Image, volume: CanonicalVolume, ribs: Optional[RibLabels], ckpt: Checkpoint,
               model: nn.Module, dev: torch.device, *, cells: Optional[np.ndarray], rule: str, bone_hu: float,
               overlap: float, batch_size: int, blend: str, precision: str, progress: Optional[Progress],
               cancel: Optional[Cancel], output: np.ndarray, decide_from: float
               ) -> tuple[FrameProbability, WindowStats]:
    """A rib-frame checkpoint's probability (`frame_inference.frame_probability`), its windows run in
    `precision` like patches; bone no frame covers goes through `predict_probability` with the
    checkpoint's fallback (the shipped model), built only when some bone needs it."""
    runner = _Runner(model, dev, precision, auto_precision(ckpt, dev))
    fallback = fallback_checkpoint(ckpt)
    fallback_window = _check_preprocessing(fallback)

    def run(boxes: list, blocks: list, progress_: Optional[Progress]) -> WindowStats:
        return predict_probability(volume.array, _prepared_model(fallback, dev), patch_size=fallback.patch_size,
                                   hu_window=fallback_window, overlap=overlap, batch_size=batch_size, boxes=boxes,
                                   blend=blend, device=dev, precision=precision, progress=progress_, cancel=cancel,
                                   blocks=blocks, auto=auto_precision(fallback, dev))[1]

    framed = frame_probability(image, volume, ribs, ckpt, runner, Fallback(fallback.patch_size, overlap, run),
                               cells=cells, rule=rule, bone_hu=bone_hu, batch_size=batch_size,
                               blend=blend, progress=progress, cancel=cancel, output=output, decide_from=decide_from)
    stats = WindowStats(framed.windows + framed.fallback_patches_total,
                        framed.fallback_patches_total - framed.fallback_patches,
                        runner.precision.replace("calibrate", "fp32"), str(runner.device))
    return framed, stats


def segment_ct(image: sitk.Image, checkpoint: str | Path | Checkpoint, *, device: str = "auto",
               overlap: Optional[float] = None, threshold: Optional[float] = None,
               batch_size: Optional[int] = None, return_probability: bool = False,
               progress: Optional[Progress] = None, cancel: Optional[Cancel] = None,
               precision: str = "auto", skip_empty: bool = True, blend: str = "gaussian",
               postprocess: Optional[PostprocessParams] = None, ribs: Optional[RibLabels] = None,
               find_ribs: bool = True, on_rib: Optional[bool] = None, classify_candidates: bool = True
               ) -> FractureResult:
    """Detect rib fractures in a CT (HU, any orientation); results live on the input grid.

    threshold overrides the probability threshold of the checkpoint (or of `postprocess`, which
    replaces every other post-processing parameter). progress(done, total) counts computed patches; cancel() is checked
    before each batch and makes this raise `Cancelled`. The ribs (given, or found when `find_ribs`)
    name each detection's rib and, when the on-rib filter is on (`on_rib` overrides the checkpoint),
    drop detections off the ribs. A checkpoint with a candidate classifier re-scores and types each
    detection and drops those under its operating point (`classify_candidates=False`: the first stage alone).
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    hu_window = _check_preprocessing(ckpt)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"segment_ct needs a 3-D single-channel CT, got {image.GetDimension()}-D with "
                         f"{image.GetNumberOfComponentsPerPixel()} components")
    in_frames = checkpoint_space(ckpt) == "rib_frame"
    dev = resolve_device(device)
    model = _prepared_model(ckpt, dev)
    params = _postprocess_params(ckpt, threshold, postprocess)
    if on_rib is not None:
        params = replace(params, on_rib=bool(on_rib))
    volume = canonical_volume(image)
    timings["preprocess"] = time.perf_counter() - start
    t = time.perf_counter()
    if ribs is None and find_ribs:
        ribs = segment_ribs(image)
    timings["ribs"] = time.perf_counter() - t
    # rib rules need most of the cage: with few ribs found (partial view, poor image) they are skipped
    trusted = ribs is not None and len(ribs.ribs) >= defaults.ON_RIB_MIN_RIBS
    cells, skip_rule = fracture_cells(volume, ribs, params.bone_hu) if skip_empty else (None, "none")

    t = time.perf_counter()
    input_shape = sitk.GetArrayViewFromImage(image).shape
    probability_input = np.zeros(input_shape, dtype=np.float32)  # filled through its canonical view
    overlap = defaults.OVERLAP if overlap is None else overlap
    batch_size = batch_size or (defaults.BATCH_SIZE if dev.type == "cuda" else defaults.CPU_BATCH_SIZE)
    framed = None
    if in_frames:
        framed, stats = _frame_run(image, volume, ribs, ckpt, model, dev, cells=cells, rule=skip_rule,
                                   bone_hu=params.bone_hu, overlap=overlap, batch_size=batch_size, blend=blend,
                                   precision=precision, progress=progress, cancel=cancel, output=probability_input,
                                   decide_from=params.probability)
        framed.probability = None  # probability_input's own buffer: held by that name alone
        probability = volume.to_canonical(probability_input)
        skip_rule = f"rib frames; where no frame reaches: {skip_rule}"
        timings.update(framed.timings_s)
    else:
        probability, stats = predict_probability(
            volume.array, model, patch_size=ckpt.patch_size, hu_window=hu_window, overlap=overlap,
            batch_size=batch_size, cells=cells, blend=blend, device=dev, precision=precision, progress=progress,
            cancel=cancel, output=volume.to_canonical(probability_input), auto=auto_precision(ckpt, dev))
    del model
    timings["network"] = time.perf_counter() - t

    near = near_ribs(ribs, volume, params.rib_margin_mm) if (trusted and params.on_rib) else None
    t = time.perf_counter()
    labels = np.zeros(input_shape, dtype=np.uint16)
    components = find_fractures(probability, volume.array, volume.spacing_zyx,  # frames: floors by source, below
                                replace(params, min_confidence=0.0) if in_frames else params,
                                volume.to_canonical(labels), near_ribs=near)
    del near
    voxel_mm3 = float(np.prod(image.GetSpacing()))
    detections = [_detection(c, volume, image, voxel_mm3, ribs) for c in components]
    if framed is not None:
        peaks = {c.label: c.peak_probability for c in components} if frame_confidence(ckpt) == "peak" else None
        fallback_floor = float(fallback_checkpoint(ckpt).thresholds.get("min_confidence", defaults.MIN_CONFIDENCE))
        lengths = rib_lengths(ribs.ribs) if ribs is not None else None
        detections = by_source(detections, labels, framed, params.min_confidence, fallback_floor, peaks, lengths)
    timings["postprocess"] = time.perf_counter() - t
    kept_probability = probability_input if return_probability else None
    del probability, probability_input  # 4 bytes a voxel: freed (unless returned) before the peak that follows
    if classify_candidates:
        t = time.perf_counter()
        detections = _second_stage(image, detections, labels, ckpt, dev, params.min_confidence)
        timings["classifier"] = time.perf_counter() - t
    if ribs is not None and ribs.ribs and detections:  # gap, step-off, angulation in the rib's own frame
        t = time.perf_counter()
        detections = segmental_pairs(measure_detections(image, detections, ribs.ribs))
        timings["measure"] = time.perf_counter() - t
    t = time.perf_counter()
    instances = sitk.GetImageFromArray(labels)
    instances.CopyInformation(image)
    del labels
    prob_image = None
    if return_probability:
        prob_image = sitk.GetImageFromArray(kept_probability)
        prob_image.CopyInformation(image)
    timings["postprocess"] += time.perf_counter() - t
    timings["total"] = time.perf_counter() - start
    return FractureResult(detections=detections, instances=instances, probability=prob_image, timings_s=timings,
                          patches_total=stats.patches_total, patches_skipped=stats.patches_skipped,
                          device=f"{stats.device} ({stats.precision})", ribs=ribs, skip_rule=skip_rule,
                          rib_frames=None if framed is None else framed.summary(),
                          notes=[] if framed is None else [framed.note()])

"""A checkpoint's first stage on a CT, cached on disk, and its second stage and confidence floor
applied afterwards: how benchmarks and `calibrate_frame` judge a checkpoint at many operating points
from one network run per CT.

The run is stored with no confidence floor (`thresholds["min_confidence"]` = 0), so any floor is a
filter on the stored detections (a component is dropped by its first-stage confidence alone, the
mean probability or a frame detection's peak: the same result) and a checkpoint whose floor alone changed (a calibrated one) reuses the run. A
rib-frame checkpoint's floor filters its frame detections only: its fallback's are stored at the
fallback's own floor, as `segment_ct` keeps them. The cache key hashes what changes the run: weights,
the other thresholds, the pre-processing, the frame/fallback settings (and the fallback's own key and
floor), the calibrated precision and the skip rule; a run is reused only for the image it was run
on (`image_digest`: a case name re-simulated on other ribs is run again). Code changes that change
runs bump CACHE_VERSION or FRAME_RUN_VERSION.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import SimpleITK as sitk

from . import defaults
from .checkpoint import Checkpoint
from .detections import Detection

CACHE_VERSION = 1
FRAME_RUN_VERSION = "window-reach-1"  # frame runs only: rib-end detections tagged (`ribs.assign.at_rib_end`, the
#   tips of a trace as long as its partner's are ends); boneless anterior tails cut (`ribs.tails`); grown ribs without
#   upright strips, short ribs mended across a break; frames reach no further across than a window sees
#   (`frame_inference.frame_geometry`)
RUN_KEYS = ("precision", "fallback", "frame_overlap", "confidence", "frame_relook_from")  # the checkpoint's `inference` entries that change the run


@dataclass
class StageResult:
    """Detections (ids 1..n) and their instance image on the CT's grid."""

    detections: list[Detection]
    instances: sitk.Image
    timings_s: dict


def run_key(ckpt: Checkpoint) -> str:
    """Hash of everything that changes the first stage's run except the confidence floor."""
    h = hashlib.sha256()
    for k in sorted(ckpt.state_dict):
        h.update(k.encode())
        h.update(ckpt.state_dict[k].detach().cpu().numpy().tobytes())
    thresholds = {k: v for k, v in ckpt.thresholds.items() if k != "min_confidence"}
    run = {k: ckpt.inference[k] for k in RUN_KEYS if k in ckpt.inference}
    h.update(json.dumps([CACHE_VERSION, ckpt.arch, thresholds, ckpt.preprocessing, list(ckpt.patch_size), run,
                         defaults.SKIP_BY_RIBS], sort_keys=True, default=str).encode())
    from .ribs.frame_measure import measure_settings

    h.update(json.dumps(measure_settings(), default=str).encode())  # detections are stored typed
    fallback = _fallback(ckpt)
    if fallback is not None:  # "source": frame runs since detections carry theirs (CT-space runs are unchanged)
        h.update(json.dumps([run_key(fallback), fallback.thresholds.get("min_confidence"), "source",
                             FRAME_RUN_VERSION], default=str).encode())
    return h.hexdigest()[:16]


def _fallback(ckpt: Checkpoint) -> Optional[Checkpoint]:
    """A rib-frame checkpoint's fallback (CT-space) checkpoint; None for a CT-space one."""
    from .frame_inference import checkpoint_space, fallback_checkpoint

    return fallback_checkpoint(ckpt) if checkpoint_space(ckpt) == "rib_frame" else None


def fallback_classifier(ckpt: Checkpoint):
    """The loaded classifier (`ClassifierSpec`) a rib-frame checkpoint's fallback detections go
    through, as in `segment_ct` (`frame_inference.fallback_classifier`); None for a CT-space checkpoint."""
    from .frame_inference import checkpoint_space, fallback_classifier as frame_fallback_classifier

    return frame_fallback_classifier(ckpt) if checkpoint_space(ckpt) == "rib_frame" else None


def with_floor(ckpt: Checkpoint, floor: float) -> Checkpoint:
    return replace(ckpt, thresholds={**ckpt.thresholds, "min_confidence": float(floor)})


def image_digest(image: sitk.Image) -> str:
    """SHA-256 of a CT's voxels and grid: a cached run is reused only for the image it was run on."""
    h = hashlib.sha256(sitk.GetArrayViewFromImage(image).tobytes())
    h.update(json.dumps([str(image.GetPixelIDTypeAsString()), image.GetSpacing(), image.GetOrigin(),
                         image.GetDirection()]).encode())
    return h.hexdigest()


def first_stage(ckpt: Checkpoint, image: sitk.Image, case: str, cache_dir: str | Path,
                find_ribs: bool = True) -> StageResult:
    """The first stage (no classifier) of `case` with no confidence floor, read from
    `cache_dir/<run_key>/<case>/` or run and stored there."""
    from .inference import segment_ct

    folder = Path(cache_dir) / run_key(ckpt) / case
    digest = image_digest(image)
    if (folder / "detections.json").is_file():
        stored = json.loads((folder / "detections.json").read_text())
        if stored.get("image_sha256") == digest:  # a case name with another image (e.g. re-simulated): run again
            return StageResult([Detection.from_dict(d) for d in stored["detections"]],
                               sitk.ReadImage(str(folder / "instances.nii.gz")), stored["timings_s"])
    result = segment_ct(image, with_floor(ckpt, 0.0), classify_candidates=False, find_ribs=find_ribs)
    folder.mkdir(parents=True, exist_ok=True)
    from .io import atomic_path

    with atomic_path(folder / "instances.nii.gz") as tmp:
        sitk.WriteImage(result.instances, str(tmp), True)
    with atomic_path(folder / "detections.json") as tmp:  # written last: the case is complete
        Path(tmp).write_text(json.dumps({"detections": [d.to_dict() for d in result.detections],
                                         "timings_s": result.timings_s, "image_sha256": digest}))
    return StageResult(result.detections, result.instances, result.timings_s)


def _kept(stage: StageResult, kept: list[Detection]) -> StageResult:
    from .candidates.classifier import keep_detections

    labels = sitk.GetArrayFromImage(stage.instances)
    renumbered = keep_detections(kept, labels)
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(stage.instances)
    return StageResult(renumbered, image, stage.timings_s)


def above_floor(stage: StageResult, floor: float) -> StageResult:
    """The detections whose first-stage confidence (`first_confidence`) reaches `floor`, a fallback's
    kept at its own (stored) floor: what the run gives with `thresholds["min_confidence"] = floor`
    (segmental pairs among those kept)."""
    from .ribs.frame_measure import segmental_pairs

    return _kept(stage, segmental_pairs([d for d in stage.detections
                                         if d.source == "fallback" or first_confidence(d) >= floor]))


def first_confidence(d: Detection) -> float:
    """The first stage's confidence: mean probability, a frame detection's peak (the classifier keeps it
    as `network_confidence`)."""
    return float(d.network_confidence) if d.network_confidence is not None else float(d.confidence)


def second_stage(image: sitk.Image, stage: StageResult, spec, fallback_spec=None,
                 floor: Optional[float] = None) -> StageResult:
    """The candidate classifier (`spec`, a loaded `ClassifierSpec`; None: unchanged) on first-stage
    detections, typed as `segment_ct` types them (the frame's measurements first: `reported_type`);
    a rib-frame checkpoint's fallback and rib-end detections through `fallback_spec` (`fallback_classifier`).
    With `floor` (the first-stage floor), frame detections with no classifier are reported as
    `segment_ct` reports them (`floor_odds`)."""
    from .candidates.classifier import classify
    from .frame_inference import JUDGED_BY_FALLBACK, floor_odds
    from .ribs.frame_measure import reported_type, segmental_pairs

    groups = [([d for d in stage.detections if d.source not in JUDGED_BY_FALLBACK], spec),
              ([d for d in stage.detections if d.source in JUDGED_BY_FALLBACK], fallback_spec)]
    if not any(group and s is not None for group, s in groups):
        return stage if floor is None else StageResult(floor_odds(stage.detections, floor), stage.instances,
                                                       stage.timings_s)
    unclassified = (lambda group: group) if floor is None else (lambda group: floor_odds(group, floor))
    kept = sorted((d for group, s in groups
                   for d in (classify(image, group, s) if group and s is not None else unclassified(group))),
                  key=lambda d: d.id)
    by_id = {d.id: d for d in stage.detections}
    typed = segmental_pairs([d if by_id[d.id].frame_code < 0 else
                             replace(d, label_code=reported_type(by_id[d.id].frame_code, bool(by_id[d.id].gap_mm),
                                                                 d.label_code))
                             for d in kept])
    return _kept(stage, typed)


def run_case(ckpt: Checkpoint, spec, image: sitk.Image, case: str, cache_dir: str | Path,
             floor: Optional[float] = None, find_ribs: bool = True) -> tuple[StageResult, StageResult]:
    """(first stage, with the classifier) at `floor` (default: the checkpoint's `min_confidence`)."""
    floor = float(ckpt.thresholds.get("min_confidence", defaults.MIN_CONFIDENCE)) if floor is None else floor
    first = above_floor(first_stage(ckpt, image, case, cache_dir, find_ribs), floor)
    return first, second_stage(image, first, spec, fallback_classifier(ckpt), floor)

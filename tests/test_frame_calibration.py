"""`calibrate_frame` chooses the confidence floor on fracture-free CTs and their simulated copies.

The first stage of each case is what the cache holds (`first_stage`'s files, written here as a run would
write them): on a phantom used as a "real" CT, a false detection of confidence 0.3 in the free scan and
in every copy, and each copy's simulated fractures found at 0.6. The floor must drop the false one and
keep the true ones; with a looser FP limit the same floor still wins (same recall, fewer FP).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib.checkpoint import load_checkpoint, save_checkpoint
from RibFracSegLib.detections import Detection
from RibFracSegLib.errors import InputError
from RibFracSegLib.first_stage import first_stage, image_digest, run_key
from RibFracSegLib.evaluation.matching import CaseMatch, PredictionRow
from RibFracSegLib.frame_calibration import (ALWAYS, calibrate_frame, candidate_floors, choose_fallback_floor,
                                            choose_floor, store_floor)
from RibFracSegLib.phantom import PhantomParams, generate_phantom, rib_labels_from_phantom
from RibFracSegLib.simulate import simulate_case

from inference_helpers import checkpoint

FALSE_BOX = (slice(2, 6), slice(2, 6), slice(2, 6))  # a corner of the volume: far from every rib


def _detection(label: int, confidence: float, mask: np.ndarray) -> Detection:
    k, j, i = np.nonzero(mask)
    c = (float(i.mean()), float(j.mean()), float(k.mean()))
    return Detection(id=label, confidence=confidence, voxel_count=int(mask.sum()), volume_mm3=float(mask.sum()),
                     centroid_ijk=c, center_ras=c, center_lps=c,
                     bbox_ijk=((int(i.min()), int(j.min()), int(k.min())), (int(i.max()), int(j.max()), int(k.max()))))


def _cache_run(cache, ckpt, case: str, like: sitk.Image, truth: np.ndarray | None) -> None:
    """What a first-stage run of `like` leaves in the cache: the truth fractures at 0.6 (when given), a false one at 0.3."""
    labels = np.zeros(like.GetSize()[::-1], np.uint16)
    labels[FALSE_BOX] = 1
    dets = [_detection(1, 0.3, labels == 1)]
    if truth is not None:  # each truth fracture one detection
        labels[truth > 0] = truth[truth > 0] + 1
        dets += [_detection(int(t) + 1, 0.6, labels == t + 1) for t in np.unique(truth[truth > 0])]
    folder = cache / run_key(ckpt) / case
    folder.mkdir(parents=True)
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(like)
    sitk.WriteImage(image, str(folder / "instances.nii.gz"))
    (folder / "detections.json").write_text(json.dumps({"detections": [d.to_dict() for d in dets],
                                                        "timings_s": {"total": 1.0},
                                                        "image_sha256": image_digest(like)}))


@pytest.fixture(scope="module")
def phantom():
    case = generate_phantom(PhantomParams(shape=(120, 140, 90), spacing=(2.0, 2.0, 3.0), fov="thorax", seed=5,
                                          n_fractures=0))
    return case.image, rib_labels_from_phantom(case)


def test_the_floor_drops_the_false_detection_and_keeps_the_fractures(phantom, tmp_path):
    image, ribs = phantom
    ckpt = checkpoint("test_pointwise", patch=32, hu_window=(1500.0, 3000.0), gain=20.0, bias=0.0)
    ckpt.thresholds["min_confidence"] = 0.0
    seeds, n = (7, 8), 3
    _cache_run(tmp_path, ckpt, "CT-A", image, None)
    for seed in seeds:  # the copies calibrate_frame will build: same ribs, same seed
        sim = simulate_case(image, ribs, n, np.random.default_rng(seed), kinds=(1, 2, 3, 4))
        assert len(sim.fractures) == n
        truth = sitk.GetArrayFromImage(sim.fracture_labels)
        truth[FALSE_BOX] = 0
        _cache_run(tmp_path, ckpt, f"CT-A-sim{seed}-f{n}", sim.image, truth)
    calibration = calibrate_frame(ckpt, [("CT-A", image)], tmp_path, seeds=seeds, n_fractures=n, max_fp=0.5,
                                  ribs_of=lambda im, name: ribs, log=lambda m: None)
    assert 0.3 < calibration.floor <= 0.6 and calibration.floor == pytest.approx(0.45)
    assert calibration.chosen.fp_per_free_scan == pytest.approx(0.0, abs=1e-6)
    assert calibration.free_cases == {"CT-A": 0}
    no_floor = calibration.points[0]
    assert no_floor.floor == 0.0 and no_floor.fp_per_free_scan == pytest.approx(1.0)
    assert calibration.chosen.recall == pytest.approx(1.0) and no_floor.recall == pytest.approx(1.0)
    assert calibration.chosen.fp_per_simulated_scan == pytest.approx(0.0, abs=1e-6)
    # a looser limit allows the no-floor point, but at the same recall the floor with fewer FP wins
    loose = calibrate_frame(ckpt, [("CT-A", image)], tmp_path, seeds=seeds, n_fractures=n, max_fp=1.0,
                            ribs_of=lambda im, name: ribs, log=lambda m: None)
    assert loose.floor == pytest.approx(0.45)
    # the written checkpoint carries the floor and the record; its first stage is the same cached run
    out = save_checkpoint(tmp_path / "calibrated.pt", store_floor(ckpt, calibration))
    back = load_checkpoint(out)
    assert back.thresholds["min_confidence"] == pytest.approx(0.45)
    record = back.inference["floor_calibration"]
    assert record["free_cases"] == {"CT-A": 0}
    assert record["simulated_cases"] == {f"CT-A-sim{seed}-f{n}": [n, n] for seed in seeds}
    assert run_key(back) == run_key(ckpt)
    assert len(first_stage(back, image, "CT-A", tmp_path).detections) == 1  # the cache holds the no-floor run


def test_the_held_out_ct_is_refused(phantom, tmp_path):
    image, ribs = phantom
    ckpt = checkpoint("test_pointwise", patch=32, hu_window=(1500.0, 3000.0), gain=20.0, bias=0.0)
    with pytest.raises(InputError, match="LIDC-IDRI-0314"):
        calibrate_frame(ckpt, [("LIDC-IDRI-0314", image)], tmp_path, ribs_of=lambda im, name: ribs)


def test_the_fallbacks_false_positives_are_counted_but_not_charged_to_the_frames_budget():
    """A free scan with one false detection of the fallback (matched at ALWAYS) and one of the frame at
    0.3; two copies whose fractures the frame finds at 0.6. Budget 0.5 FP/scan of the frame's own: the
    floor drops the frame's false one (not possible if the fallback's counted against the budget:
    no floor drops it) and reports the fallback's beside it."""
    def row(label, prob, hit=0):
        return PredictionRow(label, 0.5 if hit else 0.0, hit, prob, float("nan"), float("nan"))

    free = [CaseMatch("free", 0, [row(1, ALWAYS), row(2, 0.3)], [])]
    copies = [CaseMatch(f"copy{i}", 2, [row(1, 0.6, 1), row(2, 0.6, 2), row(3, ALWAYS)], []) for i in range(2)]
    chosen, points, fallback_fp = choose_floor(free, copies, max_fp=0.5)
    assert fallback_fp == pytest.approx(1.0, abs=1e-4)
    assert chosen.floor == pytest.approx(0.45) and chosen.recall == pytest.approx(1.0)
    assert chosen.fp_per_free_scan == pytest.approx(1.0, abs=1e-4)  # the fallback's, counted
    assert chosen.fp_per_simulated_scan == pytest.approx(1.0, abs=1e-4)
    assert max(p.floor for p in points) < 1.0 + 1e-5  # floors from the frame's confidences only


def test_the_frames_budget_is_met_exactly_despite_the_frocs_epsilons():
    """Six free scans, 2 fallback FP each (12) and one frame FP at 0.3 on three of them: the frame's own
    0.5 FP/scan is within a budget of 0.5, though FROC's epsilons put 15/6 - 12/6 a hair above 0.5."""
    def row(label, prob):
        return PredictionRow(label, 0.0, 0, prob, float("nan"), float("nan"))

    free = [CaseMatch(f"free{i}", 0, [row(1, ALWAYS), row(2, ALWAYS)] + ([row(3, 0.3)] if i < 3 else []), [])
            for i in range(6)]
    copies = [CaseMatch("copy", 1, [PredictionRow(1, 0.5, 1, 0.2, float("nan"), float("nan"))], [])]
    chosen, _, fallback_fp = choose_floor(free, copies, max_fp=0.5)
    assert fallback_fp == pytest.approx(2.0) and chosen.floor == 0.0 and chosen.recall == pytest.approx(1.0)


def test_the_fallbacks_floor_is_the_lowest_within_its_own_budget():
    """Three free scans whose fallback detections (all false) have classifier probabilities as frame4's
    had on real CTs: 0.5 FP per scan allows one of them (the highest stays), 1.0 allows three."""
    free = [[0.968, 0.898, 0.867], [0.926, 0.80], [0.921, 0.76]]
    assert choose_fallback_floor(free, 0.5) == pytest.approx((0.926 + 0.968) / 2)
    assert choose_fallback_floor(free, 1.0) == pytest.approx((0.898 + 0.921) / 2)
    assert choose_fallback_floor(free, 3.0) == 0.0  # all allowed: the classifier's own floor
    assert choose_fallback_floor([[], []], 0.5) == 0.0


def test_candidate_floors_lie_between_confidences():
    assert candidate_floors([0.2, 0.6, 0.2, 0.4]) == pytest.approx([0.0, 0.3, 0.5, 0.600001])
    assert candidate_floors([]) == [0.0]


def test_a_floor_on_the_cached_run_is_the_run_with_that_floor(phantom, tmp_path):
    """Two painted marks read as two detections of mean probability ~1.0 and ~0.8 (logit = 20 x on the
    window (1500, 3000)); the cached run has both, and floor 0.9 on it gives exactly what `segment_ct`
    gives with min_confidence 0.9: one detection, the same instances."""
    from RibFracSegLib.first_stage import above_floor, with_floor
    from RibFracSegLib.inference import segment_ct

    image, _ = phantom
    hu = sitk.GetArrayFromImage(image)
    z, y, x = (s // 2 for s in hu.shape)
    hu[z:z + 4, y - 40:y - 36, x - 45:x - 41] = 3000
    hu[z:z + 4, y - 40:y - 36, x + 41:x + 45] = 2300
    marked = sitk.GetImageFromArray(hu)
    marked.CopyInformation(image)
    ckpt = checkpoint("test_pointwise", patch=32, hu_window=(1500.0, 3000.0), gain=20.0, bias=0.0)
    ckpt.thresholds.update(min_volume_mm3=0.0, min_confidence=0.0)
    stage = first_stage(ckpt, marked, "marks", tmp_path, find_ribs=False)
    assert sorted(round(d.confidence, 1) for d in stage.detections) == [0.8, 1.0]
    # the same case name with another image (a copy simulated anew) is run again, not read from the cache
    assert first_stage(ckpt, image, "marks", tmp_path, find_ribs=False).detections == []
    assert len(first_stage(ckpt, marked, "marks", tmp_path, find_ribs=False).detections) == 2
    ref = segment_ct(marked, with_floor(ckpt, 0.9), classify_candidates=False, find_ribs=False, precision="fp32")
    got = above_floor(stage, 0.9)
    assert len(ref.detections) == len(got.detections) == 1
    assert got.detections[0].confidence == pytest.approx(ref.detections[0].confidence)
    assert np.array_equal(sitk.GetArrayFromImage(got.instances), sitk.GetArrayFromImage(ref.instances))
    assert run_key(with_floor(ckpt, 0.9)) == run_key(ckpt)
    assert run_key(ckpt) != run_key(dataclasses.replace(ckpt, thresholds={**ckpt.thresholds, "probability": 0.3}))
    assert run_key(ckpt) != run_key(dataclasses.replace(ckpt, inference={**ckpt.inference, "frame_relook_from": 0.1}))


def test_the_cached_run_is_keyed_by_the_typing_constants(monkeypatch):
    """Cached detections carry the types the frame measurements gave: another displaced threshold (or any
    measuring constant) must run again, not read types made with the old one."""
    from RibFracSegLib import defaults

    ckpt = checkpoint("test_pointwise", patch=32, hu_window=(1500.0, 3000.0), gain=20.0, bias=0.0)
    key = run_key(ckpt)
    for name, value in (("FRAME_DISPLACED_STEP_MM", 9.0), ("FRAME_BREAK_MIN_DEFICIT", 0.5),
                        ("FRAME_SEGMENTAL_MAX_MM", 10.0)):
        with monkeypatch.context() as m:
            m.setattr(defaults, name, value)
            assert run_key(ckpt) != key, name
    assert run_key(ckpt) == key


def test_a_floor_on_the_cached_run_filters_the_frames_detections_only(phantom):
    """A cached rib-frame run holds the fallback's detections at the fallback's own floor: a frame
    floor leaves them, and drops the frame's below it (ids renumbered, instances erased to match)."""
    from RibFracSegLib.first_stage import StageResult, above_floor

    image, _ = phantom
    labels = np.zeros(image.GetSize()[::-1], np.uint16)
    labels[FALSE_BOX] = 1
    labels[10:14, 10:14, 10:14] = 2
    dets = [dataclasses.replace(_detection(1, 0.2, labels == 1), source="frame"),
            dataclasses.replace(_detection(2, 0.2, labels == 2), source="fallback")]
    instances = sitk.GetImageFromArray(labels)
    instances.CopyInformation(image)
    got = above_floor(StageResult(dets, instances, {}), 0.5)
    assert [(d.id, d.source) for d in got.detections] == [(1, "fallback")]
    left = sitk.GetArrayFromImage(got.instances)
    assert (left[10:14, 10:14, 10:14] == 1).all() and left.sum() == 64

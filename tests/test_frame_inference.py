"""Detection in the rib frame: windows along each straightened rib, written back onto the CT grid,
bone no frame covers through the sliding window, and "ct" checkpoints untouched.

The network is a known function (inference_helpers' `test_pointwise`, logit = 20 x): a marker HU
that only the checkpoint's window lets through fires, everything else stays at 0, so a mark must
come back where it was painted, whatever the storage order.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from RibFracSegLib import defaults, frame_coverage, frame_inference
from RibFracSegLib.checkpoint import build_model, load_checkpoint, save_checkpoint
from RibFracSegLib.detections import Detection
from RibFracSegLib.errors import Cancelled
from RibFracSegLib.first_stage import first_confidence
from RibFracSegLib.frame_inference import floor_odds
from RibFracSegLib.inference import _Runner, fracture_cells, segment_ct
from RibFracSegLib.networks import register_network
from RibFracSegLib.orientation import canonical_volume
from RibFracSegLib.phantom import PhantomParams, generate_phantom, rib_labels_from_phantom
from RibFracSegLib.postprocess import PostprocessParams
from RibFracSegLib.preprocess import block_any
from RibFracSegLib.ribs.frame_build import rib_frames
from RibFracSegLib.ribs.labels import RibLabels
from RibFracSegLib.sliding_window import PatchGrid, keep_mask
from RibFracSegLib.window_cover import in_cores

from inference_helpers import checkpoint

torch.set_num_threads(1)
MARKER_HU = 3000
BONE_HU = 300.0
HALF_MM, VOXEL_MM = 7.2, 0.6  # frames of 25 x 25 voxels across; windows 24 wide (as 48 of 51 in the contract)
BASE = dict(shape=(150, 170, 110), spacing=(2.0, 1.8, 3.0), fov="thorax", seed=21)
POST = PostprocessParams(remove_spine=False, min_volume_mm3=0.0)
FALLBACK_P = 0.7
END_MM = frame_inference.frame_end_mm(checkpoint("test_pointwise", patch=32))  # frames' run-on past the traced ends


def marker_checkpoint(space: str = "ct", fallback: str = "shipped"):
    """logit = 20 x on the window (1500, 3000): p > 0.5 exactly where the HU read exceeds 2250."""
    ckpt = checkpoint("test_pointwise", patch=32, hu_window=(1500.0, 3000.0), gain=20.0, bias=0.0)
    if space == "rib_frame":
        ckpt.patch_size = (32, 24, 24)
        ckpt.preprocessing.update(space="rib_frame", frame_voxel_mm=VOXEL_MM, frame_half_mm=HALF_MM)
        ckpt.inference = {"fallback": fallback}
    return ckpt


class Recorder:
    """A fallback that records the windows it was handed and answers `p` in them."""

    def __init__(self, p: float = 0.0):
        self.boxes, self.p = None, p

    def __call__(self, boxes, blocks, progress):
        self.boxes = list(boxes)
        for box in boxes:
            blocks.append((box, np.full([b.stop - b.start for b in box], self.p, np.float32)))


def held_by_windows(volume, mask, boxes, patch=32):
    """Does every voxel of the input-grid `mask` lie in the core of one of `boxes` (canonical)?"""
    return in_cores(np.argwhere(volume.to_canonical(mask)), boxes, volume.array.shape,
                    frame_coverage.fallback_margin((patch,) * 3)).all()


def run_frames(image, ribs, ckpt, recorder=None, **kwargs):
    volume = canonical_volume(image)
    cells, rule = fracture_cells(volume, ribs, BONE_HU)
    recorder = recorder or Recorder()
    return frame_inference.frame_probability(
        image, volume, ribs, ckpt, _Runner(build_model(ckpt), torch.device("cpu"), "fp32"),
        frame_inference.Fallback((32, 32, 32), 0.5, recorder), cells=cells, rule=rule, bone_hu=BONE_HU, **kwargs)


def painted(image, ijk_lo, size=3):
    hu = sitk.GetArrayFromImage(image)
    i, j, k = ijk_lo
    hu[k:k + size, j:j + size, i:i + size] = MARKER_HU
    out = sitk.GetImageFromArray(hu)
    out.CopyInformation(image)
    return out


@pytest.mark.parametrize("orientation", ["LPS", "RAS", "oblique"])
def test_a_mark_in_the_frame_comes_back_on_its_ct_voxels(orientation):
    case = generate_phantom(PhantomParams(orientation=orientation, n_fractures=0, **BASE))
    ribs = rib_labels_from_phantom(case)
    rib = ribs.by_name("L6")
    centre = rib.centreline_lps[len(rib.centreline_lps) // 2] + [2.0, 0.0, 2.0]  # off the centreline: a flip moves it
    lo = np.rint(case.image.TransformPhysicalPointToContinuousIndex(centre.tolist())).astype(int) - 1
    image = painted(case.image, lo)
    result = run_frames(image, ribs, marker_checkpoint("rib_frame"), keep_coverage=True)
    assert result.frames == 24 and result.windows > 24
    prob = result.probability
    spacing = np.array(image.GetSpacing())
    block = np.zeros(prob.shape, bool)
    block[lo[2]:lo[2] + 3, lo[1]:lo[1] + 3, lo[0]:lo[0] + 3] = True
    fired = prob > 0.5
    assert fired.any() and prob[tuple(lo[::-1] + 1)] > 0.99  # the block's centre voxel
    # the mark comes back where it was painted: its centre within half a voxel (mm) on every axis
    def centre_mm(mask, weights=None):
        kji = np.argwhere(mask)
        w = None if weights is None else weights[mask]
        return np.average(kji[:, ::-1], axis=0, weights=w) * spacing
    error = np.abs(centre_mm(fired, prob) - centre_mm(block))
    assert np.all(error < spacing / 2), (orientation, error)
    # and nowhere else: nothing fires two voxels beyond the block
    from scipy import ndimage
    assert not (fired & ~ndimage.binary_dilation(block, iterations=2)).any()
    assert result.covered_bone[block].all() and result.covered_bone.mean() < 0.2
    # only the sections near the mark were written back (the frames read 0 elsewhere)
    assert 0 < result.sections_written < 0.05 * result.sections


def bone_coverage(image, ribs, cells):
    """Independently of the write-back: which bone voxels (HU > BONE_HU in the rule's blocks) lie in
    some frame (`RibFrame.ct_to_index` finite), as a canonical mask of uncovered bone."""
    volume = canonical_volume(image)
    hu = sitk.GetArrayViewFromImage(image)
    cell_mask = volume.to_input(np.kron(cells, np.ones((4, 4, 4), bool))[tuple(slice(0, n) for n in volume.array.shape)])
    bone = (hu > BONE_HU) & cell_mask
    kji = np.argwhere(bone)
    inside = np.zeros(len(kji), bool)
    for frame in rib_frames(ribs.ribs, voxel_mm=VOXEL_MM, half_mm=HALF_MM, end_mm=END_MM):
        inside |= np.isfinite(frame.ct_to_index(kji[:, ::-1].astype(float), image)[:, 0])
    uncovered = np.zeros(hu.shape, bool)
    uncovered[tuple(kji[~inside].T)] = True
    return uncovered, int(bone.sum())


def test_bone_of_a_rib_not_found_goes_through_the_fallback():
    case = generate_phantom(PhantomParams(orientation="LPI", n_fractures=0, **BASE))
    truth = rib_labels_from_phantom(case)
    missing = truth.by_name("R7")
    ribs = dataclasses.replace(truth, ribs=[r for r in truth.ribs if r is not missing])
    image, volume = case.image, canonical_volume(case.image)
    cells, rule = fracture_cells(volume, ribs, BONE_HU)
    assert rule.startswith("bone (rib set incomplete")
    recorder = Recorder(FALLBACK_P)
    result = run_frames(image, ribs, marker_checkpoint("rib_frame"), recorder, keep_coverage=True)
    uncovered, bone = bone_coverage(image, ribs, cells)
    assert result.bone_voxels == bone
    assert result.uncovered_bone_voxels == uncovered.sum()
    voxel_mm3 = float(np.prod(image.GetSpacing()))
    assert result.uncovered_bone_mm3 == pytest.approx(uncovered.sum() * voxel_mm3)
    assert result.uncovered_bone_percent == pytest.approx(100.0 * uncovered.sum() / bone)
    assert 5.0 < result.uncovered_bone_percent < 95.0  # the spine, scapulae, sternum and R7 are in no frame
    # the fallback's windows hold every uncovered voxel in their core, far fewer than the grid's patches
    #   touching that bone (the grid: up to 8 per voxel)
    assert recorder.boxes == result.fallback_boxes and held_by_windows(volume, uncovered, recorder.boxes)
    grid = PatchGrid.build(volume.array.shape, (32, 32, 32), 0.5)
    assert result.fallback_patches == len(recorder.boxes) < 0.5 * sum(keep_mask(grid, block_any(
        volume.to_canonical(uncovered))))
    rib_bone = (sitk.GetArrayViewFromImage(truth.labels) == missing.label) & (sitk.GetArrayViewFromImage(image) > BONE_HU)
    assert (uncovered[rib_bone]).mean() > 0.5  # its neighbours' frames reach a little of it, no more
    # the fallback's answer where no frame reaches, the frames' (0: no marker) where one does
    assert np.all(result.probability[uncovered] == FALLBACK_P)
    assert np.all(result.probability[result.covered_bone] == 0.0)
    # with the rib found, its frame covers its bone; with the whole set, bone counts near the ribs only
    whole = run_frames(image, truth, marker_checkpoint("rib_frame"), keep_coverage=True)
    assert (whole.covered_bone[rib_bone]).mean() > 0.95
    near_cells, near_rule = fracture_cells(volume, truth, BONE_HU)
    uncovered_near, bone_near = bone_coverage(image, truth, near_cells)
    assert near_rule == whole.rule == "ribs" and whole.bone_voxels == bone_near < bone
    assert whole.uncovered_bone_voxels == uncovered_near.sum() < result.uncovered_bone_voxels


def marked_fractures(case):
    hu = sitk.GetArrayFromImage(case.image)
    hu[sitk.GetArrayViewFromImage(case.fracture_labels) > 0] = MARKER_HU
    image = sitk.GetImageFromArray(hu)
    image.CopyInformation(case.image)
    return image


def test_segment_ct_with_a_frame_checkpoint_and_a_ct_checkpoint(tmp_path, monkeypatch):
    case = generate_phantom(PhantomParams(orientation="RAS", n_fractures=3, **BASE))
    image, truth = marked_fractures(case), rib_labels_from_phantom(case)
    spacing = np.array(image.GetSpacing())
    # a "ct" checkpoint runs the sliding window exactly as before: the frame code is never called
    calls = []
    real = frame_inference.frame_probability
    monkeypatch.setattr("RibFracSegLib.inference.frame_probability", lambda *a, **k: calls.append(1) or real(*a, **k))
    ct = segment_ct(image, marker_checkpoint("ct"), ribs=truth, overlap=0.5, precision="fp32", postprocess=POST)
    explicit = marker_checkpoint("ct")
    explicit.preprocessing["space"] = "ct"
    again = segment_ct(image, explicit, ribs=truth, overlap=0.5, precision="fp32", postprocess=POST)
    assert calls == [] and ct.rib_frames is None and ct.notes == [] and ct.skip_rule == "ribs"
    assert ct.detections == again.detections
    assert np.array_equal(sitk.GetArrayViewFromImage(ct.instances) > 0,
                          sitk.GetArrayViewFromImage(case.fracture_labels) > 0)
    # a frame checkpoint: the same fractures, on their ribs; the fallback (a "ct" checkpoint file) finds
    # the one on a rib the rib step missed
    fallback = save_checkpoint(tmp_path / "fallback.pt", marker_checkpoint("ct"))
    missed = case.fractures[0].rib
    ribs = dataclasses.replace(truth, ribs=[r for r in truth.ribs if r.name != missed])
    progress, polls = [], []
    framed = segment_ct(image, marker_checkpoint("rib_frame", str(fallback)), ribs=ribs, overlap=0.5,
                        precision="fp32", postprocess=POST, progress=lambda d, t: progress.append((d, t)))
    assert calls == [1] and framed.skip_rule.startswith("rib frames; where no frame reaches: bone (rib set incomplete")
    assert framed.rib_frames["frames"] == 23 and "mm^3 of bone" in framed.notes[0]
    assert framed.rib_frames["uncovered_bone_mm3"] > 0 and framed.rib_frames["fallback_patches"] > 0
    for t in case.fractures:
        near = [d for d in framed.detections if np.all(np.abs(np.array(d.centroid_ijk) - t.center_ijk) * spacing
                                                          < spacing)]
        assert len(near) == 1, (t.rib, [d.centroid_ijk for d in framed.detections])
        assert near[0].rib == t.rib or t.rib == missed
    assert len(framed.detections) == len(case.fractures)
    done = [d for d, _ in progress]
    assert done == sorted(done) and progress[-1][0] == progress[-1][1] > framed.rib_frames["windows"]
    # cancel stops the frame loop
    with pytest.raises(Cancelled):
        segment_ct(image, marker_checkpoint("rib_frame", str(fallback)), ribs=truth, precision="fp32",
                   cancel=lambda: polls.append(1) or len(polls) > 3)
    assert len(polls) == 4


def test_with_a_complete_rib_set_the_fallback_examines_rib_bone_only():
    """A complete set: of the bone no frame reaches, the fallback gets what is labelled rib (here the
    anterior end of L6, whose traced centreline stops short); spine, sternum and scapulae are counted
    as unexamined, in mm^3."""
    case = generate_phantom(PhantomParams(orientation="LPI", n_fractures=0, **BASE))
    truth = rib_labels_from_phantom(case)
    short = truth.by_name("L6")
    cut = int(0.6 * len(short.centreline_lps))
    ribs = dataclasses.replace(truth, ribs=[dataclasses.replace(r, centreline_lps=r.centreline_lps[:cut])
                                            if r is short else r for r in truth.ribs])
    assert ribs.complete()
    image, volume = case.image, canonical_volume(case.image)
    cells, rule = fracture_cells(volume, ribs, BONE_HU)
    recorder = Recorder(FALLBACK_P)
    result = run_frames(image, ribs, marker_checkpoint("rib_frame"), recorder, keep_coverage=True)
    uncovered, bone = bone_coverage(image, ribs, cells)
    labelled = sitk.GetArrayViewFromImage(ribs.labels) > 0
    examined = uncovered & labelled
    assert rule == result.rule == "ribs" and result.bone_voxels == bone
    assert result.uncovered_bone_voxels == uncovered.sum()
    assert result.fallback_bone_voxels == examined.sum()
    assert result.unexamined_bone_voxels == (uncovered & ~labelled).sum()
    # the cut-off end of L6 is rib-labelled bone beyond its frame: most of the examined bone
    end = (sitk.GetArrayViewFromImage(ribs.labels) == short.label) & uncovered
    assert end.sum() > 0.5 * examined.sum() > 0
    # far more bone lies in no frame than the fallback examines (the spine and sternum are not ribs)
    assert result.unexamined_bone_voxels > 2 * result.fallback_bone_voxels
    assert held_by_windows(volume, examined, recorder.boxes)
    voxel_mm3 = float(np.prod(image.GetSpacing()))
    summary = result.summary()
    assert summary["unexamined_bone_mm3"] == pytest.approx(round((uncovered & ~labelled).sum() * voxel_mm3, 1))
    assert summary["fallback_bone_mm3"] == pytest.approx(round(examined.sum() * voxel_mm3, 1))
    assert f"{(uncovered & ~labelled).sum() * voxel_mm3:.0f} mm^3 of bone was not examined" in result.note()
    # the rib end gets the fallback's answer; unexamined bone outside the fallback's windows does not
    assert np.all(result.probability[examined] == FALLBACK_P)
    windows = np.zeros(volume.array.shape, bool)
    for box in recorder.boxes:
        windows[box] = True
    outside = ~volume.to_input(windows)
    assert (uncovered & ~labelled & outside).any() and np.all(result.probability[uncovered & outside] == 0.0)
    # the same rib set made incomplete (L6 unnumbered, R6 gone): all bone in no frame goes to the fallback
    partial = dataclasses.replace(ribs, ribs=[r for r in ribs.ribs if r.name != "R6"])
    assert not partial.complete()
    incomplete = run_frames(image, partial, marker_checkpoint("rib_frame"))
    assert incomplete.fallback_bone_voxels == incomplete.uncovered_bone_voxels > result.uncovered_bone_voxels
    assert incomplete.unexamined_bone_voxels == 0 and "not examined" not in incomplete.note()


@register_network("test_crop_mean")
class CropMean(nn.Module):
    """A second stage whose fracture probability follows the crop's mean (normalised): any shift of the
    crop's centre changes it, so equal confidences mean the same fracture scored the same way."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3, 4))
        return torch.stack([-3 * m, 0 * m, 0 * m, 0 * m, 0 * m], dim=1)


def odds_over(confidence: float, floor: float) -> float:
    return 1.0 / (1.0 + (floor / (1.0 - floor)) / (confidence / (1.0 - confidence)))


def test_frame_confidences_crowded_above_the_floor_are_spread_in_order_and_the_fallbacks_kept():
    """Peaks 0.9990 and 0.9998 over a floor of 0.986: both above RibFrac's last FROC threshold (0.99) as
    they are; reported over the floor's odds they are 0.934 and 0.986, the floor itself 0.5."""
    peaks = [0.986, 0.9990, 0.9998, 0.9]
    dets = [Detection(id=i, confidence=p, voxel_count=10, volume_mm3=10.0, centroid_ijk=(0, 0, 0), center_ras=(0, 0, 0),
                      center_lps=(0, 0, 0), bbox_ijk=((0, 0, 0), (1, 1, 1)), source="fallback" if i == 4 else "frame")
            for i, p in enumerate(peaks, 1)]
    reported = floor_odds(dets, 0.986)
    assert [round(d.confidence, 3) for d in reported] == [0.5, 0.934, 0.986, 0.9]
    assert [d.network_confidence for d in reported] == [0.986, 0.9990, 0.9998, None]
    assert reported[3] == dets[3]  # the fallback's detection is its own classifier's business


def with_classifier(ckpt):
    ckpt.candidate_classifier = {"arch": "test_crop_mean", "hparams": {}, "state_dict": {}, "crop_voxels": 8,
                                 "crop_mm": 3.0, "min_probability": 0.0, "min_type_probability": 0.4}
    return ckpt


def test_a_fallback_detection_is_scored_by_the_fallbacks_second_stage(tmp_path):
    case = generate_phantom(PhantomParams(orientation="RAS", n_fractures=3, **BASE))
    image, truth = marked_fractures(case), rib_labels_from_phantom(case)
    spacing = np.array(image.GetSpacing())
    fallback = save_checkpoint(tmp_path / "fallback.pt", with_classifier(marker_checkpoint("ct")))
    ct = segment_ct(image, load_checkpoint(fallback), ribs=truth, overlap=0.5, precision="fp32", postprocess=POST)
    missed = case.fractures[0].rib
    ribs = dataclasses.replace(truth, ribs=[r for r in truth.ribs if r.name != missed])
    framed = segment_ct(image, marker_checkpoint("rib_frame", str(fallback)), ribs=ribs, overlap=0.5,
                        precision="fp32", postprocess=POST)
    assert len(ct.detections) == len(framed.detections) == len(case.fractures)

    def at(result, t):
        near = [d for d in result.detections
                if np.all(np.abs(np.array(d.centroid_ijk) - t.center_ijk) * spacing < spacing)]
        assert len(near) == 1
        return near[0]

    for t in case.fractures:
        c, f = at(ct, t), at(framed, t)
        assert c.network_confidence is not None and abs(c.confidence - c.network_confidence) > 0.05
        if t.rib == missed:  # found by the fallback: re-scored by the shipped model's classifier, as on the CT path
            assert f.centroid_ijk == pytest.approx(c.centroid_ijk)
            assert f.confidence == pytest.approx(c.confidence, abs=1e-6)
            assert f.network_confidence == pytest.approx(c.network_confidence, abs=1e-3)
        else:  # found in a frame: the frame checkpoint has no classifier; reported over its floor's odds
            assert f.network_confidence is not None and f.confidence > 0.5
            assert f.confidence == pytest.approx(odds_over(f.network_confidence, defaults.MIN_CONFIDENCE), abs=1e-6)
            assert f.label_code == f.frame_code  # typed in its rib's frame, not by a classifier
    labels = sitk.GetArrayViewFromImage(framed.instances)
    assert sorted(np.unique(labels[labels > 0]).tolist()) == [d.id for d in framed.detections] == [1, 2, 3]
    # a fallback floor of the frame checkpoint's own (calibrate-frame's) above that detection drops it alone
    on_missed = at(framed, next(t for t in case.fractures if t.rib == missed))
    strict = marker_checkpoint("rib_frame", str(fallback))
    strict.inference["fallback_min_probability"] = on_missed.confidence + 0.01
    stricter = segment_ct(image, strict, ribs=ribs, overlap=0.5, precision="fp32", postprocess=POST)
    assert sorted(d.centroid_ijk for d in stricter.detections) == \
        sorted(d.centroid_ijk for d in framed.detections if d.source == "frame")
    assert frame_inference.fallback_classifier(strict).min_probability == pytest.approx(on_missed.confidence + 0.01)
    strict.inference["fallback_min_probability"] = -1.0  # never below the classifier's own floor
    assert frame_inference.fallback_classifier(strict).min_probability == 0.0
    # the benchmarks' cached path (first stage stored, second stage after) scores them the same way
    from RibFracSegLib.first_stage import StageResult, fallback_classifier, second_stage

    ckpt = marker_checkpoint("rib_frame", str(fallback))
    first = segment_ct(image, ckpt, ribs=ribs, overlap=0.5, precision="fp32", postprocess=POST,
                       classify_candidates=False)
    cached = second_stage(image, StageResult(first.detections, first.instances, {}), None, fallback_classifier(ckpt),
                          defaults.MIN_CONFIDENCE)
    assert [(d.source, d.centroid_ijk, round(d.confidence, 5)) for d in cached.detections] == \
        [(d.source, d.centroid_ijk, round(d.confidence, 5)) for d in framed.detections]
    assert sum(d.source == "fallback" and d.network_confidence is not None for d in cached.detections) == 1


def test_the_frame_floor_and_the_fallback_floor_each_hold_their_own_detections(tmp_path):
    """The fracture on the rib the rib step missed is the fallback's, the others the frames'. A frame
    floor no detection reaches (1.01) leaves exactly the fallback's, kept at the fallback checkpoint's
    floor; that floor at 1.01 leaves exactly the frames'."""
    case = generate_phantom(PhantomParams(orientation="RAS", n_fractures=3, **BASE))
    image, truth = marked_fractures(case), rib_labels_from_phantom(case)
    spacing = np.array(image.GetSpacing())
    missed = case.fractures[0].rib
    ribs = dataclasses.replace(truth, ribs=[r for r in truth.ribs if r.name != missed])
    on_missed = [t for t in case.fractures if t.rib == missed]

    def run(frame_floor, fallback_floor):
        fallback = marker_checkpoint("ct")
        fallback.thresholds["min_confidence"] = fallback_floor
        path = save_checkpoint(tmp_path / f"fallback{fallback_floor}.pt", fallback)
        return segment_ct(image, marker_checkpoint("rib_frame", str(path)), ribs=ribs, overlap=0.5, precision="fp32",
                          postprocess=dataclasses.replace(POST, min_confidence=frame_floor)).detections

    def on(detections, fractures):
        return all(any(np.all(np.abs(np.array(d.centroid_ijk) - t.center_ijk) * spacing < spacing)
                       for d in detections) for t in fractures)

    both = run(0.0, 0.0)
    assert len(both) == len(case.fractures) and on(both, case.fractures)
    assert sorted(d.source for d in both) == sorted(["fallback"] * len(on_missed)
                                                    + ["frame"] * (len(case.fractures) - len(on_missed)))
    fallback_only = run(1.01, 0.0)
    assert [d.source for d in fallback_only] == ["fallback"] * len(on_missed) and on(fallback_only, on_missed)
    frames_only = run(0.0, 1.01)
    assert [d.source for d in frames_only] == ["frame"] * (len(case.fractures) - len(on_missed))
    assert on(frames_only, [t for t in case.fractures if t.rib != missed])
    assert [d.id for d in frames_only] == list(range(1, len(frames_only) + 1))


def test_a_frame_detection_reads_its_peak_and_a_fallback_detection_its_mean(tmp_path):
    """inference["confidence"] "peak": each frame detection's confidence is the highest probability
    on its voxels, the fallback's the mean (its own checkpoint's rule); "mean": every one the mean."""
    case = generate_phantom(PhantomParams(orientation="RAS", n_fractures=3, **BASE))
    hu = sitk.GetArrayFromImage(case.image)  # marks of 2300-2450 HU: probabilities 0.79-1.0, not all alike
    broken = sitk.GetArrayViewFromImage(case.fracture_labels) > 0
    hu[broken] = 2300 + 150 * np.random.default_rng(0).random(int(broken.sum()))
    image, truth = sitk.GetImageFromArray(hu), rib_labels_from_phantom(case)
    image.CopyInformation(case.image)
    missed = case.fractures[0].rib
    ribs = dataclasses.replace(truth, ribs=[r for r in truth.ribs if r.name != missed])
    fallback = save_checkpoint(tmp_path / "fallback.pt", marker_checkpoint("ct"))
    for rule in ("peak", "mean"):
        ckpt = marker_checkpoint("rib_frame", str(fallback))
        ckpt.inference["confidence"] = rule
        result = segment_ct(image, ckpt, ribs=ribs, overlap=0.5, precision="fp32", postprocess=POST,
                            return_probability=True)
        labels = sitk.GetArrayViewFromImage(result.instances)
        prob = sitk.GetArrayViewFromImage(result.probability)
        assert {d.source for d in result.detections} == {"frame", "fallback"}
        for d in result.detections:
            values = prob[labels == d.id]
            expected = values.max() if (rule == "peak" and d.source == "frame") else values.mean()
            assert first_confidence(d) == pytest.approx(float(expected), abs=1e-6)  # reported: over the floor's odds
            assert values.max() - values.mean() > 0.01  # the two rules differ here
    with pytest.raises(Exception, match="'mean' or 'peak'"):
        ckpt.inference["confidence"] = "top"
        segment_ct(image, ckpt, ribs=ribs, precision="fp32", postprocess=POST)


def test_frames_reach_no_further_across_than_a_window_sees():
    """A checkpoint run with windows narrower than its trained frames (the shipped one slides 32 x 32
    sections across): the frames are cut to the window, so no bone counts as covered that no window saw."""
    ckpt = checkpoint("test_pointwise")
    ckpt.preprocessing.update(space="rib_frame", frame_voxel_mm=0.6, frame_half_mm=15.0)
    for across, half_mm, width in ((48, 14.4, 49), (32, 9.6, 33), (64, 15.0, 51)):
        ckpt = dataclasses.replace(ckpt, patch_size=(64, across, across))
        voxel, half = frame_inference.frame_geometry(ckpt)
        assert voxel == 0.6 and half == pytest.approx(half_mm)
        assert 2 * int(round(half / voxel)) + 1 == width  # the frame's sections: the window's width and one

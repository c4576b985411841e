"""Frame detections beyond where the frame network learned breaks ("rib end": rib heads at their joints,
costochondral junctions) are scored by the fallback checkpoint's classifier, not trusted at the frame floor.
Phantom ribs with marked fractures and a network that fires exactly on the marks, so positions, sources
and confidences are known."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib import defaults, frame_inference
from RibFracSegLib.checkpoint import load_checkpoint, save_checkpoint
from RibFracSegLib.first_stage import StageResult, fallback_classifier, second_stage
from RibFracSegLib.inference import segment_ct
from RibFracSegLib.phantom import PhantomParams, generate_phantom, rib_labels_from_phantom
from RibFracSegLib.ribs.assign import at_rib_end, break_support, rib_lengths
from RibFracSegLib.ribs.labels import Rib
from RibFracSegLib.simulate.plan import draw_arc

from test_frame_inference import BASE, POST, marked_fractures, marker_checkpoint, odds_over, with_classifier


def test_the_simulator_places_breaks_only_inside_the_support():
    class Frame:
        length_mm = 200.0

    rng = np.random.default_rng(0)
    lo, hi = break_support(200.0)
    assert (lo, hi) == pytest.approx((30.0, 170.0))  # 15 % of 200 mm beats the 25 mm head clearance
    assert break_support(100.0) == pytest.approx((25.0, 85.0))
    arcs = [t for kind in (1, 2, 3, 4) for _ in range(200) for t in draw_arc(Frame(), kind, rng)]
    assert lo <= min(arcs) < lo + 2 and hi - 2 < max(arcs) <= hi


def test_a_frame_detection_at_a_rib_end_is_scored_by_the_fallbacks_classifier(tmp_path, monkeypatch):
    case = generate_phantom(PhantomParams(orientation="RAS", n_fractures=3, **BASE))
    image, ribs = marked_fractures(case), rib_labels_from_phantom(case)
    fallback = save_checkpoint(tmp_path / "fallback.pt", with_classifier(marker_checkpoint("ct")))
    ct = segment_ct(image, load_checkpoint(fallback), ribs=ribs, overlap=0.5, precision="fp32", postprocess=POST)

    def run(ckpt, **kwargs):
        return segment_ct(image, ckpt, ribs=ribs, overlap=0.5, precision="fp32", postprocess=POST, **kwargs)

    inside = run(marker_checkpoint("rib_frame", str(fallback)))
    assert [d.source for d in inside.detections] == ["frame"] * 3  # all three inside the simulator's support
    # the head clearance moved just past the fracture nearest its rib's head: that one alone is a rib end
    nearest = min(inside.detections, key=lambda d: d.rib_arc_mm)
    others = sorted(d.rib_arc_mm for d in inside.detections if d.id != nearest.id)
    monkeypatch.setattr(defaults, "FRAME_RIB_END_MARGIN_MM", 0.0)
    monkeypatch.setattr(defaults, "SIMULATION_HEAD_FRACTION", 0.0)
    monkeypatch.setattr(defaults, "SIMULATION_HEAD_CLEAR_MM", (nearest.rib_arc_mm + others[0]) / 2)
    ended = run(marker_checkpoint("rib_frame", str(fallback)))
    by_arc = {d.rib_arc_mm: d for d in ended.detections}
    assert sorted(by_arc) == sorted(d.rib_arc_mm for d in inside.detections)
    end = by_arc[nearest.rib_arc_mm]
    assert end.source == frame_inference.RIB_END
    same = [c for c in ct.detections if np.allclose(c.centroid_ijk, end.centroid_ijk, atol=1.0)]
    assert len(same) == 1 and abs(same[0].confidence - end.network_confidence) > 0.05
    # the classifier's on the CT path (its crop centred on a centroid a voxel's fraction away), not the floor's odds
    assert end.confidence == pytest.approx(same[0].confidence, abs=1e-3)
    assert abs(end.confidence - odds_over(end.network_confidence, defaults.MIN_CONFIDENCE)) > 0.05
    for d in ended.detections:
        if d is not end:
            assert d.source == "frame"
            assert d.confidence == pytest.approx(odds_over(d.network_confidence, defaults.MIN_CONFIDENCE), abs=1e-6)
    # the fallback's floor (calibrate-frame's) just above it drops the rib end alone
    strict = marker_checkpoint("rib_frame", str(fallback))
    strict.inference["fallback_min_probability"] = end.confidence + 0.01
    assert sorted(d.rib_arc_mm for d in run(strict).detections) == others
    # the benchmarks' cached path gives the same
    ckpt = marker_checkpoint("rib_frame", str(fallback))
    first = run(ckpt, classify_candidates=False)
    assert [d.source for d in first.detections].count(frame_inference.RIB_END) == 1
    cached = second_stage(image, StageResult(first.detections, first.instances, {}), None, fallback_classifier(ckpt),
                          defaults.MIN_CONFIDENCE)
    assert [(d.source, round(d.confidence, 5)) for d in cached.detections] == \
        [(d.source, round(d.confidence, 5)) for d in ended.detections]
    labels = sitk.GetArrayViewFromImage(ended.instances)
    assert sorted(np.unique(labels[labels > 0]).tolist()) == [1, 2, 3]
    # a margin reaching the nearest one's arc makes it a frame detection again
    monkeypatch.setattr(defaults, "FRAME_RIB_END_MARGIN_MM", defaults.SIMULATION_HEAD_CLEAR_MM - nearest.rib_arc_mm + 0.1)
    assert [d.source for d in run(marker_checkpoint("rib_frame", str(fallback))).detections] == ["frame"] * 3


def test_a_rib_cut_short_by_a_break_is_measured_by_its_partner_and_its_tips_are_no_ends():
    """A trace that stops at a displaced break (R5: 150 mm of a 260 mm rib) would put the break at its end:
    the support reads the longer of the pair, unnumbered ribs their own; and within the margin of a
    trace's own tips (head or anterior) a detection may be the break that stopped it, so is no rib end,
    unless the trace is as long as its partner's: then its anterior tip is the costochondral end."""
    def rib(side, number, length):
        line = np.zeros((11, 3))
        line[:, 0] = np.linspace(0, length, 11)
        return Rib(side=side, number=number, centreline_lps=line)

    lengths = rib_lengths([rib("R", 5, 150.0), rib("L", 5, 260.0), rib("L", 6, 270.0), rib("R", None, 90.0),
                           rib("R", 7, 268.0), rib("L", 7, 266.0)])
    assert lengths == {"R5": pytest.approx((150.0, 260.0)), "L5": pytest.approx((260.0, 150.0)),
                       "L6": (pytest.approx(270.0), None), "unnumbered R": (pytest.approx(90.0), None),
                       "R7": pytest.approx((268.0, 266.0)), "L7": pytest.approx((266.0, 268.0))}
    margin = defaults.FRAME_RIB_END_MARGIN_MM
    assert margin == 6.0
    # L6 (no partner found): support 40.5 .. 229.5 mm; ends are 6 .. 34.5 and 235.5 .. 264 mm
    ends = [a for a in np.arange(0.0, 270.5, 0.5) if at_rib_end(a, *lengths["L6"])]
    assert min(ends) == 6.5 and max(a for a in ends if a < 100) == 34.0
    assert min(a for a in ends if a > 100) == 236.0 and max(ends) == 263.5
    # R7 and L7, a whole pair (support of the longer, 268 mm: 40.2 .. 227.8): each anterior end runs to its tip
    for name, own in (("R7", 268.0), ("L7", 266.0)):
        ends = [a for a in np.arange(0.0, own + 0.5, 0.5) if at_rib_end(a, *lengths[name])]
        assert min(ends) == 6.5 and max(a for a in ends if a < 100) == 34.0
        assert min(a for a in ends if a > 100) == 234.0 and max(ends) == own
    # R5, cut at 150 mm: its break at 148 mm is inside the pair's support, not an end; nor on a rib with no partner
    assert not at_rib_end(148.0, *lengths["R5"]) and not at_rib_end(148.0, 150.0, None)
    assert at_rib_end(148.0, 150.0, 152.0)  # as long as its partner (less the margin): its tip is an end
    assert at_rib_end(12.0, *lengths["R5"])  # a rib head's joint

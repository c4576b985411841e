"""The rib-unfolded view on phantoms with known ribs and fractures: mapping both ways, fractures at
the truth's rib and arc length, the layout's rows, missing and unnumbered ribs."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib import defaults
from RibFracSegLib.detections import Detection
from RibFracSegLib.geometry import lps_to_ras
from RibFracSegLib.phantom import PhantomParams, detections_from_phantom, generate_phantom, rib_labels_from_phantom
from RibFracSegLib.phantom.rib_truth import truth_arc_mm
from RibFracSegLib.ribs import Rib, RibLabels, rib_label_value
from RibFracSegLib.ribs.assign import locate_on_rib
from RibFracSegLib.ribs.unfold import unfold_ribs
from RibFracSegLib.ribs.unfold_marks import map_detections

GRIDS = {"oblique 2.5 mm": dict(shape=(200, 200, 132), spacing=(1.6, 1.6, 2.5), orientation="oblique"),
         "5 mm slices": dict(shape=(200, 200, 66), spacing=(1.6, 1.6, 5.0), orientation="LPS")}


@pytest.fixture(scope="module", params=list(GRIDS))
def chest(request):
    """A whole chest (all 24 ribs in view) with 8 fractures of every kind, unfolded from truth."""
    case = generate_phantom(PhantomParams(fov="thorax", n_fractures=8, seed=11, **GRIDS[request.param]))
    ribs = rib_labels_from_phantom(case)
    return case, ribs, unfold_ribs(case.image, ribs)


def test_phantom_truth_converts_to_our_label_convention(chest):
    case, ribs, _ = chest
    phantom = sitk.GetArrayViewFromImage(case.rib_labels)
    ours = sitk.GetArrayViewFromImage(ribs.labels)
    assert np.array_equal(ours[phantom == 5], np.full((phantom == 5).sum(), rib_label_value("R", 5)))
    assert np.array_equal(ours[phantom == 17], np.full((phantom == 17).sum(), rib_label_value("L", 5)))
    assert sorted(r.name for r in ribs.ribs) == sorted(f"{s}{n}" for s in "LR" for n in range(1, 13))
    for rib in ribs.ribs:  # cut to the bone in view (rib 12 may leave the field of view)
        full = np.linalg.norm(np.diff(case.rib_centerlines_lps[rib.name], axis=0), axis=1).sum()
        assert (150 if rib.number <= 10 else 50) < rib.length_mm <= full + 1e-6, rib.name
        assert rib.voxel_count == int((ours == rib.label).sum())


def test_centreline_point_maps_to_unfolded_and_back_within_one_voxel(chest):
    case, ribs, unfolded = chest
    voxel = min(case.image.GetSpacing())
    for rib in ribs.ribs:
        strip = unfolded.strip(rib.name)
        for point, arc in zip(rib.centreline_lps[::25], rib.arc_mm[::25]):
            pos = unfolded.lps_to_pixel(point)  # nearest rib, not told which
            assert pos.rib == rib.name
            assert abs(pos.arc_mm - arc) < voxel
            assert abs(pos.row - unfolded.centre_row(strip.slot)) < voxel / unfolded.pixel_mm
            back = unfolded.pixel_to_lps(pos.row, pos.col)
            assert np.linalg.norm(np.subtract(back, point)) < voxel, (rib.name, arc)
            ras = unfolded.pixel_to_ras(pos.row, pos.col)
            assert np.allclose(ras, np.array(back) * [-1, -1, 1])
        for across in (-8.0, 6.0):  # off the centreline, in the strip's plane, round trip too
            p, _, _, b = strip.frame_at(0.5 * strip.length_mm)
            pos = unfolded.lps_to_pixel(p + across * b, rib=rib.name)
            assert pos.across_mm == pytest.approx(across, abs=0.05)
            assert np.linalg.norm(np.subtract(unfolded.pixel_to_lps(pos.row, pos.col), p + across * b)) < 0.1


def test_unfolded_pixel_maps_to_ct_and_back(chest):
    _, _, unfolded = chest
    rng = np.random.default_rng(0)
    for strip in unfolded.strips:
        for _ in range(5):
            arc = rng.uniform(5, strip.length_mm - 5)
            row = unfolded.centre_row(strip.slot) + rng.uniform(-20, 20)
            col = unfolded.arc_to_col(strip.side, arc)
            pos = unfolded.lps_to_pixel(unfolded.pixel_to_lps(row, col), rib=strip.name)
            assert (pos.row, pos.col) == pytest.approx((row, col), abs=0.05)
    assert unfolded.pixel_to_lps(unfolded.pitch_px - 1, 10) is None  # the gap between two rows
    assert unfolded.pixel_to_lps(5, unfolded.half_width_px + unfolded.gutter_px // 2) is None  # the spine gutter


def test_phantom_fracture_appears_on_truths_rib_at_truths_arc_length(chest):
    case, ribs, unfolded = chest
    detections = [d.__class__(**{**d.to_dict(), "rib": "none"}) for d in detections_from_phantom(case, ribs)]
    marks = map_detections(unfolded, detections, case.image)  # nearest rib: no rib names given
    displaced = 0
    for f in case.fractures:
        rib = ribs.by_name(f.rib)
        arc = truth_arc_mm(rib.centreline_lps, f.center_lps)
        mark = marks[f.label_id]
        assert mark.rib == f.rib
        assert abs(mark.arc_mm - arc) <= 3.0, (f.rib, mark.arc_mm, arc)
        strip = unfolded.strip(f.rib)
        assert abs(mark.col - unfolded.arc_to_col(strip.side, arc)) <= 3.0 / unfolded.pixel_mm
        r0, c0, r1, c1 = mark.box
        assert r0 <= unfolded.centre_row(strip.slot) <= r1 and c0 <= mark.col <= c1
        if f.kind == "displaced":  # the gap shows: soft tissue where the rib's bone runs elsewhere
            displaced += 1
            band = unfolded.image[mark.box[0]:mark.box[2] + 1]
            col = int(round(mark.col))
            window = np.nanmedian(band[:, col - 6:col + 7], axis=0)
            along = [int(round(unfolded.arc_to_col(strip.side, a))) for a in np.arange(15, strip.length_mm - 15)]
            assert np.nanmin(window) < 200 < 400 < np.nanmedian(np.nanmedian(band[:, along], axis=0))
    assert displaced >= 1


def test_box_of_a_detection_beside_its_rib_stays_on_the_ribs_strip(chest):
    _, ribs, unfolded = chest
    strip = unfolded.strip("L6")
    p, _, _, b = strip.frame_at(80.0)
    point = p + 14.8 * b  # just inside the strip's 15 mm edge: its 8 mm box would reach past it
    det = Detection(5, 0.9, 10, 10.0, (0.0, 0.0, 0.0), lps_to_ras(point), tuple(point), ((0, 0, 0), (0, 0, 0)),
                    rib="L6")
    mark = map_detections(unfolded, [det])[5]
    top = strip.slot * unfolded.pitch_px
    assert mark.across_mm == pytest.approx(14.8, abs=0.05) and mark.distance_mm == pytest.approx(14.8, abs=0.05)
    assert mark.box[0] == top and mark.box[2] - mark.box[0] == pytest.approx(defaults.UNFOLD_MIN_BOX_MM / unfolded.pixel_mm, abs=1)


def test_named_rib_is_kept_and_far_detection_gets_no_mark(chest):
    case, ribs, unfolded = chest
    det = detections_from_phantom(case, ribs)[0]
    marks = map_detections(unfolded, [det], case.image)
    assert marks[det.id].rib == det.rib and abs(marks[det.id].arc_mm - det.rib_arc_mm) < 1.0
    spine = [v for v in case.vertebrae if v.name == "T6"][0]  # in the vertebral body: on no rib
    far = det.__class__(**{**det.to_dict(), "id": 99, "rib": "none", "center_lps": spine.center_lps,
                           "center_ras": spine.center_ras})
    assert map_detections(unfolded, [far])[99] is None


def test_marks_follow_the_rib_steps_own_rule_for_which_rib_and_none(chest):
    _, ribs, unfolded = chest
    rng = np.random.default_rng(1)
    checked = 0
    for rib in ribs.ribs:
        for point in rib.centreline_lps[20:-20:60]:
            offset = rng.normal(size=3)
            offset *= rng.uniform(2, 25) / np.linalg.norm(offset)
            name, arc, _ = locate_on_rib(point + offset, ribs.ribs)
            pos = unfolded.lps_to_pixel(point + offset)
            if abs(pos.distance_mm - defaults.RIB_ASSIGN_MAX_MM) < 0.5:
                continue  # the two measure the distance a little differently right at the threshold
            det = Detection(1, 0.9, 10, 10.0, (0.0, 0.0, 0.0), lps_to_ras(point + offset), tuple(point + offset),
                            ((0, 0, 0), (0, 0, 0)))
            mark = map_detections(unfolded, [det])[1]
            assert (mark is None) == (name == "none")
            if mark is not None:
                assert mark.rib == name and abs(mark.arc_mm - arc) < 2.0
            checked += 1
    assert checked > 50


def test_layout_puts_every_numbered_rib_in_its_row(chest):
    case, ribs, unfolded = chest
    labels = sitk.GetArrayViewFromImage(ribs.labels)
    to_index = case.image.TransformPhysicalPointToIndex
    assert {(s.side, s.slot, s.name, s.status) for s in unfolded.slots} == {
        (side, n - 1, f"{side}{n}", "found") for side in "LR" for n in range(1, 13)}
    for rib in ribs.ribs:
        strip = unfolded.strip(rib.name)
        assert strip.slot == rib.number - 1
        row = unfolded.centre_row(strip.slot)
        head = unfolded.head_col(rib.side)
        if rib.side == "R":  # patient's right on the picture's left, heads at the spine (middle)
            assert head < unfolded.image.shape[1] / 2
            assert np.isnan(unfolded.image[row, head + 1:head + unfolded.gutter_px]).all()
        else:
            assert head > unfolded.image.shape[1] / 2
        assert np.allclose(unfolded.pixel_to_lps(row, head), rib.centreline_lps[0], atol=1e-6)
        # What the row shows is this rib: the CT label under its pixels, and bone HU.
        arcs = np.arange(5, strip.length_mm - 5, 5)
        cols = [unfolded.arc_to_col(rib.side, a) for a in arcs]
        under = [labels[tuple(to_index(unfolded.pixel_to_lps(row, c))[::-1])] for c in cols]
        assert np.mean(np.equal(under, rib.label)) > 0.8, rib.name
        assert np.nanmedian(unfolded.image[row, np.round(cols).astype(int)]) > 300


def test_missing_and_unnumbered_ribs_are_shown_as_such(chest):
    case, ribs, _ = chest
    kept = [r for r in ribs.ribs if r.name != "L7"]
    kept = [Rib(r.side, None, r.centreline_lps) if r.name in ("R11", "R12") else r for r in kept]
    unfolded = unfold_ribs(case.image, RibLabels(ribs.labels, kept))
    status = {(s.side, s.slot): (s.name, s.status) for s in unfolded.slots}
    assert status[("L", 6)] == ("L7", "missing")
    assert status[("R", 10)] == ("R11", "missing")
    assert status[("R", 12)] == status[("R", 13)] == ("R?", "unnumbered")
    assert unfolded.strip("unnumbered R").slot == 12
    assert unfolded.image.shape[0] == 14 * unfolded.pitch_px - unfolded.row_gap_px
    # a fracture on the second unnumbered rib (was R12) lands on that rib's row, named or not
    second = ribs.by_name("R12")
    point = second.centreline_lps[len(second.centreline_lps) // 2]
    for name in ("unnumbered R", "none"):
        det = Detection(1, 0.9, 10, 10.0, (0.0, 0.0, 0.0), lps_to_ras(point), tuple(point), ((0, 0, 0), (0, 0, 0)),
                        rib=name)
        mark = map_detections(unfolded, [det])[1]
        assert unfolded.strips[unfolded.lps_to_pixel(point).strip_index].slot == 13
        assert mark.rib == "unnumbered R" and mark.box[0] <= unfolded.centre_row(13) <= mark.box[2]
    row = unfolded.centre_row(6)
    assert np.isnan(unfolded.image[row, unfolded.head_col("L"):]).all()
    assert unfolded.pixel_to_lps(row, unfolded.head_col("L") + 20) is None
    lps = unfolded.pixel_to_lps(unfolded.centre_row(12), unfolded.head_col("R") - 40)
    assert np.allclose(lps, unfolded.strip("unnumbered R").frame_at(20.0)[0], atol=1e-6)


def test_strip_geometry_and_bad_input():
    line = np.column_stack([np.linspace(0, 100, 51), np.zeros(51), np.zeros(51)])
    image = sitk.Image(8, 8, 8, sitk.sitkInt16)
    unfolded = unfold_ribs(image, RibLabels(image, [Rib("L", 3, line)]), pixel_mm=1.0)
    strip = unfolded.strip("L3")
    assert strip.length_mm == pytest.approx(100.0)
    assert np.allclose(strip.binormal, [0, 0, 1]) and np.allclose(np.abs(strip.normal), [0, 1, 0])
    assert unfolded.image.shape[1] == 2 * 101 + int(round(defaults.UNFOLD_GUTTER_MM))
    with pytest.raises(ValueError, match="summary"):
        unfold_ribs(image, RibLabels(image, []), summary="median")


def test_rib_end_is_sampled_so_distances_past_it_match_the_rib_step():
    line = np.column_stack([np.linspace(0, 100.3, 12), np.zeros(12), np.zeros(12)])  # sparse, 100.3 mm long
    image = sitk.Image(8, 8, 8, sitk.sitkInt16)
    ribs = RibLabels(image, [Rib("L", 3, line)])
    unfolded = unfold_ribs(image, ribs)
    assert np.allclose(unfolded.strip("L3").points_lps[-1], line[-1])
    for past, on_rib in ((14.9, True), (15.2, False)):
        point = line[-1] + [past, 0.0, 0.0]
        det = Detection(1, 0.9, 10, 10.0, (0.0, 0.0, 0.0), lps_to_ras(point), tuple(point), ((0, 0, 0), (0, 0, 0)))
        assert (map_detections(unfolded, [det])[1] is not None) == on_rib == (locate_on_rib(point, ribs.ribs)[0] == "L3")

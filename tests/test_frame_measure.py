"""A fracture measured in its rib's frame: gap, step-off and angulation against the simulator's plan on
a phantom chest's ribs (LIDC-IDRI-0001's: benchmarks/bench_frame_types.py), the type they give, and the
fields where every front-end shows them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib import defaults, export
from RibFracSegLib.cli import segment
from RibFracSegLib.detections import Detection, fracture_text, measures_text
from RibFracSegLib.phantom import PhantomParams, generate_phantom
from RibFracSegLib.ribs import frame_measure as fm
from RibFracSegLib.ribs.centrelines import ribs_from_label_map
from RibFracSegLib.ribs.frame_build import body_centre, centreline_frame, rib_frame
from RibFracSegLib.ribs.label_maps import phantom_to_rib_labels
from RibFracSegLib.simulate import simulate_case
from RibFracSegLib.simulate.plan import planned_measures

PARAMS = PhantomParams(shape=(300, 250, 90), spacing=(1.2, 1.2, 1.2), fov="thorax", n_fractures=0, noise_hu=12.0,
                       seed=101)
KINDS = (1, 4, 1, 2, 4, 1, 3, 1)


@pytest.fixture(scope="module")
def chest():
    case = generate_phantom(PARAMS)
    return case, ribs_from_label_map(phantom_to_rib_labels(case.rib_labels))


@pytest.fixture(scope="module")
def simulated(chest):
    case, ribs = chest
    return simulate_case(case.image, ribs, len(KINDS), np.random.default_rng(7), kinds=KINDS)


def _frame(ribs, name):
    return rib_frame(ribs.by_name(name), body_centre(ribs.ribs), smooth_mm=defaults.FRAME_MEASURE_LINE_SMOOTH_MM)


def _measured(chest, simulated):
    _, ribs = chest
    out = []
    for b in simulated.fractures:
        m = fm.measure_at(_frame(ribs, b.spec.rib), b.center_lps, simulated.image)
        out.append((b, m, planned_measures(b.spec, centreline_frame(ribs.by_name(b.spec.rib)), m.point_lps)))
    return out


def test_gap_step_and_angulation_match_the_plan(chest, simulated):
    rows = _measured(chest, simulated)
    assert len(rows) == len(KINDS)
    close = [b.spec.kind for b, m, (gap, step, angle) in rows
             if b.spec.kind != 3 and abs(m.gap_mm - gap) <= 1.0 and abs(m.step_mm - step) <= 1.0
             and abs(m.angulation_deg - angle) <= 5.0]
    assert len(close) >= 5, [(b.spec.kind, m.gap_mm, m.step_mm, m.angulation_deg, p) for b, m, p in rows]
    displaced = [(m, p) for b, m, p in rows if b.spec.kind == 1]
    assert all(m.breaks == 1 and m.step_mm >= 0.8 for m, _ in displaced)  # every shifted break is seen shifted
    assert np.median([abs(m.step_mm - p[1]) for m, p in displaced]) < 0.5
    broken = [(m, p) for b, m, p in rows if b.spec.kind in (1, 4) and m.breaks]
    assert len(broken) >= 5 and np.median([abs(m.gap_mm - p[0]) for m, p in broken]) < 0.65
    assert all(m.gap_mm == 0 and m.bulge > defaults.FRAME_BUCKLE_BULGE for b, m, _ in rows if b.spec.kind == 3)


def test_the_type_follows_from_the_measurements(chest, simulated):
    rows = _measured(chest, simulated)
    right = [m.code == b.spec.kind for b, m, _ in rows]
    assert sum(right) >= len(rows) - 1, [(b.spec.kind, m.code) for b, m, _ in rows]
    assert 4 in {m.code for b, m, _ in rows if b.spec.kind == 4}  # two breaks on one rib
    assert fm.frame_type(2, 1.0, 0.0, 0.0, 0.0) == 4 and fm.frame_type(1, 1.5, 2.0, 0.0, 0.0) == 1
    assert fm.frame_type(1, 0.8, 0.2, 3.0, 0.05) == 2 and fm.frame_type(0, 0.0, 0.0, 0.0, 0.6) == 3
    assert fm.frame_type(0, 0.0, 0.0, 0.0, 0.05) == 2  # no break seen, no fold: a fine crack


def test_an_intact_rib_measures_no_gap_and_no_step(chest):
    case, ribs = chest
    array = sitk.GetArrayViewFromImage(case.image)
    steps, angles = [], []
    for name in ("L5", "R6", "L7"):
        frame = _frame(ribs, name)
        for arc in (0.35, 0.5, 0.65):  # mid-rib, away from the head and the cartilage
            a = arc * (len(frame.points_lps) - 1)
            m = fm.measure_at(frame, frame.index_to_lps([a, frame.half, frame.half]), case.image, array)
            assert m.breaks == 0 and m.gap_mm == 0.0 and m.step_mm == 0.0 and m.code == 2, (name, arc, m)
            # the centroid lines either side of a point of the intact rib meet: the step-off's noise floor
            stretch = frame.crop(int(a) - 60, int(a) + 61)
            stretch.sample(case.image, array)
            profile = fm._profile(stretch.volume, stretch.voxel_mm)
            u, v, angle = fm._step_and_angle(profile, 60, 61, 60.0, stretch.voxel_mm, [])
            steps.append(np.hypot(u, v))
            angles.append(angle)
    assert len(steps) == 9 and max(steps) < 0.6 and np.median(steps) < 0.35, steps
    assert np.median(angles) < 4.0, angles


def test_a_stretch_is_the_same_frame(chest):
    case, ribs = chest
    frame = _frame(ribs, "L6")
    frame.sample(case.image)
    part = frame.crop(40, 120)
    assert part.arc0_mm == pytest.approx(frame.arc0_mm + 40 * frame.voxel_mm)
    idx = np.array([[3.5, 10.0, 30.0], [70.2, 25.0, 25.0]])
    assert np.allclose(part.index_to_lps(idx), frame.index_to_lps(idx + [40, 0, 0]))
    assert np.array_equal(part.volume, frame.volume[40:120])
    resampled = part.crop(0, part.shape[0])
    resampled.volume = None
    assert np.allclose(resampled.sample(case.image), frame.volume[40:120], atol=1e-3)


def _detections(simulated) -> list[Detection]:
    return [Detection(id=i + 1, confidence=0.9, voxel_count=b.voxel_count, volume_mm3=float(b.voxel_count),
                      centroid_ijk=(0.0, 0.0, 0.0), center_ras=(-b.center_lps[0], -b.center_lps[1], b.center_lps[2]),
                      center_lps=b.center_lps, bbox_ijk=((0, 0, 0), (1, 1, 1)), rib=b.spec.rib)
            for i, b in enumerate(simulated.fractures)] + [
        Detection(id=99, confidence=0.5, voxel_count=1, volume_mm3=1.0, centroid_ijk=(0.0, 0.0, 0.0),
                  center_ras=(0.0, 0.0, 0.0), center_lps=(0.0, 0.0, 0.0), bbox_ijk=((0, 0, 0), (1, 1, 1)))]


def test_detections_carry_the_measurements_to_json_table_and_csv(chest, simulated, tmp_path):
    _, ribs = chest
    measured = fm.measure_detections(simulated.image, _detections(simulated), ribs.ribs)
    on_rib, off_rib = measured[:-1], measured[-1]
    assert off_rib.gap_mm is None and off_rib.frame_code == -1 and off_rib.label_code == -1  # on no rib: unchanged
    assert [d.frame_code for d in on_rib] == [d.label_code for d in on_rib]  # no classifier: the frame's type
    assert sum(d.label_code == b.spec.kind for d, b in zip(on_rib, simulated.fractures)) >= len(on_rib) - 2
    first = on_rib[0]  # displaced
    assert first.step_mm >= 0.8 and len(first.step_uv_mm) == 2 and first.gap_mm > 0
    assert first.step_mm == pytest.approx(np.hypot(*first.step_uv_mm), abs=0.02)
    text = fracture_text(first)
    assert text == f"displaced, {first.step_mm:.1f} mm step, {first.gap_mm:.1f} mm gap, {first.angulation_deg:.0f} deg"
    back = Detection.from_dict(json.loads(json.dumps(first.to_dict())))
    assert back == first
    line = segment.detection_line(json.loads(json.dumps(first.to_dict())))
    assert f"displaced, {first.step_mm:.1f} mm step" in line
    rows = export.rib_rows("RibFrac1", measured)
    assert rows[0]["step_mm"] == f"{first.step_mm:.1f}" and rows[0]["gap_mm"] == f"{first.gap_mm:.1f}"
    assert rows[-1]["gap_mm"] == rows[-1]["step_mm"] == rows[-1]["angulation_deg"] == ""
    assert measures_text() == "" and fracture_text(off_rib) == "type undefined"


def _break(id: int, rib: str, arc: float, frame_code: int = 1, gap: float = 2.0, confidence: float = 0.99) -> Detection:
    return Detection(id=id, confidence=confidence, voxel_count=10, volume_mm3=12.5, centroid_ijk=(0.0, 0.0, 0.0),
                     center_ras=(0.0, 0.0, 0.0), center_lps=(0.0, 0.0, 0.0), bbox_ijk=((0, 0, 0), (1, 1, 1)),
                     label_code=frame_code, rib=rib, rib_arc_mm=arc, gap_mm=gap, frame_code=frame_code,
                     source="frame")


def test_two_detected_breaks_on_one_rib_are_one_segmental_fracture():
    """Each break of a segmental fracture detected on its own (the frame around either saw one dip) is
    reported segmental; breaks on other ribs, farther apart than FRAME_SEGMENTAL_MAX_MM, or a detection
    with no break seen, are not; the rule is re-run on what a floor keeps."""
    near = defaults.FRAME_SEGMENTAL_MAX_MM - 2.0
    dets = [_break(1, "L6", 150.0), _break(2, "L6", 150.0 + near, frame_code=2),  # a pair
            _break(3, "R6", 100.0), _break(4, "R6", 100.0 + defaults.FRAME_SEGMENTAL_MAX_MM + 3.0),  # too far
            _break(5, "L7", 80.0), _break(6, "R7", 80.0),  # two ribs
            _break(7, "L9", 60.0), _break(8, "L9", 70.0, frame_code=3, gap=0.0),  # a fold, no break
            _break(9, "unnumbered L", 40.0), _break(10, "unnumbered L", 45.0)]  # maybe two ribs
    got = {d.id: d.label_code for d in fm.segmental_pairs(dets)}
    assert got == {1: 4, 2: 4, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 3, 9: 1, 10: 1}
    assert {d.id: d.frame_code for d in fm.segmental_pairs(dets)}[2] == 2  # the measurements' own type kept
    # run again on a subset: a partner gone, the break is typed as measured
    again = {d.id: d.label_code for d in fm.segmental_pairs([d for d in fm.segmental_pairs(dets) if d.id != 2])}
    assert again[1] == 1


def test_a_floor_keeps_a_segmental_pair_only_with_both_breaks():
    from RibFracSegLib.first_stage import StageResult, above_floor

    labels = np.zeros((8, 8, 8), np.uint16)
    labels[1:3, 1:3, 1:3], labels[5:7, 5:7, 5:7] = 1, 2
    instances = sitk.GetImageFromArray(labels)
    stage = StageResult(fm.segmental_pairs([_break(1, "L6", 150.0, confidence=0.99),
                                            _break(2, "L6", 170.0, confidence=0.6)]), instances, {})
    assert [d.label_code for d in stage.detections] == [4, 4]
    assert [d.label_code for d in above_floor(stage, 0.5).detections] == [4, 4]
    assert [(d.id, d.label_code) for d in above_floor(stage, 0.9).detections] == [(1, 1)]

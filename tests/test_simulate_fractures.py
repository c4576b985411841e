"""Fractures simulated into a CT's own ribs: on the rib, the right HU where they break, nothing else touched,
the same result for every storage order. A phantom stands in for the real CT (fast, offline)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib.phantom import PhantomParams, generate_phantom
from RibFracSegLib.ribs.centrelines import ribs_from_label_map
from RibFracSegLib.ribs.frame_build import centreline_frame
from RibFracSegLib.ribs.label_maps import phantom_to_rib_labels
from RibFracSegLib.ribs.labels import Rib
from RibFracSegLib.simulate import simulate_case
from RibFracSegLib.simulate.case import grid_of
from RibFracSegLib.simulate.plan import make_spec
from RibFracSegLib.simulate.render import build_fracture

PARAMS = PhantomParams(shape=(300, 250, 60), spacing=(1.2, 1.2, 1.2), fov="thorax", n_fractures=0, noise_hu=12.0,
                       orientation="LPS", seed=5)


@pytest.fixture(scope="module")
def chest():
    case = generate_phantom(PARAMS)
    ribs = ribs_from_label_map(phantom_to_rib_labels(case.rib_labels))
    return case, ribs


@pytest.fixture(scope="module")
def simulated(chest):
    case, ribs = chest
    return simulate_case(case.image, ribs, 4, np.random.default_rng(3), kinds=[1, 2, 3, 4])


def arr(image):
    return sitk.GetArrayFromImage(image)


def test_fractures_lie_on_their_ribs_with_ribfrac_sized_labels(chest, simulated):
    case, ribs = chest
    rib_map = arr(ribs.labels)
    labels = arr(simulated.fracture_labels)
    assert len(simulated.fractures) == 4 and not simulated.notes
    assert sorted({b.spec.kind for b in simulated.fractures}) == [1, 2, 3, 4]
    voxel_mm3 = float(np.prod(PARAMS.spacing))
    for b in simulated.fractures:
        mine = labels == b.spec.label_id
        assert mine.sum() == b.voxel_count
        on_rib = rib_map[mine]
        # the annotated blob is mostly this rib's bone and touches no other rib
        assert (on_rib == b.spec.rib_label).mean() > 0.25, b.spec.rib
        assert set(np.unique(on_rib)) <= {0, b.spec.rib_label}
        line = next(r.centreline_lps for r in ribs.ribs if r.label == b.spec.rib_label)
        assert np.min(np.linalg.norm(line - np.array(b.center_lps), axis=1)) < 6.0
        # the phantom's annotations (7-12 mm along the rib x 1.6x its cross-section): about 0.9-1.4 cm3 each
        # break on a real-size grid, twice that for a segmental fracture
        per_break = mine.sum() * voxel_mm3 / len(b.spec.breaks_mm)
        assert 500 < per_break < 2000, (b.spec.kind, per_break)


def test_ct_unchanged_outside_each_fractures_neighbourhood(chest, simulated):
    case, _ = chest
    before, after = arr(case.image), arr(simulated.image)
    assert after.dtype == before.dtype and simulated.image.GetSize() == case.image.GetSize()
    grid = grid_of(case.image, before.shape)
    changed = np.argwhere(before != after)
    assert len(changed) > 500
    lps = grid.to_lps(changed)
    reach = np.zeros(len(changed), bool)
    for b in simulated.fractures:
        centre, _ = centreline_frame(
            next(r for r in chest[1].ribs if r.label == b.spec.rib_label)).at(b.spec.center_arc_mm)
        reach |= np.linalg.norm(lps - centre, axis=1) <= b.spec.reach_mm + 2 * max(PARAMS.spacing)
    assert reach.all()


def _one(chest, kind, rib_name, arc, noise_seed=2, **override):
    """Build one fracture of `kind` with chosen sizes; (before, after, labels, spec, frame, grid)."""
    case, ribs = chest
    rib = ribs.by_name(rib_name)
    frame = centreline_frame(rib)
    breaks = (arc, arc + 22.0) if kind == 4 else (arc,)
    spec = replace(make_spec(1, kind, rib.label, rib.name, frame, breaks, np.random.default_rng(1)), **override)
    before = arr(case.image).astype(np.float32)
    hu, labels = before.copy(), np.zeros(before.shape, np.uint16)
    grid = grid_of(case.image, before.shape)
    built = build_fracture(hu, labels, arr(ribs.labels), grid, frame, spec, np.random.default_rng(noise_seed))
    assert built is not None
    return before, hu, labels, built, frame, grid


def _break_coords(before, after, built, frame, grid):
    """Per voxel of the fracture's box: signed distance from the first cut plane, arc position, distance
    from the centreline, and HU before / after."""
    box, spec = built.box, built.spec
    kji = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij"), -1)
    lps = grid.to_lps(kji)
    arc, _, dist = frame.locate(lps.reshape(-1, 3))
    c, _ = frame.at(spec.breaks_mm[0])
    u = (lps - c) @ np.array(spec.normals[0])
    return u, arc.reshape(u.shape), dist.reshape(u.shape), before[box], after[box]


def test_displaced_gap_holds_soft_tissue_and_the_fragment_moves(chest):
    before, after, labels, built, frame, grid = _one(chest, 1, "L6", 70.0, gap_mm=3.2, shift_lps=(0.0, 0.0, 0.0),
                                                     angulation_deg=0.0)
    spec = built.spec
    u, arc, dist, b, a = _break_coords(before, after, built, frame, grid)
    in_gap = (np.abs(u) < spec.gap_mm / 2 - 0.9) & (b > 400) & (np.abs(arc - spec.breaks_mm[0]) < 8) & (dist < 6)
    assert in_gap.sum() >= 3
    # voxels wholly inside the gap hold the surrounding soft tissue's HU (bar noise and a little PSF blur)
    remaining = (a[in_gap] - built.fill_hu) / (b[in_gap] - built.fill_hu)
    assert np.median(remaining) < 0.1 and abs(np.median(a[in_gap]) - built.fill_hu) < 60
    assert 0.0 <= built.fill_hu <= 80.0
    away = (np.abs(u) > spec.gap_mm / 2 + 3) & (b > 400) & (np.abs(arc - spec.breaks_mm[0]) < 8) & (dist < 6)
    assert np.abs(a[away] - b[away]).max() < 5  # no shift: the bone either side stays exactly put

    shift = (0.0, 0.0, 3.0)  # 3 mm head-wards: bone appears where soft tissue was, and leaves
    before, after, labels, built, frame, grid = _one(chest, 1, "L6", 70.0, gap_mm=2.0, shift_lps=shift,
                                                     angulation_deg=0.0, moved_piece=1)
    b, a = before[built.box], after[built.box]
    assert ((b < 150) & (a - b > 300)).sum() > 20 and ((b > 400) & (a - b < -300)).sum() > 20


def test_buckle_is_brighter_across_the_fold(chest):
    before, after, labels, built, frame, grid = _one(chest, 3, "R7", 80.0, sclerosis_hu=300.0, bump_mm=1.5)
    spec = built.spec
    _, arc, dist, b, a = _break_coords(before, after, built, frame, grid)
    band = (np.abs(arc - spec.breaks_mm[0]) < 1.5) & (b > 300) & (dist < 6)
    assert band.sum() > 10 and np.median(a[band] - b[band]) > 90  # sclerosis (the fold thins some voxels)
    folded_out = (np.abs(arc - spec.breaks_mm[0]) < 4) & (b < 150) & (a - b > 200)
    assert folded_out.sum() >= 3  # cortex pushed out where there was soft tissue
    far = (np.abs(arc - spec.breaks_mm[0]) > 10) & (b > 300)
    assert np.abs(a[far] - b[far]).max() < 1.0


def test_non_displaced_crack_lowers_the_cortex_along_the_break(chest):
    before, after, labels, built, frame, grid = _one(chest, 2, "L7", 90.0, gap_mm=1.0, crack_offset_mm=-1e3)
    u, arc, dist, b, a = _break_coords(before, after, built, frame, grid)
    crack = (np.abs(u) < 0.4) & (b > 600) & (dist < 6)
    assert crack.sum() > 5 and np.median(b[crack] - a[crack]) > 150
    assert np.abs(a - b)[np.abs(u) > 4].max() < 1.0


def test_added_noise_matches_the_ct(chest):
    """A wide gap is synthetic soft tissue: its grain must be the CT's, not a flat fill."""
    before, after, labels, built, frame, grid = _one(chest, 1, "L6", 70.0, gap_mm=5.0, shift_lps=(0.0, 0.0, 0.0),
                                                     angulation_deg=0.0)
    spec, box = built.spec, built.box
    u, arc, dist, b, a = _break_coords(before, after, built, frame, grid)
    core = (np.abs(u) < spec.gap_mm / 2 - 1.3) & (b > 300) & (dist < 6)
    assert core.sum() > 15
    assert abs(np.median(a[core]) - built.fill_hu) < 40
    # the same break with other noise: the difference is the added noise alone (sqrt 2 x its SD)
    again = _one(chest, 1, "L6", 70.0, noise_seed=9, gap_mm=5.0, shift_lps=(0.0, 0.0, 0.0), angulation_deg=0.0)[1]
    added_sd = np.std(a[core] - again[box][core]) / np.sqrt(2)
    assert 0.6 * built.noise_hu < added_sd < 1.8 * built.noise_hu
    # the phantom's noise (12 HU) plus its tissue texture (muscle 8 HU), as the estimator reads it
    assert 0.6 * PARAMS.noise_hu < built.noise_hu < 1.6 * PARAMS.noise_hu


@pytest.mark.parametrize("code", ["RAS", "LPI", "PIR", "ASL"])
def test_same_fractures_for_every_storage_order(chest, simulated, code):
    case, ribs = chest
    image = sitk.DICOMOrient(case.image, code)
    rib_map = sitk.DICOMOrient(ribs.labels, code)
    moved = replace(ribs, labels=rib_map)
    result = simulate_case(image, moved, 4, np.random.default_rng(3), kinds=[1, 2, 3, 4])
    assert [b.spec.rib for b in result.fractures] == [b.spec.rib for b in simulated.fractures]
    back = arr(sitk.DICOMOrient(result.image, "LPS")).astype(np.int32)
    ref = arr(simulated.image).astype(np.int32)
    assert np.abs(back - ref).max() <= 1
    assert np.array_equal(arr(sitk.DICOMOrient(result.fracture_labels, "LPS")), arr(simulated.fracture_labels))


def test_unnumbered_ribs_sharing_a_value_break_one_at_a_time(chest):
    """segment_ribs gives every unnumbered rib of a side one value: a break must stay on its own rib."""
    case, ribs = chest
    numbered = arr(ribs.labels)
    shared = np.where(numbered == 0, 0, np.where(numbered <= 12, 25, 26)).astype(np.uint8)
    shared_img = sitk.GetImageFromArray(shared)
    shared_img.CopyInformation(ribs.labels)
    unnumbered = replace(ribs, labels=shared_img, ribs=[replace(r, number=None) for r in ribs.ribs])
    result = simulate_case(case.image, unnumbered, 4, np.random.default_rng(5), kinds=[1, 4])
    labels = arr(result.fracture_labels)
    assert len(result.fractures) == 4
    changed = arr(result.image) != arr(case.image)
    for b in result.fractures:
        moved_bone = np.unique(numbered[b.box][changed[b.box] & (numbered[b.box] > 0)])
        assert len(moved_bone) == 1, moved_bone  # the bone of one rib only was touched
        hit = np.unique(numbered[(labels == b.spec.label_id) & (numbered > 0)])
        assert len(hit) == 1, hit  # one rib only, though its neighbours carry the same value
        nearest = min(ribs.ribs, key=lambda r: np.min(np.linalg.norm(r.centreline_lps - b.center_lps, axis=1)))
        assert nearest.label == hit[0]


def test_a_rib_mask_is_split_from_a_close_neighbour_with_the_same_value():
    """Two bars 8 mm apart, both labelled 25: each centreline claims only its own bar."""
    from RibFracSegLib.simulate.render import _rib_mask

    shape = (20, 40, 80)  # (k, j, i) at 1 mm
    rib_map = np.zeros(shape, np.uint8)
    rib_map[8:12, 14:18, 5:75] = 25
    rib_map[8:12, 22:26, 5:75] = 25
    kji = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    lps = kji[..., ::-1].astype(float)
    bars = [centreline_frame(Rib("L", None, np.array([[0.0, y, 10.0], [79.0, y, 10.0]]))) for y in (15.5, 23.5)]
    spec = make_spec(1, 1, 25, "unnumbered L", bars[0], (40.0,), np.random.default_rng(0))
    mine = _rib_mask(rib_map, spec, bars[0], bars[1:], lps, np.ones(3))
    assert mine is not None and mine.sum() == 4 * 4 * 70
    assert mine[8:12, 14:18, 5:75].all() and not mine[:, 22:26].any()
    assert _rib_mask(rib_map, spec, bars[0], (), lps, np.ones(3)).sum() == 2 * 4 * 4 * 70  # without the rival

"""Vertebral levels: discs found in profiles (dark discs, bright endplate bands), names counted from
the ribs and the sacrum (4/6 lumbar said), phantoms named as the truth or left unnamed in several
storage orders and slice thicknesses, and L3 from count + network with the review flag."""

from __future__ import annotations

import numpy as np
import pytest

from RibFracSegLib.l3.check import check_l3
from RibFracSegLib.l3.locator import L3Result
from RibFracSegLib.phantom.dataset import sample_params
from RibFracSegLib.phantom.generate import generate_phantom
from RibFracSegLib.ribs import segment_ribs
from RibFracSegLib.ribs.heads import RibHead, RibHeads, rib_heads
from RibFracSegLib.spine import SpineLevels, Vertebra, vertebral_levels
from RibFracSegLib.spine.bodies import disc_profile, find_discs
from RibFracSegLib.spine.levels import (count_origin, name_vertebrae, rib_votes, unname_across_joints,
                                        unname_contradicted)


def column(dz: float, bright_discs: bool, rng) -> tuple[np.ndarray, np.ndarray]:
    """A marrow profile with discs every 22-34 mm (growing downwards); returns (profile, disc slices)."""
    z, discs, out = 0.0, [], []
    heights = np.linspace(36, 22, 9)
    for h in heights:
        discs.append(z + h)
        z += h
    zs = np.arange(0, z + 10, dz)
    disc_z = np.array(discs)
    near = np.min(np.abs(zs[:, None] - disc_z[None]), axis=1) < 4.0
    out = np.where(near, 320.0 if bright_discs else 80.0, 180.0) + rng.normal(0, 12, zs.size)
    return out, disc_z / dz


@pytest.mark.parametrize("dz,bright", [(1.5, False), (1.5, True), (2.5, True), (5.0, False)])
def test_discs_found_dark_or_bright(dz, bright):
    profile, truth = column(dz, bright, np.random.default_rng(3))
    found, _ = find_discs(disc_profile(profile, dz), dz)
    assert len(found) == len(truth)
    assert np.max(np.abs(found - truth)) * dz <= max(2.0, dz)


def fake_bodies(n: int, height: float = 30.0) -> list[Vertebra]:
    return [Vertebra(None, (0.0, 0.0, i * height + height / 2), (i + 1) * height, i * height, True) for i in range(n)]


@pytest.mark.parametrize("lumbar", [4, 5, 6])
def test_names_from_t12_with_transitional_lumbar_count(lumbar):
    bodies = fake_bodies(10)
    anchor, anchors, count, notes = name_vertebrae(bodies, t12=lumbar, l5=0)
    names = [v.name for v in bodies]
    assert anchor == "rib 12" and count == lumbar
    assert names[lumbar] == "T12" and names[lumbar + 1] == "T11"
    if lumbar == 5:
        assert names[:5] == ["L5", "L4", "L3", "L2", "L1"] and not notes
    else:  # transitional anatomy or a body miscounted: no lumbar body named rather than one named wrong
        assert names[:lumbar] == [None] * lumbar and any("transitional" in n for n in notes)


def test_sacrum_alone_and_conflicts():
    bodies = fake_bodies(6)
    assert name_vertebrae(bodies, t12=None, l5=0)[0] == "sacrum"
    assert [v.name for v in bodies] == ["L5", "L4", "L3", "L2", "L1", "T12"]
    bodies = fake_bodies(6)
    anchor, _, _, notes = name_vertebrae(bodies, t12=2, l5=0)  # 2 lumbar: impossible
    assert anchor == "none" and all(v.name is None for v in bodies) and notes
    # the same conflict with ribs counted from the bottom of a cut cage: the sacrum names the column
    bodies = fake_bodies(9)
    anchor, _, _, notes = name_vertebrae(bodies, t12=7, l5=0, ribs_weak=True)  # 7 lumbar: the ribs are wrong
    assert anchor == "sacrum" and [v.name for v in bodies][:6] == ["L5", "L4", "L3", "L2", "L1", "T12"]
    assert any("named from the sacrum" in n for n in notes)
    bodies = fake_bodies(9)  # 6 lumbar from a weak count (5 mm pelvis phantoms: T12 a body low): the sacrum names
    anchor, _, lumbar, _ = name_vertebrae(bodies, t12=6, l5=0, ribs_weak=True)
    assert anchor == "sacrum" and lumbar is None and [v.name for v in bodies][:6] == ["L5", "L4", "L3", "L2", "L1", "T12"]


def rib(side, number, z, x=25.0):
    return RibHead(side, number, np.array([x if side == "L" else -x, 5.0, z]))


def test_rib_votes_majority_far_heads_and_disagreement():
    bodies = fake_bodies(12)  # body i spans 30i..30i+30 mm
    ribs = RibHeads([rib("L", 12, 250.0), rib("R", 12, 252.0), rib("L", 11, 280.0),
                     rib("R", 10, 310.0), rib("L", 9, 200.0),  # a misnumbered one
                     rib("R", 12, 100.0, x=90.0)])  # far from the column: an iliac crest
    t12, label, notes, _ = rib_votes(ribs, bodies)
    assert (t12, label) == (8, "rib 12")  # rib 12's head at 250 mm: in body 8 (240-270 mm)
    assert any("4 of 5" in n for n in notes)
    split = RibHeads([rib("L", 12, 250.0), rib("R", 12, 190.0)])
    assert rib_votes(split, bodies)[0] is None
    # a rib 12 two bodies below where the others put T12: a rib was missed above it, the numbers are off
    below = RibHeads([rib("L", 12, 250.0), rib("R", 12, 252.0), rib("L", 11, 280.0), rib("R", 11, 282.0),
                      rib("R", 12, 190.0)])
    t12, _, notes, _ = rib_votes(below, bodies)
    assert t12 is None and any("bodies below where the count puts it" in n for n in notes)
    # each side self-consistent but one body apart (a side misnumbered): no count from the ribs
    sides = RibHeads([rib("L", n, 250.0 + 30 * (12 - n)) for n in (12, 11, 10, 9)]
                     + [rib("R", n, 220.0 + 30 * (12 - n)) for n in (12, 11, 10)])
    t12, _, notes, _ = rib_votes(sides, fake_bodies(16))
    assert t12 is None and any("left and right" in n for n in notes)


def test_a_disc_missed_high_up_leaves_t12_and_unnames_above_it():
    """Bodies every 30 mm, but the one holding T5 and T6 found as one (a missed disc): ribs 1-5 sit a
    body lower than their numbers say. The ribs nearest T12 set the count; the bodies from where the
    ribs above drift off it are left unnamed, none named wrong."""
    bodies = fake_bodies(16)  # T12 = body 3 (90-120 mm); the truth: Tk = body 15 - k
    heads = [rib(side, n, (15 - n) * 30.0 + 29.0) for side in "LR" for n in range(6, 13)]  # ribs 6-12: Tk's top
    heads += [rib(side, n, (14 - n) * 30.0 + 29.0) for side in "LR" for n in range(1, 6)]  # one body too low
    t12, _, _, votes = rib_votes(RibHeads(heads), bodies)
    assert t12 == 3
    anchor, *_ = name_vertebrae(bodies, t12, None)
    notes = unname_contradicted(bodies, votes, t12)
    names = [v.name for v in bodies]
    assert names[3] == "T12" and names[:3] == ["L3", "L2", "L1"] and names[8] == "T7"
    assert names[9:] == [None] * 7 and notes  # from the body rib 5's head lands in (named T6), up


def network(z: float, in_view: bool = True, conf: float = 0.8) -> L3Result:
    return L3Result(in_view=in_view, confidence=conf, slice_index=0, z_mm=z, center_ras=(0, 0, z),
                    center_lps=(0, 0, z), row_mm=0.0)


def named_levels(names_bottom_up: list[str], height: float = 30.0, numbering: str = "rib 1", sides: int = 2
                 ) -> SpineLevels:
    bodies = fake_bodies(len(names_bottom_up), height)
    for v, n in zip(bodies, names_bottom_up):
        v.name = n
    return SpineLevels(bodies, anchor="rib 12", count_sides=sides, rib_numbering=numbering)


class _Image:  # the only geometry check_l3 needs: a 1-mm axial stack with z = index
    def TransformPhysicalPointToContinuousIndex(self, p):
        return (0.0, 0.0, p[2])

    def GetSize(self):
        return (10, 10, 400)

    def GetDirection(self):
        return (1, 0, 0, 0, 1, 0, 0, 0, 1)


def test_l3_check_agree_disagree_and_fallbacks():
    levels = named_levels(["L4", "L3", "L2", "L1", "T12"])  # L3 centre at z 45
    ok = check_l3(_Image(), network(50.0), levels)
    assert ok.in_view and not ok.review and ok.source == "count+network" and ok.z_mm == pytest.approx(50.0)
    assert ok.count_z_mm == pytest.approx(45.0)
    bad = check_l3(_Image(), network(80.0), levels)  # 35 mm off: more than half of 30 mm
    assert bad.review and "disagree by 35 mm" in bad.review_reason and bad.z_mm == pytest.approx(45.0)
    assert bad.source == "count"
    assert bad.row()["review"] is True and bad.row()["difference_mm"] == pytest.approx(-35.0)
    weak = check_l3(_Image(), network(80.0, in_view=False, conf=0.15), levels)
    assert weak.in_view and weak.source == "count" and not weak.review and "0.15" in weak.review_reason
    chest = named_levels(["L1", "T12", "T11"])
    assert not check_l3(_Image(), network(10.0, in_view=False, conf=0.05), chest).in_view
    contradicted = check_l3(_Image(), network(10.0), chest)
    assert not contradicted.in_view and contradicted.review and "outside the CT" in contradicted.review_reason
    unnamed = SpineLevels(fake_bodies(4), anchor="none")
    alone = check_l3(_Image(), network(50.0), unnamed)
    assert alone.in_view and alone.source == "network" and alone.review
    # ribs counted from the bottom of a cut cage, or on one side only: on disagreement the network's L3 stands
    for weak_count in (named_levels(["L4", "L3", "L2", "L1", "T12"], numbering="rib 12"),
                       named_levels(["L4", "L3", "L2", "L1", "T12"], sides=1)):
        flagged = check_l3(_Image(), network(80.0), weak_count)
        assert flagged.source == "network" and flagged.z_mm == pytest.approx(80.0) and flagged.review
        assert flagged.count_z_mm == pytest.approx(45.0) and "weak count" in flagged.review_reason
        assert check_l3(_Image(), network(50.0), weak_count).source == "count+network"  # agreeing: as before
        alone_weak = check_l3(_Image(), network(80.0, in_view=False, conf=0.15), weak_count)  # nothing to check it
        assert alone_weak.source == "count" and alone_weak.z_mm == pytest.approx(45.0) and alone_weak.review
        assert "nothing to check it against" in alone_weak.review_reason
    overruled = named_levels(["L4", "L3", "L2", "L1", "T12"])
    overruled.anchor, overruled.overruled = "sacrum", True  # the sacrum named it against the ribs' count
    assert check_l3(_Image(), network(80.0), overruled).source == "network"
    assert check_l3(_Image(), network(80.0), named_levels(["L4", "L3", "L2", "L1", "T12"])).source == "count"
    one_side_chest = named_levels(["L1", "T12", "T11"], sides=1)
    beyond = check_l3(_Image(), network(10.0), one_side_chest)
    assert beyond.in_view and beyond.source == "network" and beyond.review and "outside the CT" in beyond.review_reason


@pytest.mark.parametrize("seed,fov,orientation,slice_mm", [
    (31, "thorax_abdomen", "RAS", 2.5),
    (34, "abdomen_pelvis", "LPI", 5.0),  # a cut cage: the ribs found are too few to count from
])
def test_phantom_vertebrae_named_as_truth_or_unnamed(seed, fov, orientation, slice_mm):
    case = generate_phantom(sample_params(seed, size=256, fov=fov, orientation=orientation, n_fractures=0,
                                          slice_mm=slice_mm))
    ribs = segment_ribs(case.image)
    heads = rib_heads(case.image)
    assert_levels_named(case, vertebral_levels(case.image, heads), slice_mm)  # the light path l3 takes
    # the heads found in the box are the rib step's: same ribs, same numbers, heads within a few mm
    if fov == "thorax_abdomen":
        full = {(h.side, h.number): h.head_lps for h in RibHeads.from_ribs(ribs).heads if h.number}
        light = {(h.side, h.number): h.head_lps for h in heads.heads if h.number}
        assert len(full) >= 18 and len(set(full) & set(light)) >= 0.8 * len(full)
        assert all(abs(light[k][2] - full[k][2]) <= 10.0 for k in set(full) & set(light))
    assert_levels_named(case, vertebral_levels(case.image, ribs), slice_mm)


def assert_levels_named(case, levels, slice_mm) -> None:
    right = 0
    for truth in case.vertebrae:
        found = next((v for v in levels.vertebrae if v.z_bottom_mm < truth.center_lps[2] <= v.z_top_mm), None)
        assert found is None or found.name in (None, truth.name), (truth.name, found.name, levels.notes)
        right += found is not None and found.name == truth.name
        if found is not None and found.name == truth.name and found.complete:
            assert abs(found.centre_lps[2] - truth.center_lps[2]) <= max(6.0, 1.5 * slice_mm)
    # C6/C7 above rib 1 are never named (no rib checks the count there); one more may be left unnamed
    assert right >= len(case.vertebrae) - 3, levels.to_dict()["named"]
    l3 = levels.by_name("L3")
    assert l3 is not None and abs(l3.centre_lps[2] - case.l3.center_lps[2]) <= 5.0


def test_l3_refuses_an_mr_volume(tmp_path, capsys):
    """An MR (no air below -500, intensities 0-2000) gets a clear error from `ribfracseg l3`, no L3
    (the reader's Hounsfield check, RibFracSegLib.ct_checks, refuses it before any network runs)."""
    import SimpleITK as sitk

    from RibFracSegLib.cli import main

    rng = np.random.default_rng(0)
    mr = sitk.GetImageFromArray(rng.integers(0, 2000, (40, 64, 64)).astype(np.uint16))
    mr.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(mr, str(tmp_path / "t1.nii.gz"))
    assert main(["l3", str(tmp_path / "t1.nii.gz"), "--out", str(tmp_path / "out"), "--no-png"]) == 1
    err = capsys.readouterr()
    assert "not a CT in Hounsfield units" in err.out + err.err
    assert not (tmp_path / "out" / "t1.l3.json").exists()


def test_short_upper_thoracic_bodies_found_between_bright_bands():
    """Bodies of 15-17 mm with their disc (upper thoracic, 2.5 mm slices), bright endplate bands on a
    marrow level that rises up the column (LIDC-IDRI-0001's T1-T3, merged by a 30 mm running median)."""
    dz, rng = 2.5, np.random.default_rng(5)
    pitches = [28, 27, 26, 24, 22, 21, 20, 19, 18, 17, 16, 15, 15]
    disc_z = np.cumsum(pitches).astype(float)
    zs = np.arange(0, disc_z[-1] + 20, dz)
    marrow = 110 + 100 * zs / zs[-1]
    near = np.min(np.abs(zs[:, None] - disc_z[None]), axis=1) < 3.5
    profile = np.where(near, marrow + 110, marrow) + rng.normal(0, 8, zs.size)
    found, _ = find_discs(disc_profile(profile, dz), dz)
    assert len(found) == len(disc_z)
    assert np.max(np.abs(found * dz - disc_z)) <= 3.0


def test_body_centre_is_the_vertebral_body_not_the_canal_or_the_aorta():
    """One axial slice, 1.5 mm pixels: a small vertebral body (20 mm, fatty marrow at 120 HU inside a
    cortex ring) with its arch around a fluid-filled canal behind it, and a contrast-filled aorta
    (250 HU, 24 mm: thicker than the body) in front and to the left, as on LIDC-IDRI-0001's mid
    thorax; the spine track starts at the body's back. The centre must land in the body's marrow."""
    from RibFracSegLib.ribs.anatomy import SpineTrack, body_mask, bone_mask
    from RibFracSegLib.spine.bodies import body_centres

    sp = (2.5, 1.5, 1.5)
    yy, xx = np.mgrid[:120, :120] * 1.5
    hu = np.full((3, 120, 120), 40.0)
    r_body = np.hypot(yy - 80, xx - 90)
    r_canal = np.hypot(yy - 98, xx - 90)
    hu[:, r_body <= 10] = 120.0
    hu[:, r_canal <= 7] = 10.0  # cerebrospinal fluid
    hu[:, ((r_body > 8) & (r_body <= 10)) | ((r_canal > 7) & (r_canal <= 11) & (yy > 88))] = 600.0
    hu[:, np.hypot(yy - 68, xx - 113) <= 12] = 250.0  # aorta
    hu[:, (yy < 10) | (yy > 170) | (xx < 10) | (xx > 170)] = -1000.0
    bone = bone_mask(hu, body_mask(hu), sp)
    track = SpineTrack(x=np.full(3, 60.0), y=np.full(3, 62.0), seen=np.ones(3, bool))  # y 93 mm: the body's back
    centres = body_centres(bone, hu, track, sp)
    assert np.allclose(centres.y * 1.5, 80.0, atol=3.0) and np.allclose(centres.x * 1.5, 90.0, atol=3.0)


def test_discs_of_a_leaning_column_are_read_across_it():
    """A column of 16 mm bodies (with their 4 mm discs) leaning 45 degrees forwards, as LIDC-IDRI-0001's
    cervico-thoracic junction, on 2.5 mm slices: in z each body + disc is only 14 mm, and an axial disc
    through a body's centre reaches the discs above and below. Read across the column, with body heights
    measured along it, every disc is found within 3 mm of its place along the column."""
    from RibFracSegLib.ribs.anatomy import SpineTrack
    from RibFracSegLib.spine.bodies import centre_profile, column_arc_mm, column_directions

    sp = (2.5, 1.0, 1.0)
    lean = np.radians(45.0)
    axis = np.array([np.cos(lean), -np.sin(lean), 0.0])  # (z, y, x) in mm: up and forwards
    nz, ny, nx = 64, 200, 60
    zz, yy, xx = np.meshgrid(np.arange(nz) * sp[0], np.arange(ny) * sp[1], np.arange(nx) * sp[2], indexing="ij")
    start = np.array([0.0, 170.0, 30.0])
    rel = np.stack([zz, yy, xx], -1) - start
    along = rel @ axis
    radial = np.linalg.norm(rel - along[..., None] * axis, axis=-1)
    pitch, disc = 20.0, 4.0
    in_disc = (along % pitch) < disc
    hu = np.where(radial <= 12.0, np.where(in_disc, 60.0, 220.0), -50.0)
    hu += np.random.default_rng(7).normal(0, 10, hu.shape)
    z = np.arange(nz) * sp[0]
    t = z / np.cos(lean)  # the axis point at each slice
    track = SpineTrack(x=np.full(nz, 30.0), y=170.0 - t * np.sin(lean), seen=np.ones(nz, bool))
    directions = column_directions(track, sp)
    assert np.allclose(np.degrees(np.arccos(directions[:, 0])), 45.0, atol=2.0)
    arc = column_arc_mm(directions, sp[0])
    found, _ = find_discs(disc_profile(centre_profile(hu, track, sp, directions), sp[0]), sp[0], arc)
    truth = np.arange(pitch, t[-1] - 5.0, pitch) + disc / 2  # disc centres along the column
    truth = truth[(truth > 8.0 / np.cos(lean)) & (truth < t[-1] - 8.0 / np.cos(lean))]  # beyond the edge margins
    found_along = np.interp(found, np.arange(nz), arc)
    assert len(found_along) == len(truth)
    assert np.max(np.abs(found_along - truth)) <= 3.0


def test_cervical_bodies_counted_up_from_rib_1_but_not_above_a_lower_top_rib():
    """T1 carries rib 1: the bodies above it are C7, C6 by counting, as the lumbar bodies are counted down
    from T12. When the highest rib found is rib 3, nothing checks the count above T3: left unnamed."""
    for highest, named_top in ((1, ["C7", "C6"]), (3, [None, None, None, None])):
        bodies = fake_bodies(15)  # T12 = body 3, T1 = body 14; above it C7 and C6 (cut by the CT's edge)
        bodies += [Vertebra(None, (0.0, 0.0, 15 * 30.0 + 15), 16 * 30.0, 15 * 30.0, True),
                   Vertebra(None, (0.0, 0.0, 16 * 30.0 + 10), 16 * 30.0 + 20, 16 * 30.0, False)]
        heads = [rib(side, n, (15 - n) * 30.0 + 29.0) for side in "LR" for n in range(highest, 13)]
        t12, _, _, votes = rib_votes(RibHeads(heads), bodies)
        assert t12 == 3
        name_vertebrae(bodies, t12, None)
        unname_contradicted(bodies, votes, t12)
        names = [v.name for v in bodies]
        assert names[3] == "T12" and names[14 - (highest - 1)] == f"T{highest}"
        assert names[-len(named_top):] == named_top


def test_a_break_between_the_counting_ribs_and_l3_unnames_l3():
    """Only rib 1's heads counted (the lower ribs not found) and the disc spacing breaks at T3: the
    count ran from T1 across the break, so the bodies below it (L3 among them) are left unnamed, not
    named a body off (demo phantom seed 4: L3 named on the true L4, 40 mm off). Counted from rib 12,
    the same break unnames the bodies above it, as before."""
    for numbers, unnamed, named in (((1,), slice(0, 13), slice(13, 16)), ((11, 12), slice(12, 16), slice(0, 12))):
        bodies = fake_bodies(16)  # T12 = body 3, Tk = body 15 - k: T3 = body 12, T1 = body 14
        heads = [rib(side, n, (15 - n) * 30.0 + 29.0) for side in "LR" for n in numbers]
        t12, _, _, votes = rib_votes(RibHeads(heads), bodies)
        assert t12 == 3 and count_origin(t12, votes) == 15 - numbers[-1]
        name_vertebrae(bodies, t12, None)
        joints = [i == 12 for i in range(16)]
        notes = unname_across_joints(bodies, joints, count_origin(t12, votes))
        names = [v.name for v in bodies]
        assert names[unnamed] == [None] * len(names[unnamed]) and None not in names[named] and notes


def test_half_bodies_of_a_contrast_ct_are_no_bodies():
    """Thin slices with IV contrast (3Dircadb1.1): bright endplates at each disc and a fainter bright band
    at each body's middle (the basivertebral veins). The fixed height limits pass a chain of half
    bodies; the body's width (40 mm: a lumbar body is never 18 mm high) rules it out."""
    dz, rng = 1.6, np.random.default_rng(5)
    discs = np.arange(20.0, 200.0, 36.0)
    zs = np.arange(0, 210, dz)
    d = np.min(np.abs(zs[:, None] - discs[None]), axis=1)
    mid = np.min(np.abs(zs[:, None] - (discs[None] + 18.0)), axis=1)
    profile = 180.0 + np.where(d < 4, 200.0, 0.0) + np.where(mid < 3, 90.0, 0.0) + rng.normal(0, 10, zs.size)
    discness = disc_profile(profile, dz)
    unchecked, _ = find_discs(discness, dz)
    assert len(unchecked) > len(discs) + 2  # half bodies taken for bodies
    found, _ = find_discs(discness, dz, widths_mm=np.full(zs.size, 40.0))
    assert len(found) == len(discs)
    assert np.max(np.abs(found * dz - discs)) <= 3.0

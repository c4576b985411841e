"""The rib frame: maps both ways in every storage order, no twist, outward first axis, a tube
straightened into a centred bar, and write-back by inverse sampling."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
import pytest
import SimpleITK as sitk

from RibFracSegLib.defaults import PHANTOM_ORIENTATIONS
from RibFracSegLib.phantom import PhantomParams, generate_phantom, rib_labels_from_phantom
from RibFracSegLib.ribs.frame import frame_to_ct
from RibFracSegLib.ribs.frame_build import body_centre, outward_cosine, rib_frame, rib_frames, section_twist_deg
from RibFracSegLib.ribs.labels import Rib

BASE = dict(shape=(150, 170, 110), spacing=(2.0, 1.8, 3.0), fov="thorax", n_fractures=0, seed=21)


@pytest.fixture(scope="module")
def phantoms():
    """Per storage order: the CT, its truth ribs and the sampled frames of every fourth rib."""
    out = {}
    for orientation in PHANTOM_ORIENTATIONS:
        case = generate_phantom(PhantomParams(orientation=orientation, **BASE))
        ribs = rib_labels_from_phantom(case).ribs
        frames = rib_frames(ribs)
        for frame in frames[::4]:
            frame.tissue = frame.sample(case.tissue).copy()  # the tissue classes, free of scanner noise
            frame.sample(case.image)
        out[orientation] = (case.image, ribs, frames[::4])
    return out


def voxel_lps(image: sitk.Image) -> np.ndarray:
    """LPS of every voxel, [k, j, i, 3], straight from SimpleITK (independent of the frame's own maps)."""
    source = sitk.PhysicalPointSource(sitk.sitkVectorFloat64, image.GetSize(), image.GetOrigin(), image.GetSpacing(),
                                      image.GetDirection())
    return sitk.GetArrayFromImage(source)


def all_voxels(frame, every: int = 11) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in frame.shape], indexing="ij"), -1).reshape(-1, 3)
    return grid[::every].astype(float)


def test_maps_are_inverse_in_every_storage_order(phantoms):
    rng = np.random.default_rng(0)
    for orientation, (ct, ribs, frames) in phantoms.items():
        assert len(ribs) == 24, orientation
        for frame in frames[::2]:
            # frame -> LPS -> frame, on every 11th voxel and on random continuous points
            idx = np.concatenate([all_voxels(frame), rng.uniform(0, np.array(frame.shape) - 1, (3000, 3))])
            ok = frame.one_to_one(idx)
            assert ok.mean() > 0.95, (orientation, frame.name, ok.mean())
            back = frame.lps_to_index(frame.index_to_lps(idx[ok]))
            assert np.abs(back - idx[ok]).max() < 1e-6, (orientation, frame.name)
            # CT voxel -> frame -> CT voxel, for every CT voxel in the frame; those well inside are all found
            ijk = np.rint(frame.index_to_ct(idx, ct)).astype(int)
            ijk = ijk[np.all((ijk >= 0) & (ijk < ct.GetSize()), axis=1)]
            ijk = np.array(np.unravel_index(np.unique(np.ravel_multi_index(ijk.T, ct.GetSize())), ct.GetSize())).T
            there = frame.ct_to_index(ijk, ct)
            hit = np.isfinite(there[:, 0])
            assert np.abs(frame.index_to_ct(there[hit], ct) - ijk[hit]).max() < 1e-6, (orientation, frame.name)
            margin = 4.0 / frame.voxel_mm  # farther than a CT voxel's rounding from the frame's edges
            core = idx[ok & np.all((idx >= margin) & (idx <= np.array(frame.shape) - 1 - margin), axis=1)]
            core_ijk = np.rint(frame.index_to_ct(core, ct)).astype(int)
            core_ijk = core_ijk[np.all((core_ijk >= 0) & (core_ijk < ct.GetSize()), axis=1)]
            assert len(core_ijk) > 1000 and np.isfinite(frame.ct_to_index(core_ijk, ct)).all(), (orientation, frame.name)
            # a point well beyond the frame is "outside"
            mid = frame.shape[0] // 2
            beyond = [frame.points_lps[mid] + 40.0 * frame.u[mid], frame.points_lps[mid] + 16.0 * frame.v[mid],
                      frame.points_lps[0] - 5.0 * frame.tangent[0], frame.points_lps[-1] + 5.0 * frame.tangent[-1]]
            assert np.isnan(frame.lps_to_index(beyond)).all(axis=1).all(), (orientation, frame.name)
            # the volume holds the CT at the frame's LPS points (SimpleITK's own linear interpolation)
            pick = rng.integers(0, np.array(frame.shape), (200, 3))
            lps = frame.index_to_lps(pick.astype(float))
            inside = [ct.TransformPhysicalPointToIndex(p) for p in lps]
            keep = [all(1 <= v < s - 1 for v, s in zip(i, ct.GetSize())) for i in inside]
            expected = np.array([ct.EvaluateAtPhysicalPoint(p, sitk.sitkLinear) if ok_ else np.nan
                                 for p, ok_ in zip(lps, keep)])
            got = frame.volume[tuple(pick.T)]
            assert np.nanmax(np.abs(got - expected)) < 0.01, (orientation, frame.name)


def test_same_anatomy_gives_the_same_frame_whatever_the_storage(phantoms):
    reference = phantoms["LPS"][2]
    for orientation in ("RAS", "LPI"):  # exact re-indexings of the LPS phantom (its tissue map; noise differs)
        for a, b in zip(reference, phantoms[orientation][2]):
            assert a.name == b.name and np.allclose(a.points_lps, b.points_lps)
            assert np.abs(a.tissue - b.tissue).max() < 1e-3, (orientation, a.name)
            assert np.abs(a.volume - b.volume).mean() < 15.0, (orientation, a.name)  # scanner noise only
    oblique = phantoms["oblique"][0]  # rendered on a tilted grid: the same LPS points, other voxels
    for a in reference:
        again = dataclasses.replace(a, volume=None)
        bone_a, bone_b = a.volume > 300, again.sample(oblique) > 300
        overlap = (bone_a & bone_b).sum() / max(1, (bone_a | bone_b).sum())
        assert overlap > 0.6, (a.name, overlap)


def test_frame_does_not_twist(phantoms):
    _, ribs, frames = phantoms["oblique"]
    centre = body_centre(ribs)
    for frame in frames:
        twist = section_twist_deg(frame)  # turned slowly towards outward: a fraction of a degree a section
        assert np.abs(twist).max() < 1.0 and np.abs(twist).mean() < 0.2, (frame.name, np.abs(twist).max())
        rib = next(r for r in ribs if r.name == frame.name)
        untwisted = section_twist_deg(rib_frame(rib, centre, turn_smooth_mm=None))  # the bare rotation-minimising frame
        assert np.abs(untwisted).max() < 0.01 and abs(untwisted.sum()) < 0.05, frame.name
    # the phantom ribs do bend out of plane: a frame tied to the horizontal (as the unfolded view's)
    # turns about the tangent by degrees along the same rib
    frame = frames[-1]
    horizontal = np.cross(frame.tangent, [0.0, 0.0, 1.0])
    horizontal /= np.linalg.norm(horizontal, axis=1, keepdims=True)
    tied = dataclasses.replace(frame, u=horizontal, v=np.cross(frame.tangent, horizontal))
    assert np.abs(section_twist_deg(tied)).sum() > 2.0


def test_first_cross_axis_points_away_from_the_body_centre(phantoms):
    _, ribs, frames = phantoms["oblique"]
    centre = body_centre(ribs)
    for frame in frames:
        cos = outward_cosine(frame, centre)
        assert np.isfinite(cos).mean() > 0.6 and np.nanmin(cos) > 0.8, (frame.name, np.nanmin(cos))
        # at the rib's most lateral section u points to the patient's own side (LPS +x is left)
        lateral = int(np.argmax(np.abs(frame.points_lps[:, 0] - centre[0])))
        assert frame.u[lateral, 0] * (1 if frame.side == "L" else -1) > 0.8, frame.name
        assert frame.v[:, 2].mean() > 0.5, frame.name  # second axis head-wards


def tube_ct(line_lps: np.ndarray, radius_mm: float, spacing=(0.9, 1.0, 1.3)) -> sitk.Image:
    """An oblique CT (0.9 x 1.0 x 1.3 mm) of a bright tube (1000 HU, soft edge) around a polyline, 0 HU elsewhere."""
    angles = np.radians([20.0, -12.0, 30.0])
    rot = sitk.Euler3DTransform((0, 0, 0), *angles).GetMatrix()
    from scipy.spatial import cKDTree
    spacing = np.array(spacing, float)
    lo, hi = line_lps.min(axis=0) - 8, line_lps.max(axis=0) + 8  # the frame reads -1024 HU beyond
    direction = np.array(rot).reshape(3, 3)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    local = corners @ direction  # coordinates along the grid's axes
    size = np.ceil((local.max(axis=0) - local.min(axis=0)) / spacing).astype(int) + 1
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing(spacing.tolist())
    image.SetDirection(direction.ravel().tolist())
    image.SetOrigin((direction @ local.min(axis=0)).tolist())
    pts = voxel_lps(image).reshape(-1, 3)
    dense = np.concatenate([np.linspace(a, b, 40, endpoint=False) for a, b in zip(line_lps[:-1], line_lps[1:])])
    dist, _ = cKDTree(dense).query(pts, distance_upper_bound=radius_mm + 1)
    values = 1000.0 * np.clip(radius_mm + 0.5 - dist, 0.0, 1.0)
    tube = sitk.GetImageFromArray(values.reshape(size[::-1]).astype(np.float32))
    tube.CopyInformation(image)
    return tube


def rib_length(line: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(line, axis=0), axis=1).sum())


def helix(n: int = 240) -> np.ndarray:
    s = np.linspace(0, 1.6, n)
    return np.column_stack([70 * np.cos(s), 70 * np.sin(s), -30 * s])


@pytest.mark.parametrize("shape", ["straight", "helix"])
def test_a_tube_becomes_a_straight_bar_centred_in_the_frame(shape):
    if shape == "straight":
        line = np.linspace([0.0, 0.0, 0.0], [90.0, -60.0, 45.0], 160)
    else:
        line = helix()
    ct = tube_ct(np.concatenate([2 * line[0] - line[8:0:-1], line, 2 * line[-1] - line[-2:-9:-1]]), radius_mm=4.0)
    frame = rib_frame(Rib("L", 5, line), centre_lps=[0.0, 0.0, 0.0])
    vol = frame.sample(ct)
    h, mm = frame.half, frame.voxel_mm
    across = (np.arange(2 * h + 1) - h) * mm
    w = np.clip(vol, 0, None)
    mass = w.sum(axis=(1, 2))
    cu = (w.sum(axis=2) * across).sum(axis=1) / mass
    cv = (w.sum(axis=1) * across).sum(axis=1) / mass
    offset = np.hypot(cu, cv)
    assert mass.min() > 0.8 * mass.max()  # bright all along
    assert offset.max() < 0.5, offset.max()
    head = frame.index_to_lps([-frame.arc0_mm / mm, h, h])  # arc 0 is the centreline's first point
    assert np.linalg.norm(head - line[0]) < 0.3
    assert abs(frame.length_mm - (rib_length(line) - 2 * frame.arc0_mm)) < 1.0  # runs on about 5 mm past both ends
    width = (w[:, h, :] > 500).sum(axis=1) * mm  # the bar's width across v at u = 0: the tube's diameter
    assert abs(np.median(width) - 8.0) < 1.0 and width.max() - width.min() <= 2 * mm + 1e-9


@pytest.mark.parametrize("case", ["helix", "fine grid, tight bend"])
def test_write_back_gives_every_ct_voxel_the_value_at_its_frame_coordinate(case):
    """Two blobs in separate runs of sections, one on the centreline and one towards a section's corner:
    the write-back (visiting only voxels near each run's non-zero values) equals the brute-force map of
    every CT voxel through `lps_to_index` and trilinear interpolation. On a CT finer than the frame,
    around a bend of 25 mm radius (sections stretched 1.5x at the corner), it must reach far enough."""
    if case == "helix":
        line = helix()
        ct = tube_ct(line, radius_mm=4.0)
    else:
        s = np.linspace(0, 1.3, 60)
        line = np.column_stack([25 * np.cos(s), 25 * np.sin(s), 5 * s])
        ct = tube_ct(line, radius_mm=4.0, spacing=(0.35, 0.4, 0.45))
    frame = rib_frame(Rib("L", 4, line), centre_lps=[0.0, 0.0, 0.0])
    grid = np.indices(frame.shape).reshape(3, -1).T
    values = np.zeros(frame.shape, np.float32)
    for centre, radius in (((frame.shape[0] * 0.3, frame.half, frame.half), 5.0),
                           ((frame.shape[0] * 0.7, frame.half + 9.0, frame.half - 7.0), 4.0)):
        d = np.linalg.norm((grid - np.array(centre)) * frame.voxel_mm, axis=1).reshape(frame.shape)
        values = np.maximum(values, np.clip(1.0 - d / radius, 0.0, None).astype(np.float32))
    out = frame_to_ct(frame, values, ct)
    lps = voxel_lps(ct).reshape(-1, 3)
    index = frame.lps_to_index(lps)
    inside = np.isfinite(index[:, 0])
    expected = np.zeros(len(lps), np.float32)
    expected[inside] = ndimage.map_coordinates(values, index[inside].T, order=1, mode="nearest")
    assert (expected > 0.5).sum() > 50  # both blobs reach the CT grid
    np.testing.assert_allclose(out.reshape(-1), expected, atol=1e-6)


def test_write_back_puts_a_ball_at_its_place_on_the_ct_grid():
    line = helix()
    ct = tube_ct(line, radius_mm=4.0)
    frame = rib_frame(Rib("R", 7, line), centre_lps=[0.0, 0.0, 0.0])
    centre_idx = np.array([frame.shape[0] * 0.4, frame.half + 8.3, frame.half - 5.6])  # off the centreline
    grid = np.indices(frame.shape).reshape(3, -1).T
    radius = 5.0
    ball = (np.linalg.norm((grid - centre_idx) * frame.voxel_mm, axis=1) <= radius).reshape(frame.shape)
    out = frame_to_ct(frame, ball.astype(np.float32), ct)
    lps = voxel_lps(ct)
    inside = out > 0.5
    expected = frame.index_to_lps(centre_idx)
    assert np.linalg.norm(lps[inside].mean(axis=0) - expected) < 0.5
    volume = inside.sum() * np.prod(ct.GetSpacing())
    assert abs(volume / (4 / 3 * np.pi * radius ** 3) - 1) < 0.1, volume
    # no holes: every CT voxel well inside the ball got the value (inverse sampling, not splatting)
    dist = np.linalg.norm(lps - expected, axis=-1)
    assert (out[dist < radius - 1.0] > 0.99).all()
    assert (out[dist > radius + 1.5] == 0).all()

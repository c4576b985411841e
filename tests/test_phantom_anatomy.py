"""Phantom anatomy and fracture truth: ribs, fractures, spine, tissue HU."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from RibFracSegLib.defaults import VERTEBRA_IDS
from RibFracSegLib.phantom import PhantomParams, Tissue, generate_phantom
from RibFracSegLib.phantom.anatomy import Anatomy
from RibFracSegLib.phantom.tissue import BONE, RIB_BONE

FULL_CONNECTIVITY = np.ones((3, 3, 3), bool)


def arr(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


@pytest.fixture(scope="module")
def chest():
    """A whole chest at 1.2 mm with fractures of every kind (seed chosen to include all four)."""
    return generate_phantom(PhantomParams(shape=(280, 280, 190), spacing=(1.2, 1.2, 1.8), fov="thorax",
                                          n_fractures=8, seed=11))


@pytest.fixture(scope="module")
def fine_chest():
    """A 100 mm slab at a real chest CT's resolution, for HU and annotation sizes."""
    return generate_phantom(PhantomParams(shape=(448, 448, 80), spacing=(0.75, 0.75, 1.25), fov="thorax",
                                          n_fractures=6, seed=5))


def test_24_ribs_are_separate_connected_bones(chest):
    ribs = arr(chest.rib_labels)
    bone = np.isin(arr(chest.tissue), BONE)
    components, _ = ndimage.label(bone, FULL_CONNECTIVITY)
    levels = arr(chest.vertebra_labels)
    broken = {f.rib for f in chest.fractures}
    labels = {r: i for i, r in enumerate([f"R{n}" for n in range(1, 13)] + [f"L{n}" for n in range(1, 13)], 1)}
    assert sorted(np.unique(ribs[ribs > 0])) == list(range(1, 25))
    for name, rib_id in labels.items():
        own = np.unique(components[ribs == rib_id])
        if name not in broken:
            assert len(own) == 1, f"unbroken rib {name} is in {len(own)} pieces"
        for comp in own:  # no piece of this rib is shared with another rib or with the spine
            members = components == comp
            assert set(np.unique(ribs[members])) == {rib_id}, f"rib {name} touches another rib"
            assert not levels[members].any(), f"rib {name} touches a vertebra"


def test_ribs_slope_down_from_spine_to_the_front(chest):
    for n in range(2, 11):
        for side in "RL":
            line = chest.rib_centerlines_lps[f"{side}{n}"]
            head, front = line[0], line[-1]
            assert front[2] < head[2] - 30, f"{side}{n} does not slope down"
            assert front[1] < head[1] - 100, f"{side}{n} does not reach the front of the chest"
            assert np.sign(line[len(line) // 2, 0] - line[0, 0]) == (1 if side == "L" else -1)


def test_fractures_lie_on_ribs_and_breaks_split_the_bone(chest):
    frac = arr(chest.fracture_labels)
    ribs = arr(chest.rib_labels)
    kinds = {f.kind for f in chest.fractures}
    assert kinds == {"displaced", "non-displaced", "buckle", "segmental"}
    rib_ids = {f"{s}{n}": n + (0 if s == "R" else 12) for s in "RL" for n in range(1, 13)}
    for f in chest.fractures:
        region = frac == f.label_id
        rib_id = rib_ids[f.rib]
        on_rib = ribs[region]
        assert (on_rib == rib_id).sum() > 0.1 * region.sum(), f"fracture {f.label_id} is not on rib {f.rib}"
        assert set(np.unique(on_rib)) <= {0, rib_id}
        # The truth centre is within a few mm of that rib's centreline.
        line = chest.rib_centerlines_lps[f.rib]
        assert np.min(np.linalg.norm(line - np.array(f.center_lps), axis=1)) < 6.0
        if f.kind in ("displaced", "segmental"):
            pieces, _ = ndimage.label(ribs == rib_id, FULL_CONNECTIVITY)
            touched = set(np.unique(pieces[ndimage.binary_dilation(region, FULL_CONNECTIVITY)])) - {0}
            expected = 3 if f.kind == "segmental" else 2
            assert len(touched) >= expected, f"{f.kind} fracture {f.label_id} does not split {f.rib}"


def test_fracture_annotations_are_sized_like_ribfrac(fine_chest):
    counts = [f.voxel_count for f in fine_chest.fractures]
    assert len(counts) == 6
    for f in fine_chest.fractures:
        hi = 8000 if f.kind == "segmental" else 4000
        assert 150 <= f.voxel_count <= hi, (f.kind, f.voxel_count)


def test_tissue_hu_ranges(fine_chest):
    hu = arr(fine_chest.image).astype(float)
    tissue = arr(fine_chest.tissue)
    expected = {Tissue.FAT: (-115, -85), Tissue.MUSCLE: (40, 60), Tissue.LUNG: (-880, -820),
                Tissue.AIR: (-1010, -990), Tissue.RIB_MARROW: (200, 300), Tissue.RIB_CORTEX: (700, 1200)}
    for cls, (lo, hi) in expected.items():
        mask = tissue == cls
        if cls not in (Tissue.RIB_CORTEX, Tissue.RIB_MARROW):  # thin layers: no erosion possible
            mask = ndimage.binary_erosion(mask, iterations=2)
        assert mask.sum() > 100, cls
        med = float(np.median(hu[mask]))
        assert lo <= med <= hi, f"{cls.name}: median {med:.0f} HU outside [{lo}, {hi}]"


def test_spine_levels_and_l3(tmp_path):
    case = generate_phantom(PhantomParams(shape=(160, 160, 170), spacing=(2.0, 2.0, 3.0), fov="thorax_abdomen",
                                          n_fractures=0, seed=2))
    names = [v.name for v in case.vertebrae]
    assert {"T12", "L1", "L2", "L3", "L4"} <= set(names)
    lumbar = [v for v in case.vertebrae if v.name.startswith("L")]
    s = [v.center_ras[2] for v in lumbar]
    assert all(a > b + 20 for a, b in zip(s, s[1:])), "L1..L5 must run caudally"
    assert [v.name for v in lumbar] == [f"L{i}" for i in range(1, len(lumbar) + 1)]
    levels = arr(case.vertebra_labels)
    for v in case.vertebrae:
        i, j, k = (int(round(c)) for c in v.center_ijk)
        assert levels[k, j, i] == v.label_id, v.name
    assert case.l3 is not None and case.l3.label_id == VERTEBRA_IDS["L3"]


@pytest.mark.parametrize("fov, l3_in_view, sacrum", [("thorax", False, False), ("abdomen_pelvis", True, True)])
def test_field_of_view(fov, l3_in_view, sacrum):
    case = generate_phantom(PhantomParams(shape=(150, 150, 120), spacing=(2.2, 2.2, 3.5), fov=fov,
                                          n_fractures=1, seed=4))
    assert (case.l3 is not None) == l3_in_view
    levels = np.unique(arr(case.vertebra_labels))
    assert (VERTEBRA_IDS["S"] in levels) == sacrum
    tissue = arr(case.tissue)
    assert (np.isin(tissue, RIB_BONE).sum() > 0)
    if fov == "thorax":
        assert (tissue == Tissue.LUNG).mean() > 0.05
    else:
        assert (tissue == Tissue.BLADDER).sum() > 0


@pytest.mark.parametrize("scale, fat", [(1.0, 18.0), (1.1, 28.0)])
def test_the_lungs_reach_the_posterior_ribs(scale, fat):
    """From the neck to the angle a rib lies on the lung (its centre 4-7 mm from it on the real chest
    CTs here), whatever the build: the rib step takes bone far from the lung for a scapula's. The
    cavity's ellipse alone left the spine-anchored necks of a large, fat phantom 10-20 mm off."""
    case = generate_phantom(PhantomParams(shape=(200, 200, 124), spacing=(2.0, 2.0, 3.0), fov="thorax",
                                          body_scale=scale, fat_mm=fat, n_fractures=0, seed=3))
    lung = arr(case.tissue) == Tissue.LUNG
    distance = ndimage.distance_transform_edt(~lung, sampling=case.tissue.GetSpacing()[::-1])
    medians = {}
    for side in "LR":
        for n in range(3, 11):
            line = case.rib_centerlines_lps[f"{side}{n}"]
            arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))]
            points = line[(arc >= 20) & (arc <= 60)]  # neck to angle
            idx = [case.tissue.TransformPhysicalPointToIndex(tuple(float(v) for v in p)) for p in points]
            medians[f"{side}{n}"] = float(np.median([distance[k, j, i] for i, j, k in idx]))
    assert max(medians.values()) <= 9.0, medians


@pytest.mark.parametrize("scale, fat", [(1.0, 8.0), (1.0, 18.0), (1.1, 28.0)])
def test_ribs_bend_smoothly_beyond_their_angle(scale, fat):
    """Round the chest wall a rib turns by at most 15 degrees over 2 mm (12 at most here), also where it
    crosses the body wall's step at the diaphragm (fat and muscle change there). Following that step, a
    lower rib was kinked by 20-43 degrees in 2 mm: a self-crossing cross-section the detector took for a
    break."""
    anat = Anatomy(scale, fat, np.random.default_rng(4))
    turns = {}
    for rib in anat.ribs:
        step = np.diff(rib.points, axis=0)
        unit = step / np.linalg.norm(step, axis=1)[:, None]
        k = int(round(2.0 / np.median(np.diff(rib.arc_mm))))
        angle = np.degrees(np.arccos(np.clip((unit[:-k] * unit[k:]).sum(axis=1), -1, 1)))
        turns[rib.label] = float(angle[rib.arc_mm[:-k - 1] >= 50].max())
    assert max(turns.values()) <= 15.0, sorted(turns.items(), key=lambda kv: -kv[1])[:3]

"""Phantom geometry: every stored orientation puts the same anatomy at the same RAS position."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib.defaults import PHANTOM_ORIENTATIONS
from RibFracSegLib.geometry import ras_to_lps
from RibFracSegLib.phantom import PhantomParams, Tissue, generate_phantom

BASE = dict(shape=(150, 170, 110), spacing=(2.0, 1.8, 3.0), fov="thorax", n_fractures=3, seed=21)


@pytest.fixture(scope="module")
def cases():
    return {o: generate_phantom(PhantomParams(orientation=o, **BASE)) for o in PHANTOM_ORIENTATIONS}


def value_at_ras(image: sitk.Image, ras) -> int:
    return int(image[image.TransformPhysicalPointToIndex(ras_to_lps(ras))])


def test_directions(cases):
    d = {o: np.array(c.image.GetDirection()).reshape(3, 3) for o, c in cases.items()}
    assert np.allclose(d["LPS"], np.eye(3))
    assert np.allclose(d["RAS"], np.diag([-1, -1, 1]))
    assert np.allclose(d["LPI"], np.diag([1, 1, -1]))
    off = d["oblique"]
    assert np.allclose(off @ off.T, np.eye(3)) and not np.allclose(np.abs(off), np.eye(3), atol=0.05)
    for c in cases.values():
        assert c.image.GetSize() == BASE["shape"] and np.allclose(c.image.GetSpacing(), BASE["spacing"])


def test_known_ras_points_land_on_the_right_voxel(cases):
    for orientation, case in cases.items():
        assert len(case.vertebrae) > 8
        for v in case.vertebrae:
            assert value_at_ras(case.vertebra_labels, v.center_ras) == v.label_id, (orientation, v.name)
            assert value_at_ras(case.tissue, v.center_ras) == Tissue.CANCELLOUS, (orientation, v.name)
        labels = sitk.GetArrayFromImage(case.fracture_labels)
        for f in case.fractures:
            idx = case.fracture_labels.TransformPhysicalPointToIndex(ras_to_lps(f.center_ras))
            i, j, k = idx
            around = labels[max(k - 1, 0):k + 2, max(j - 1, 0):j + 2, max(i - 1, 0):i + 2]
            assert f.label_id in around, (orientation, f.label_id)


def test_flipped_storage_is_an_exact_reindexing(cases):
    lps = sitk.GetArrayFromImage(cases["LPS"].tissue)
    ras = sitk.GetArrayFromImage(cases["RAS"].tissue)
    lpi = sitk.GetArrayFromImage(cases["LPI"].tissue)
    assert np.array_equal(ras, lps[:, ::-1, ::-1])
    assert np.array_equal(lpi, lps[::-1])
    # Same patient, same truth positions, whatever the storage.
    for o in ("RAS", "LPI"):
        for a, b in zip(cases["LPS"].fractures, cases[o].fractures):
            assert np.allclose(a.center_ras, b.center_ras, atol=1e-6)
        assert np.allclose([v.center_ras for v in cases["LPS"].vertebrae],
                           [v.center_ras for v in cases[o].vertebrae])


def test_reconstruction_circle():
    case = generate_phantom(PhantomParams(shape=(120, 120, 40), spacing=(2.5, 2.5, 4.0), n_fractures=0,
                                          outside_hu=-2048, seed=1))
    a = sitk.GetArrayFromImage(case.image)
    assert a.dtype == np.int16
    assert (a[:, 0, 0] == -2048).all() and (a[:, -1, -1] == -2048).all()
    assert a[:, 60, 60].min() > -2048


@pytest.mark.parametrize("orientation", ["LPS", "LPI"])
def test_a_thick_slice_averages_the_thin_slices_across_it(orientation):
    """With a slice profile a 3 mm slice is the mean of the three 1 mm slices it spans (same seed, no
    noise: the same anatomy and texture draws); the truth maps are those of its middle one. Sampled at
    its centre alone, a thin cortex running along the slices falls between them (dashed ribs)."""
    common = dict(fov="thorax", n_fractures=0, seed=5, noise_hu=0.0, orientation=orientation)
    thin = generate_phantom(PhantomParams(shape=(120, 110, 120), spacing=(2.5, 2.5, 1.0), **common))
    thick = generate_phantom(PhantomParams(shape=(120, 110, 40), spacing=(2.5, 2.5, 3.0), slice_profile=True, **common))
    assert np.allclose(thick.image.GetOrigin(), np.array(thin.image.GetOrigin()) + np.array(thin.image.GetDirection()
                       ).reshape(3, 3) @ [0, 0, 1.0])  # the thick slices' centres are the thin middle ones'
    a = lambda img: sitk.GetArrayFromImage(img).astype(np.float32)  # noqa: E731
    mean3 = a(thin.image).reshape(40, 3, 110, 120).mean(axis=1)
    bone = mean3 > 300
    assert bone.sum() > 2000
    assert np.abs(a(thick.image) - mean3).max() <= 1.0  # int16 rounding of each
    for role in ("rib_labels", "fracture_labels", "vertebra_labels", "tissue"):
        assert np.array_equal(a(getattr(thick, role)), a(getattr(thin, role))[1::3]), role

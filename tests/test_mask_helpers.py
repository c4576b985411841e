"""Mask helpers that replace slower scipy/numpy calls must give the same answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from RibFracSegLib import defaults
from RibFracSegLib.ribs.anatomy import fill_holes_per_slice, working_grid


@pytest.mark.parametrize("slab_slices", [None, 5])
def test_fill_holes_per_slice_is_binary_fill_holes_on_each_slice(monkeypatch, slab_slices):
    """Random blobs (holes of every size, holes open to a slice's edge, diagonal-only gaps) and one
    ring whose hole must fill in its slice but not leak into the empty slices above and below; the
    same done a slab of 5 slices at a time (as a full-resolution volume is)."""
    if slab_slices:
        monkeypatch.setattr(defaults, "SLAB_VOXELS", slab_slices * 70 * 90)
    rng = np.random.default_rng(0)
    for threshold in (0.4, 0.5, 0.6):
        mask = ndimage.binary_opening(rng.random((12, 70, 90)) > threshold)
        mask[5] = False
        yy, xx = np.mgrid[:70, :90]
        mask[5] = np.abs(np.hypot(yy - 35, xx - 45) - 15) < 2  # a ring: its inside is a hole
        expected = np.stack([ndimage.binary_fill_holes(s) for s in mask])
        filled = fill_holes_per_slice(mask)
        assert np.array_equal(filled, expected)
        assert filled[5, 35, 45] and not mask[5, 35, 45]
        assert np.array_equal(fill_holes_per_slice(mask[5]), expected[5])
    assert not fill_holes_per_slice(np.zeros((3, 8, 8), bool)).any()


@pytest.mark.parametrize("slab_voxels", [1 << 30, 3 * 2 * 40 * 33])
def test_working_grid_is_the_block_mean_with_air_below_air(monkeypatch, slab_voxels):
    """Block means of a CT with values below air (outside the scan's circle), leftover voxels dropped,
    whole or a slab of working slices at a time."""
    monkeypatch.setattr(defaults, "SLAB_VOXELS", slab_voxels)
    rng = np.random.default_rng(1)
    hu = rng.integers(-3024, 2000, size=(23, 40, 33)).astype(np.int16)
    grid = working_grid(hu, (0.75, 0.7, 0.5))  # RIB_WORK_MM 1.5: blocks of 2 x 2 x 3
    assert grid.factors == (2, 2, 3) and grid.hu.shape == (11, 20, 11) and grid.hu.dtype == np.float32
    clamped = np.maximum(hu[:22, :40, :33].astype(np.float64), defaults.AIR_HU)
    expected = clamped.reshape(11, 2, 20, 2, 11, 3).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(grid.hu, expected, atol=1e-3)
    assert grid.spacing_zyx == pytest.approx((1.5, 1.4, 1.5))

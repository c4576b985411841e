"""Mask helpers that replace slower scipy/numpy calls must give the same answer."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from RibFracSegLib.ribs.anatomy import fill_holes_per_slice


def test_fill_holes_per_slice_is_binary_fill_holes_on_each_slice():
    """Random blobs (holes of every size, holes open to a slice's edge, diagonal-only gaps) and one
    ring whose hole must fill in its slice but not leak into the empty slices above and below."""
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

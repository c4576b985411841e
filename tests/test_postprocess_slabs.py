"""Post-processing a slab of slices at a time (the spine's projection, the relabelling) gives what the
whole volume at once gives: same spine footprint, same components, same labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from RibFracSegLib import defaults
from RibFracSegLib.postprocess import PostprocessParams, find_fractures, spine_mask

SPACING = (1.0, 0.8, 0.8)


def _case() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    hu = np.full((40, 96, 96), 40, np.int16)
    yy, xx = np.mgrid[:96, :96]
    hu[:, (yy - 70) ** 2 + (xx - 48) ** 2 < 100] = 700  # a vertebral column the whole way down
    hu[:, 20:23, 10:80] = 500  # a rib-like bar in every slice
    prob = ndimage.gaussian_filter(rng.random(hu.shape), 1.5).astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    return hu, prob


def _run(hu: np.ndarray, prob: np.ndarray):
    labels = np.zeros(hu.shape, np.uint16)
    params = PostprocessParams(probability=0.6, min_volume_mm3=2.0, min_confidence=0.0)
    return find_fractures(prob, hu, SPACING, params, labels), labels, spine_mask(hu, SPACING, params)


def test_slabs_give_the_whole_volumes_answer(monkeypatch):
    hu, prob = _case()
    components, labels, spine = _run(hu, prob)
    assert len(components) > 10 and spine.sum() > 200  # something to compare
    monkeypatch.setattr(defaults, "SLAB_VOXELS", 3 * 96 * 96)  # 3 slices at a time: 14 slabs
    slabbed, slab_labels, slab_spine = _run(hu, prob)
    assert slabbed == components
    assert np.array_equal(slab_labels, labels) and np.array_equal(slab_spine, spine)
    assert not labels[:, spine].any()  # the spine's footprint holds no detection

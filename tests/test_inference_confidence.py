"""Detection-level confidence floor: components whose mean probability is below it are dropped."""

from __future__ import annotations

import numpy as np

from RibFracSegLib.postprocess import PostprocessParams, find_fractures


def test_min_confidence_drops_weak_components_and_renumbers():
    prob = np.zeros((20, 20, 30), np.float32)
    prob[5:10, 5:10, 2:7] = 0.5   # weak, first in raster order
    prob[5:10, 5:10, 20:25] = 0.9  # strong
    hu = np.zeros_like(prob)
    labels = np.zeros(prob.shape, np.uint16)
    keep_all = find_fractures(prob, hu, (1.0, 1.0, 1.0), PostprocessParams(remove_spine=False), labels.copy())
    assert [round(c.mean_probability, 2) for c in keep_all] == [0.5, 0.9]
    params = PostprocessParams(remove_spine=False, min_confidence=0.7)
    kept = find_fractures(prob, hu, (1.0, 1.0, 1.0), params, labels)
    assert [(c.label, round(c.mean_probability, 2), c.voxel_count) for c in kept] == [(1, 0.9, 125)]
    assert set(np.unique(labels)) == {0, 1} and (labels[5:10, 5:10, 2:7] == 0).all()

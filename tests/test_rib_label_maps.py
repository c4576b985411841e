"""Rib label maps from TotalSegmentator and phantoms in our convention, and centrelines computed from a map."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib.io import InputError
from RibFracSegLib.phantom import PhantomParams, generate_phantom
from RibFracSegLib.ribs.centrelines import ribs_from_label_map
from RibFracSegLib.ribs.label_maps import phantom_to_rib_labels, to_rib_labels


def _image(values):
    img = sitk.GetImageFromArray(np.array(values, np.uint8).reshape(1, 1, -1))
    img.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    return img


def test_totalsegmentator_ids_become_ours():
    ts = _image([0, 92, 103, 104, 115, 116, 118, 30])  # ribs, sternum, cartilage, a vertebra
    out = to_rib_labels(ts)
    assert sitk.GetArrayFromImage(out).ravel().tolist() == [0, 1, 12, 13, 24, 0, 0, 0]
    assert out.GetDirection() == ts.GetDirection()
    ours = _image([0, 1, 12, 13, 24, 25])
    assert sitk.GetArrayFromImage(to_rib_labels(ours)).ravel().tolist() == [0, 1, 12, 13, 24, 25]
    with pytest.raises(InputError, match="TotalSegmentator"):
        to_rib_labels(_image([0, 40, 50]))


def test_phantom_ribs_swap_sides():
    assert sitk.GetArrayFromImage(phantom_to_rib_labels(_image([0, 1, 12, 13, 24]))).ravel().tolist() == [0, 13, 24, 1, 12]


@pytest.fixture(scope="module")
def chest():
    return generate_phantom(PhantomParams(shape=(150, 130, 60), spacing=(2.4, 2.4, 2.5), fov="thorax",
                                          n_fractures=0, orientation="RAS", seed=4))


def test_centrelines_follow_the_ribs_from_head_to_front(chest):
    ribs = ribs_from_label_map(phantom_to_rib_labels(chest.rib_labels))
    assert len(ribs.ribs) >= 12
    for rib in ribs.ribs:
        truth = chest.rib_centerlines_lps[rib.name]
        mine = rib.centreline_lps
        if rib.length_mm < 60:  # ribs cut by the field of view
            continue
        gaps = np.min(np.linalg.norm(mine[:, None] - truth[None], axis=2), axis=1)
        assert np.median(gaps) < 2.5, rib.name
        head = np.argmin(np.linalg.norm(truth - mine[0], axis=1))
        end = np.argmin(np.linalg.norm(truth - mine[-1], axis=1))
        assert head < end, rib.name  # ordered like the truth: head first
        assert np.allclose(np.diff(rib.arc_mm), 1.0, atol=0.05)

"""What the shipped L3 network learned: L3 found on unseen phantoms (any storage), absent on a chest CT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from RibFracSegLib.checkpoint import load_checkpoint
from RibFracSegLib.l3 import body_composition, locate_l3
from RibFracSegLib.l3.decoding import point_to_row
from RibFracSegLib.phantom import PhantomParams, generate_phantom
from RibFracSegLib.shipped import shipped_model


@pytest.fixture(autouse=True, scope="module")
def _threads():
    torch.set_num_threads(2)


@pytest.mark.parametrize("orientation,fov,seed", [("RAS", "abdomen_pelvis", 424242), ("LPI", "thorax_abdomen", 424243)])
def test_l3_found_on_unseen_phantom(orientation, fov, seed):
    case = generate_phantom(PhantomParams(shape=(170, 170, 190), spacing=(2.2, 2.2, 2.5), fov=fov, n_fractures=0,
                                          orientation=orientation, seed=seed))
    assert case.l3 is not None
    l3 = locate_l3(case.image, shipped_model("l3"))
    assert l3.in_view and l3.confidence > 0.3
    assert abs(l3.row_mm - point_to_row(l3.projections, case.l3.center_lps)) < 6.0
    true_index = case.l3.center_ijk[2]  # both storages keep k as the superior-inferior axis
    assert abs(l3.slice_index - true_index) <= 2.5
    # the point is at the vertebral body's centre (truth: the body's centre), in 3-D
    assert np.linalg.norm(np.subtract(l3.center_lps, case.l3.center_lps)) < 6.0
    assert l3.center_ras == pytest.approx((-l3.center_lps[0], -l3.center_lps[1], l3.center_lps[2]))
    comp = body_composition(case.image, l3, height_m=1.75)
    assert 40 < comp.muscle_cm2 < 250 and comp.sat_cm2 > 20 and comp.vat_cm2 > 20
    assert comp.smi == pytest.approx(comp.muscle_cm2 / 1.75**2)


def test_thorax_only_ct_is_not_in_view():
    case = generate_phantom(PhantomParams(shape=(170, 170, 130), spacing=(2.2, 2.2, 2.5), fov="thorax", n_fractures=0,
                                          orientation="LPS", seed=424244))
    assert case.l3 is None
    l3 = locate_l3(case.image)
    threshold = load_checkpoint(shipped_model("l3")).thresholds["min_confidence"]
    assert not l3.in_view and l3.confidence < threshold - 0.05  # with a margin, not by a hair

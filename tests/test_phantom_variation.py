"""Patient variation for L3 training phantoms: off leaves the regular anatomy alone, on varies the
spine's proportions and curves and adds arms, a table, oral contrast and short abdominal scans."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib.l3.augment import short_field_of_view
from RibFracSegLib.l3.dataset import phantom_params
from RibFracSegLib.phantom import PhantomParams, Tissue, generate_phantom
from RibFracSegLib.phantom.anatomy import LEVELS, Anatomy
from RibFracSegLib.phantom.tissue import ORAL_CONTRAST_HU, hu_tables
from RibFracSegLib.phantom.variation import Variation, draw_variation


def test_no_variation_is_the_regular_anatomy():
    plain = Anatomy(1.0, 18.0, np.random.default_rng(4))
    unit = Anatomy(1.0, 18.0, np.random.default_rng(4), Variation())  # all factors 1, no scoliosis
    assert [(v.z_top, v.z_bottom, v.y_body) for v in plain.vertebrae] == \
        [(v.z_top, v.z_bottom, v.y_body) for v in unit.vertebrae]
    assert plain.spine_x(-300.0) == 0.0 and plain.z_sacrum_top == unit.z_sacrum_top
    assert PhantomParams().variation is False and phantom_params(1000).variation is False


def test_variation_moves_l3_and_bends_the_column():
    l3_z, shifts, rib12_drop = [], [], []
    for seed in range(12):
        var = draw_variation(np.random.default_rng(seed), LEVELS)
        anat = Anatomy(1.0, 18.0, np.random.default_rng(0), var)
        l3 = anat.by_name["L3"]
        assert 0.8 * 28 <= l3.z_top - l3.z_bottom <= 1.25 * 28  # body height within the drawn limits
        assert 0.4 * 10 - 1e-9 <= anat.disc_height("L3") <= 1.6 * 10 + 1e-9
        l3_z.append(l3.z_center - anat.by_name["T12"].z_center)
        shifts.append(max(abs(anat.spine_x(z)) for z in np.linspace(-500, 0, 51)))
        rib12 = next(r for r in anat.ribs if r.number == 12)
        rib12_drop.append(rib12.points[0, 2] - rib12.points[-1, 2])
    assert np.ptp(l3_z) > 10  # the distance T12 -> L3 varies by more than a centimetre across patients
    assert max(shifts) >= 3 and min(shifts) == 0.0  # some scolioses, some straight columns
    assert np.ptp(rib12_drop) > 10  # the lowest rib's tip: no fixed height above L3


def test_varied_phantom_has_table_and_short_abdominal_field():
    seed = next(s for s in range(20000, 20100) if phantom_params(s, variation=True).fov == "abdomen")
    params = phantom_params(seed, variation=True)
    assert 150 <= params.shape[2] * params.spacing[2] <= 280
    table = generate_phantom(PhantomParams(shape=(96, 96, 40), spacing=(3.5, 3.5, 5.0), fov="abdomen",
                                           n_fractures=0, seed=seed, variation=True))
    tissue = sitk.GetArrayViewFromImage(table.tissue)
    var = draw_variation(np.random.default_rng([seed, 11]), LEVELS)
    assert ((tissue == Tissue.TABLE).any()) == (var.table_gap_mm is not None)
    mean, _ = hu_tables(False, oral_contrast=True)
    assert mean[Tissue.BOWEL] == ORAL_CONTRAST_HU and hu_tables(False)[0][Tissue.BOWEL] == 25


@pytest.mark.parametrize("seed", range(6))
def test_short_field_of_view_keeps_the_l3_row_or_drops_it(seed):
    rng = np.random.default_rng(seed)
    image = np.tile(np.arange(500, dtype=np.float32)[:, None], (1, 8))  # value = original row
    cut, row = short_field_of_view(image, 300.0, rng)
    assert 120 <= cut.shape[0] <= 300
    top = int(cut[0, 0])
    if row is None:
        assert not 5 <= 300 - top < cut.shape[0] - 5
    else:
        assert row == pytest.approx(300 - top) and 5 <= row < cut.shape[0] - 5


def test_bright_blobs_stay_in_the_contrast_range():
    from RibFracSegLib.l3.augment import bright_blobs

    blobs = bright_blobs((120, 80), np.random.default_rng(2))
    assert blobs.shape == (120, 80) and 0.05 <= blobs.max() <= 0.6 and blobs.min() >= 0
    assert (blobs > 0.01).mean() < 0.9  # blobs, not a veil over the whole crop

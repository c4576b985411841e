"""Body composition on a synthetic L3 slice whose compartments are known pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest

from RibFracSegLib.l3.body_composition import IMAT, MUSCLE, SAT, VAT, slice_composition

PX = 0.8  # mm
SHAPE = (400, 440)  # rows = anterior->posterior, cols = right->left


def _ellipse(a_mm: float, b_mm: float, centre=(200, 220)) -> np.ndarray:
    rr, cc = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return ((cc - centre[1]) * PX / a_mm) ** 2 + ((rr - centre[0]) * PX / b_mm) ** 2 <= 1


def _disk(r_mm: float, row: float, col: float) -> np.ndarray:
    rr, cc = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return ((rr - row) ** 2 + (cc - col) ** 2) * PX**2 <= r_mm**2


@pytest.fixture(scope="module")
def slice_and_truth():
    """Skin, subcutaneous fat, a muscle wall, visceral fat with floating bowel/organs and gas, a
    vertebra with two psoas muscles against it, and a table under the patient."""
    body, under_skin = _ellipse(160, 120), _ellipse(157.5, 117.5)
    wall_out, wall_in = _ellipse(135, 95), _ellipse(123, 83)
    hu = np.full(SHAPE, -1000.0)
    hu[body] = 30  # skin
    hu[under_skin] = -100  # SAT
    hu[wall_out] = 50  # muscle wall
    hu[wall_in] = -100  # visceral fat
    vertebra = _disk(18, 260, 220)
    psoas = _disk(13, 262, 189) | _disk(13, 262, 251)
    organs = _disk(25, 150, 160) | _disk(22, 160, 290) | _disk(15, 215, 220)
    gas = _disk(6, 150, 160)
    hu[psoas] = 50
    hu[organs] = 40
    hu[gas] = -950
    hu[vertebra] = 600
    hu[385:392, 60:380] = 300  # table, separated from the body by air
    truth = {MUSCLE: (wall_out & ~wall_in) | psoas & ~vertebra, SAT: under_skin & ~wall_out,
             VAT: wall_in & ~(psoas | organs | vertebra)}
    return hu, truth


def test_areas_within_two_percent(slice_and_truth):
    hu, truth = slice_and_truth
    result = slice_composition(hu, (PX, PX), slice_index=7, height_m=1.70)
    px_cm2 = PX * PX / 100
    expected = {t: m.sum() * px_cm2 for t, m in truth.items()}
    assert result.muscle_cm2 == pytest.approx(expected[MUSCLE], rel=0.02)
    assert result.sat_cm2 == pytest.approx(expected[SAT], rel=0.02)
    assert result.vat_cm2 == pytest.approx(expected[VAT], rel=0.02)
    assert result.imat_cm2 < 0.02 * expected[MUSCLE]
    assert result.imat_cm2 == pytest.approx((result.mask == IMAT).sum() * px_cm2)
    assert result.smi == pytest.approx(result.muscle_cm2 / 1.70**2)
    assert result.slice_index == 7 and result.mask.shape == SHAPE
    # the organs (muscle-range HU) are not muscle, the table is nothing, SAT is outside the wall only
    assert not (result.mask[_disk(20, 150, 160) & ~_disk(6, 150, 160)] == MUSCLE).any()
    assert (result.mask[385:392] == 0).all()
    assert (result.mask[truth[SAT]] == SAT).mean() > 0.98
    assert (result.mask[truth[VAT]] == VAT).mean() > 0.98


def test_gap_in_wall_is_sealed(slice_and_truth):
    """A 6-mm gap in the muscle wall (e.g. the linea alba) must not let SAT flood the abdomen."""
    hu, truth = slice_and_truth
    hu = hu.copy()
    gap = np.zeros(SHAPE, bool)
    gap[:, 216:224] = True  # 6.4 mm wide, anterior midline
    gap &= _ellipse(135, 95) & ~_ellipse(123, 83)
    gap[200:] = False
    hu[gap] = -100
    result = slice_composition(hu, (PX, PX))
    px_cm2 = PX * PX / 100
    assert result.vat_cm2 == pytest.approx(truth[VAT].sum() * px_cm2, rel=0.03)
    assert result.sat_cm2 == pytest.approx(truth[SAT].sum() * px_cm2, rel=0.03)


def test_bad_height_is_refused(slice_and_truth):
    with pytest.raises(ValueError, match="metres"):
        slice_composition(slice_and_truth[0], (PX, PX), height_m=172)


@pytest.mark.parametrize("orientation", ["LPS", "RAS", "LPI"])
def test_tissue_labels_lie_on_the_l3_slice_of_the_ct_grid(orientation):
    """The tissue mask as a label image on the CT's own grid, whatever its storage order: every tissue
    voxel on the one slice through L3 (its physical height is L3's), as many voxels per tissue as the
    mask holds, and the CT's HU under them are the tissue's (muscle in the muscle range)."""
    import SimpleITK as sitk

    from RibFracSegLib import defaults
    from RibFracSegLib.l3.body_composition import body_composition, tissue_labels
    from RibFracSegLib.phantom import PhantomParams, generate_phantom

    case = generate_phantom(PhantomParams(shape=(120, 120, 170), spacing=(2.8, 2.8, 2.5), fov="thorax_abdomen",
                                          n_fractures=0, orientation=orientation, seed=424243))
    from types import SimpleNamespace

    l3 = SimpleNamespace(center_lps=case.l3.center_lps, slice_index=0)  # the true L3 stands for a found one
    body = body_composition(case.image, l3)
    labels = tissue_labels(case.image, l3, body)
    assert labels.GetSize() == case.image.GetSize() and labels.GetDirection() == case.image.GetDirection()
    arr = sitk.GetArrayViewFromImage(labels)
    for value in (MUSCLE, SAT, VAT, IMAT):
        assert int((arr == value).sum()) == int((body.mask == value).sum())
    idx = np.argwhere(arr > 0)
    heights = {round(labels.TransformIndexToPhysicalPoint([int(v) for v in k[::-1]])[2], 3) for k in idx[::50]}
    assert len(heights) == 1 and abs(heights.pop() - l3.center_lps[2]) <= 1.25  # half a slice
    hu = sitk.GetArrayViewFromImage(case.image)[arr == MUSCLE]
    assert hu.size and np.all((hu >= defaults.MUSCLE_HU[0]) & (hu <= defaults.MUSCLE_HU[1]))

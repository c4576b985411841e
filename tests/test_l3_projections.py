"""Projections are head-up and left-right consistent whatever the input's storage order."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib import defaults
from RibFracSegLib.l3.projections import compute_projections, fit_to_input, scale_hu

SPACING = (2.0, 2.0, 2.5)
SIZE = (60, 50, 80)  # (i, j, k): 120 x 100 x 200 mm


def _lps_phantom() -> sitk.Image:
    """Air box; a soft-tissue body; a bone rod (spine) along z; a bone 'skull' cap in the top 20 mm
    and a bone marker on the patient's left only in the lowest 20 mm."""
    arr = np.full(SIZE[::-1], -1000, np.int16)  # [k, j, i], k increases superiorly (LPS storage)
    arr[:, 10:40, 10:50] = 40
    arr[:, 28:34, 27:33] = 700  # spine, posterior of centre
    arr[-8:, 15:35, 15:45] = 1200  # top 8 slices = 20 mm: "skull"
    arr[:8, 20:30, 40:48] = 1000  # bottom 20 mm, i = 40..47: patient's left
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(SPACING)
    image.SetOrigin((-60.0, -50.0, 300.0))
    return image


@pytest.fixture(scope="module")
def reference():
    return compute_projections(_lps_phantom())


@pytest.mark.parametrize("flips", [(True, True, False), (False, False, True), (True, False, True)],
                         ids=["RAS", "LPI", "RPI"])
def test_same_projections_for_any_storage(reference, flips):
    flipped = sitk.Flip(_lps_phantom(), list(flips))
    # the flip keeps every voxel at its physical place: a same-content, differently-stored CT
    assert flipped.GetDirection() != _lps_phantom().GetDirection()
    proj = compute_projections(flipped)
    np.testing.assert_allclose(proj.frontal, reference.frontal, atol=1e-6)
    np.testing.assert_allclose(proj.sagittal, reference.sagittal, atol=1e-6)


def test_head_up_and_patient_left_on_image_right(reference):
    f = reference.frontal
    assert reference.spacing_mm == defaults.L3_MIP_SPACING_MM
    assert f.shape == (int((SIZE[2] - 1) * SPACING[2]) + 1, int((SIZE[0] - 1) * SPACING[0]) + 1)
    skull_rows = np.nonzero(f[:, 40] > 0.75)[0]  # 1200 HU -> (1200-100)/1400 = 0.79
    assert skull_rows.min() == 0 and skull_rows.max() == pytest.approx(20, abs=3)
    marker = np.nonzero(f[-15:].max(axis=0) > 0.6)[0]  # 1000 HU in the lowest rows
    assert marker.min() > f.shape[1] / 2  # on the image's right, like radiological display
    assert np.all(f[:, 0] == 0)  # air and soft tissue are below the 100-HU floor


def test_sagittal_slab_sees_the_spine_posteriorly(reference):
    s = reference.sagittal
    mid = s.shape[0] // 2
    spine_cols = np.nonzero(s[mid] > 0.3)[0]  # 700 HU -> 0.43
    assert spine_cols.min() == pytest.approx(28 * SPACING[1], abs=2)
    assert reference.centre_i == pytest.approx(29.5, abs=0.6)


def test_scale_and_fit_to_input():
    assert scale_hu(np.array([-1000.0, 100.0, 800.0, 3000.0])).tolist() == pytest.approx([0, 0, 0.5, 1])
    mip = np.ones((100, 600), np.float32)
    fitted, offset = fit_to_input(mip, cols=512, min_rows=128, row_multiple=32)
    assert fitted.shape == (128, 512) and offset == -44
    assert fitted[:100].min() == 1 and fitted[100:].max() == 0
    narrow, offset = fit_to_input(np.ones((700, 100), np.float32), cols=512, min_rows=512, row_multiple=32)
    assert narrow.shape == (704, 512) and offset == 206 and narrow[:700, 206:306].min() == 1 and narrow.sum() == 70000

"""Decoding: a MIP row maps to the right slice of the input grid, for anisotropic and flipped storage."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib.l3 import decoding
from RibFracSegLib.l3.locator import decode
from RibFracSegLib.l3.projections import compute_projections

SPACING = (0.7, 0.9, 2.5)  # anisotropic: z slices 2.5 mm, MIP rows 1 mm
N_SLICES = 80


def _volume(z_down: bool) -> sitk.Image:
    """A body with a spine; k runs inferiorly (LPI storage) if `z_down`, superiorly (LPS) otherwise."""
    arr = np.full((N_SLICES, 40, 50), -1000, np.int16)
    arr[:, 5:35, 5:45] = 40
    arr[:, 24:32, 20:30] = 700  # vertebral column, columns 20..29 -> centre i = 24.5, rows j 24..31 -> 27.5
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(SPACING)
    image.SetOrigin((10.0, -20.0, 500.0 if z_down else 500.0 - (N_SLICES - 1) * SPACING[2]))
    if z_down:
        image.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))
    return image  # both storages cover z = 302.5 .. 500 mm


@pytest.mark.parametrize("z_down", [False, True], ids=["LPS", "LPI"])
def test_known_row_maps_to_slice(z_down):
    image = _volume(z_down)
    proj = compute_projections(image)
    assert proj.frontal.shape[0] == int((N_SLICES - 1) * SPACING[2]) + 1  # 198 rows at 1 mm
    row = 100.0  # 100 mm below the most superior slice centre (z = 500): z = 400 mm = 40 slices down
    slices_down = 40
    expected = slices_down if z_down else N_SLICES - 1 - slices_down
    index, z_mm, lps, ras = decoding.row_to_point(proj, image, row)
    assert index == expected
    assert z_mm == pytest.approx(400.0, abs=1e-6)
    assert ras[2] == pytest.approx(400.0) and ras[0] == pytest.approx(-lps[0])
    # the point is at the vertebral body's centre (the deepest bone), not at the body's centre
    i, j, _ = image.TransformPhysicalPointToContinuousIndex(lps)
    assert i == pytest.approx(24.5, abs=0.6) and j == pytest.approx(27.5, abs=0.6)
    assert decoding.point_to_row(proj, lps) == pytest.approx(row, abs=1e-6)


def test_decode_profiles_to_result_and_threshold():
    image = _volume(z_down=True)
    proj = compute_projections(image)
    rows = np.arange(proj.frontal.shape[0], dtype=float)
    frontal = 0.8 * np.exp(-0.5 * ((rows - 62.4) / 3) ** 2)
    sagittal = 0.8 * np.exp(-0.5 * ((rows - 63.6) / 3) ** 2)
    result = decode(proj, image, {"frontal": frontal, "sagittal": sagittal})
    assert result.in_view and result.confidence == pytest.approx(0.8 * np.exp(-0.5 * 0.2**2), abs=0.005)
    assert result.row_mm == pytest.approx(63.0, abs=0.05)
    assert result.view_rows_mm["frontal"] == pytest.approx(62.4, abs=0.05)
    assert result.view_rows_mm["sagittal"] == pytest.approx(63.6, abs=0.05)
    assert result.slice_index == round(63.0 / SPACING[2])  # LPI: slice 0 is the most superior
    assert result.z_mm == pytest.approx(500.0 - 63.0, abs=0.05)
    weak = decode(proj, image, {"frontal": frontal / 10, "sagittal": sagittal / 10})
    assert not weak.in_view and weak.confidence < 0.1


def test_peak_refines_between_rows():
    profile = np.exp(-0.5 * ((np.arange(50) - 20.3) / 2.0) ** 2)
    r, v = decoding.peak(profile)
    assert r == pytest.approx(20.3, abs=0.05) and v == pytest.approx(profile.max())
    assert decoding.band_columns(512) == slice(154, 358)


def test_peak_at_the_last_row_is_not_in_view():
    """A confident peak pinned to the CT's edge means L3 lies beyond it (a chest CT ending at L2)."""
    image = _volume(z_down=False)
    proj = compute_projections(image)
    n = proj.frontal.shape[0]
    rows = np.arange(n, dtype=float)
    at_edge = 0.9 * np.exp(-0.5 * ((rows - (n + 1)) / 3) ** 2)
    result = decode(proj, image, {"frontal": at_edge, "sagittal": at_edge})
    assert result.confidence > 0.5 and result.row_mm > n - 2 and not result.in_view
    inside = 0.9 * np.exp(-0.5 * ((rows - (n - 12)) / 3) ** 2)
    assert decode(proj, image, {"frontal": inside, "sagittal": inside}).in_view

"""A trace that runs on past its bone (along costal cartilage) is cut where the bone ends; a rib
that is bone to its tip, or whose boneless tail is only the end's taper, keeps its centreline."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib import defaults
from RibFracSegLib.ribs.labels import Rib
from RibFracSegLib.ribs.tails import bony_length_mm, cut_at, cut_boneless_tails

SPACING = 0.8  # mm, isotropic


def _ct(bone_mm: float, cartilage_mm: float, start_mm: float = 20.0):
    """A straight rod along x (LPS): bone (450 HU, radius 4 mm) for `bone_mm`, then cartilage (120 HU)
    for `cartilage_mm`, in soft tissue (40 HU); and the rib traced along its whole length."""
    n = (int((start_mm + bone_mm + cartilage_mm + 30) / SPACING), int(60 / SPACING), int(60 / SPACING))  # x, y, z
    z, y, x = np.mgrid[:n[2], :n[1], :n[0]] * SPACING
    hu = np.full(z.shape, 40.0, np.float32)
    rod = np.hypot(y - 30.0, z - 30.0) <= 4.0
    hu[rod & (x >= start_mm) & (x < start_mm + bone_mm)] = 450.0
    hu[rod & (x >= start_mm + bone_mm) & (x < start_mm + bone_mm + cartilage_mm)] = 120.0
    ct = sitk.GetImageFromArray(hu)
    ct.SetSpacing((SPACING,) * 3)
    line = np.column_stack([np.linspace(start_mm, start_mm + bone_mm + cartilage_mm, 60),
                            np.full(60, 30.0), np.full(60, 30.0)])
    return ct, Rib("L", 7, line)


CENTRE = np.array([0.0, 90.0, 30.0])  # the body's centre, off the rod


@pytest.mark.parametrize("bone_mm, cartilage_mm", [(150.0, 30.0), (120.0, 45.0)])
def test_a_trace_run_on_along_cartilage_ends_where_its_bone_ends(bone_mm, cartilage_mm):
    ct, rib = _ct(bone_mm, cartilage_mm)
    assert rib.length_mm == pytest.approx(bone_mm + cartilage_mm)
    assert bony_length_mm(rib, ct, CENTRE) == pytest.approx(bone_mm, abs=1.5)
    cut, = cut_boneless_tails([rib], ct)
    assert cut.length_mm == pytest.approx(bone_mm, abs=1.5)
    assert np.allclose(cut.centreline_lps[0], rib.centreline_lps[0])  # the head end stays
    assert (cut.side, cut.number) == ("L", 7)


def test_a_rib_bone_to_its_tip_or_with_a_short_taper_keeps_its_centreline():
    for cartilage_mm in (0.0, defaults.RIB_TAIL_MIN_MM - 4.0):
        ct, rib = _ct(150.0, cartilage_mm)
        kept, = cut_boneless_tails([rib], ct)
        assert kept is rib


def test_cut_at_interpolates_the_new_end():
    rib = Rib("R", 3, np.array([[0.0, 0, 0], [10.0, 0, 0], [20.0, 0, 0]]))
    cut = cut_at(rib, 15.0)
    assert cut.length_mm == pytest.approx(15.0) and np.allclose(cut.centreline_lps[-1], [15.0, 0, 0])
    assert cut_at(rib, 20.0).length_mm == pytest.approx(20.0)

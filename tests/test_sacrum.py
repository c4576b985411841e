"""The sacrum finder (spine.sacrum) on phantoms whose pelvis looks real (phantom.pelvis: tilted, curved
sacrum with foramina, iliac wings to the L4/L5 disc, sacroiliac joints): the S1 endplate found within
3 mm in two storage orders, the iliac crests alone (a CT cut above the sacrum) give no sacrum, and a
lumbar+pelvis CT (no rib in view) gets L3 named from the sacrum's count."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib import defaults
from RibFracSegLib.l3.check import locate_l3_checked
from RibFracSegLib.phantom import PhantomParams, Tissue, generate_phantom
from RibFracSegLib.ribs.anatomy import column_landmarks
from RibFracSegLib.spine import vertebral_levels
from RibFracSegLib.spine.bodies import body_centres
from RibFracSegLib.spine.sacrum import find_sacrum


def _phantom(fov: str, orientation: str, seed: int):
    return generate_phantom(PhantomParams(shape=(176, 176, 130), spacing=(2.1, 2.1, 2.5), fov=fov, n_fractures=0,
                                          orientation=orientation, seed=seed, outside_hu=-1024))


@pytest.fixture(scope="module")
def pelvis_cases():
    return {"LPS": _phantom("abdomen_pelvis", "LPS", 31), "LPI": _phantom("lumbar_pelvis", "LPI", 32)}


def _finding(image: sitk.Image):
    marks = column_landmarks(image, slice_mm=defaults.SPINE_WORK_SLICE_MM)
    track = body_centres(marks.bone, marks.grid.hu, marks.track, marks.grid.spacing_zyx)
    return find_sacrum(marks.bone, track, marks.grid.spacing_zyx)


@pytest.mark.parametrize("order", ["LPS", "LPI"])
def test_sacrum_top_within_3_mm(pelvis_cases, order):
    case = pelvis_cases[order]
    truth = case.sacrum_top_lps
    assert truth is not None
    levels = vertebral_levels(case.image)
    assert levels.sacrum_top_mm is not None, levels.notes
    assert abs(levels.sacrum_top_mm - truth[2]) <= 3.0
    found = _finding(case.image)
    assert found.confidence >= 0.9 and found.column_above
    assert found.width_mm > 90.0  # the alae (and the ilia across the joints), wider than any lumbar body


def test_iliac_crests_alone_are_no_sacrum(pelvis_cases):
    case = pelvis_cases["LPS"]  # stored LPS: k runs up, so the slices above the S1 endplate are a k-range
    k_top = case.image.TransformPhysicalPointToContinuousIndex(case.sacrum_top_lps)[2]
    cut = int(np.ceil(k_top + 12.0 / case.image.GetSpacing()[2]))
    image = case.image[:, :, cut:]
    tissue = sitk.GetArrayViewFromImage(case.tissue)[cut:]
    # the crop holds L5, the iliac crests and wings: bone far lateral of the column
    lps = np.array(case.sacrum_top_lps)
    i_mid = image.TransformPhysicalPointToContinuousIndex(tuple(lps))[0]
    lateral = np.abs(np.arange(tissue.shape[2]) - i_mid) * case.image.GetSpacing()[0] > 70.0
    assert (tissue[:, :, lateral] == Tissue.CORTICAL).sum() * np.prod(case.image.GetSpacing()) > 20_000  # mm3
    found = _finding(image)
    assert found.top is None and found.confidence == 0.0
    assert vertebral_levels(image).sacrum_top_mm is None


def test_lumbar_pelvis_l3_named_from_the_sacrum(pelvis_cases):
    case = pelvis_cases["LPI"]
    assert case.l3 is not None and not any(v.name.startswith("T") for v in case.vertebrae)  # no rib level in view
    levels = vertebral_levels(case.image)
    assert levels.anchor == "sacrum"
    true_l3 = case.l3.center_lps[2]
    l3 = levels.by_name("L3")
    assert l3 is not None and l3.z_bottom_mm < true_l3 <= l3.z_top_mm  # the body named L3 is L3
    wrong = [(t.name, v.name) for t in case.vertebrae for v in levels.vertebrae
             if v.name and v.z_bottom_mm < t.center_lps[2] <= v.z_top_mm and v.name != t.name]
    assert not wrong
    check = locate_l3_checked(case.image)  # the count from the sacrum, checked against the network
    assert check.count_anchor == "sacrum" and "count" in check.source
    assert abs(check.z_mm - true_l3) <= 3.0

"""Ribs on phantoms: numbers are the truth's or absent (never wrong), in every storage order and
with the field of view cut above rib 1 or below rib 12; detections land on the truth's rib; the
on-rib region keeps every true fracture."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RibFracSegLib.phantom.dataset import sample_params
from RibFracSegLib.phantom.generate import generate_phantom
from RibFracSegLib.orientation import canonical_volume
from RibFracSegLib.preprocess import block_any
from RibFracSegLib.ribs import rib_from_label_value, segment_ribs
from RibFracSegLib.ribs.assign import locate_on_rib, near_ribs, rib_phrase
from RibFracSegLib.ribs.label_maps import phantom_to_rib_labels


def phantom_truth_labels(rib_labels: sitk.Image) -> np.ndarray:
    """The phantom's rib labels in our convention (1-12 left, 13-24 right), as an array."""
    return sitk.GetArrayFromImage(phantom_to_rib_labels(rib_labels)).astype(np.int16)


def numbering_report(ours: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(ribs numbered as the truth, numbered wrongly, labels left unnumbered) by majority overlap."""
    right = wrong = unnumbered = 0
    for value in np.unique(ours[ours > 0]):
        under = truth[ours == value]
        under = under[under > 0]
        majority = int(np.bincount(under).argmax()) if under.size else 0
        if value > 24:
            unnumbered += 1
        elif majority == value:
            right += 1
        else:
            wrong += 1
    return right, wrong, unnumbered


@pytest.fixture(scope="module")
def chest():
    params = sample_params(11, size=256, fov="thorax", orientation="LPS", n_fractures=6, slice_mm=1.5)
    case = generate_phantom(params)
    return case, segment_ribs(case.image)


def test_phantom_ribs_numbered_as_truth(chest):
    case, ribs = chest
    right, wrong, _ = numbering_report(sitk.GetArrayFromImage(ribs.labels), phantom_truth_labels(case.rib_labels))
    assert wrong == 0
    assert right >= 20, ribs.notes
    assert ribs.numbering == "rib 1"
    lengths = []
    for rib in ribs.ribs:  # centrelines run from the head (near the spine) outwards
        if rib.number and 3 <= rib.number <= 10:
            head, tip = rib.centreline_lps[0], rib.centreline_lps[-1]
            assert abs(head[0]) < abs(tip[0]) + 40  # head nearer the midline than the lateral/anterior end
            lengths.append(rib.length_mm)
    # most mid ribs are followed over most of their length (a displaced break can cut one short)
    assert 150 < np.median(lengths) < 450


@pytest.mark.parametrize("order", [(2, 0, 1), (1, 2, 0)])
def test_storage_order_does_not_change_ribs(chest, order):
    case, ribs = chest
    permuted = sitk.PermuteAxes(case.image, order)
    again = segment_ribs(permuted)
    back = sitk.GetArrayFromImage(sitk.Resample(again.labels, case.image, sitk.Transform(), sitk.sitkNearestNeighbor))
    right, wrong, _ = numbering_report(back, phantom_truth_labels(case.rib_labels))
    assert wrong == 0 and right >= 20
    assert sorted(r.name for r in again.ribs) == sorted(r.name for r in ribs.ribs)


@pytest.mark.parametrize("cut", ["above rib 1", "below rib 12"])
def test_cut_field_of_view_never_numbers_wrongly(chest, cut):
    case, _ = chest
    truth = phantom_truth_labels(case.rib_labels)
    axis = canonical_volume(case.image)  # LPS storage: array axis 0 is z, superior last
    nz = case.image.GetSize()[2]
    zs = np.flatnonzero(np.isin(truth, [1, 13]).any(axis=(1, 2)))  # slices of rib 1
    zb = np.flatnonzero(np.isin(truth, [12, 24]).any(axis=(1, 2)))  # slices of rib 12
    assert axis.flips == (False, False, False)
    lo, hi = (0, int(np.median(zs))) if cut == "above rib 1" else (int(np.median(zb)), nz)
    cropped = case.image[:, :, lo:hi]
    ribs = segment_ribs(cropped)
    right, wrong, _ = numbering_report(sitk.GetArrayFromImage(ribs.labels), truth[lo:hi])
    assert wrong == 0, ribs.notes
    assert len(ribs.ribs) >= 12


def test_fractures_are_located_on_their_rib_and_kept_by_the_on_rib_rule(chest):
    case, ribs = chest
    assert case.fractures
    volume = canonical_volume(case.image)
    near = near_ribs(ribs, volume, margin_mm=5.0)
    fracture_labels = volume.to_canonical(sitk.GetArrayViewFromImage(case.fracture_labels))
    numbered = {r.name for r in ribs.ribs}
    for truth in case.fractures:
        assert near[fracture_labels == truth.label_id].any(), f"fracture {truth.label_id} off the rib region"
        name, arc, region = locate_on_rib(truth.center_lps, ribs.ribs)
        if truth.rib in numbered:
            assert name == truth.rib
        else:  # its rib was left unnumbered: the side is still right
            assert name == f"unnumbered {truth.rib[0]}"
        assert arc is not None and arc >= 0 and region in ("posterior", "lateral", "anterior")
    outside = near.mean()
    assert outside < 0.2  # the region is the ribs plus a margin, not the whole chest


@pytest.mark.parametrize("cell", [8, 7])
def test_near_ribs_cells_are_the_block_any_of_the_near_mask(chest, cell):
    """The sliding window's skip cells near the ribs, made without the full-resolution mask, are the
    cells holding a voxel of that mask (edge cells padded)."""
    case, ribs = chest
    volume = canonical_volume(case.image)
    full = near_ribs(ribs, volume, margin_mm=20.0)
    cells = near_ribs(ribs, volume, margin_mm=20.0, cell=cell)
    assert np.array_equal(cells, block_any(full, cell))
    assert 0.05 < cells.mean() < 0.9


def test_rib_phrase_and_label_values():
    assert rib_phrase("R6", "lateral") == "right rib 6, lateral"
    assert rib_phrase("unnumbered L", "anterior") == "left rib (unnumbered), anterior"
    assert rib_phrase("none", "") == "no rib"
    assert rib_from_label_value(6) == ("L", 6) and rib_from_label_value(18) == ("R", 6)
    assert rib_from_label_value(26) == ("R", None)


def test_no_ribs_in_an_air_volume():
    air = sitk.Image(64, 64, 40, sitk.sitkInt16) - 1000
    air.SetSpacing((1.5, 1.5, 2.0))
    ribs = segment_ribs(air)
    assert ribs.ribs == [] and ribs.numbering == "none"
    assert sitk.GetArrayViewFromImage(ribs.labels).max() == 0


@pytest.mark.parametrize("storage", ["LPS", "PIR", "ASL", "RAI", "permuted"])
def test_skipping_by_ribs_keeps_every_true_fracture(chest, storage):
    """The pipeline's own rule: with a complete rib set, patches far from every rib are not computed;
    every voxel of every true fracture still is, whatever the storage order."""
    from RibFracSegLib import defaults
    from RibFracSegLib.inference import fracture_cells
    from RibFracSegLib.sliding_window import PatchGrid, covered_voxels, keep_mask

    case, ribs = chest
    if storage == "permuted":
        image, labels = (sitk.PermuteAxes(im, (2, 0, 1)) for im in (case.image, case.fracture_labels))
    else:
        image, labels = (sitk.DICOMOrient(im, storage) for im in (case.image, case.fracture_labels))
    if storage != "LPS":
        ribs = segment_ribs(image)
    volume = canonical_volume(image)
    cells, rule = fracture_cells(volume, ribs, defaults.BONE_HU)
    assert rule == "ribs", rule  # the phantom's rib set is complete, so the rib rule is what is tested
    grid = PatchGrid.build(volume.array.shape, defaults.PATCH_SIZE, defaults.OVERLAP)
    kept = keep_mask(grid, cells)
    computed = covered_voxels(grid, kept)
    fractures = volume.to_canonical(sitk.GetArrayViewFromImage(labels))
    assert computed[fractures > 0].all()
    bone = fracture_cells(volume, None, defaults.BONE_HU)[0]
    assert not (cells & ~bone).any() and cells.sum() < 0.8 * bone.sum()  # bone far from the ribs is left out
    assert sum(kept) <= sum(keep_mask(grid, bone)) < len(kept)


def test_an_incomplete_rib_set_falls_back_to_the_bone_rule(chest):
    """A rib the step missed must not go unexamined: drop one rib and the rule is bone, saying why."""
    from dataclasses import replace

    from RibFracSegLib import defaults
    from RibFracSegLib.inference import fracture_cells

    case, ribs = chest
    volume = canonical_volume(case.image)
    assert ribs.complete()
    partial = replace(ribs, ribs=[r for r in ribs.ribs if r.name != "R9"])
    assert not partial.complete()
    cells, rule = fracture_cells(volume, partial, defaults.BONE_HU)
    assert rule.startswith("bone (rib set incomplete") and "R9" not in rule and "L9" in rule
    assert np.array_equal(cells, fracture_cells(volume, None, defaults.BONE_HU)[0])


def test_too_coarse_a_ct_gets_no_ribs_rather_than_wrong_ones():
    image = sitk.Image(64, 56, 80, sitk.sitkInt16) - 1000
    image.SetSpacing((5.0, 5.0, 6.0))
    ribs = segment_ribs(image)
    assert ribs.ribs == [] and "too coarse" in ribs.notes[0]


def test_five_mm_slices_read_with_a_rounding_error_are_not_too_coarse():
    """Slicer's reader derives 5 mm slices as 5.000000000000001 mm: still 5 mm, the limit itself."""
    from RibFracSegLib.ribs.anatomy import too_coarse_for_ribs

    assert too_coarse_for_ribs((5.000000000000001, 0.7, 0.7)) is None
    assert too_coarse_for_ribs((5.01, 0.7, 0.7)) and too_coarse_for_ribs((2.5, 3.2, 3.2))

"""Whole pipeline on phantoms: detections land on the truth for RAS-, LPS- and obliquely-stored CTs.

The network is a known function (see inference_helpers): the truth fracture voxels are painted with
a marker HU that only the checkpoint's HU window lets through, so any error in orientation,
blending, skipping or index mapping shows up as a centroid away from the truth.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from RibFracSegLib import geometry
from RibFracSegLib.inference import segment_ct
from RibFracSegLib.phantom import PhantomParams, generate_phantom
from RibFracSegLib.postprocess import PostprocessParams, spine_mask
from RibFracSegLib.orientation import canonical_volume

from inference_helpers import checkpoint

torch.set_num_threads(1)
MARKER_HU = 3000
# window (1500, 3000): the marker maps to +1, every real tissue (< 1500 HU) to -1; logit = 20 x - 10
MARKER_CKPT = checkpoint("test_pointwise", patch=32, hu_window=(1500.0, 3000.0), gain=20.0, bias=-10.0)


def _marked(case) -> sitk.Image:
    hu = sitk.GetArrayFromImage(case.image)
    hu[sitk.GetArrayViewFromImage(case.fracture_labels) > 0] = MARKER_HU
    image = sitk.GetImageFromArray(hu)
    image.CopyInformation(case.image)
    return image


def _detections_by_truth(result, case) -> dict[int, list]:
    """Detections grouped by the truth label their voxels lie on (a segmental fracture may be two pieces)."""
    truth = sitk.GetArrayViewFromImage(case.fracture_labels)
    instances = sitk.GetArrayViewFromImage(result.instances)
    by_id = {d.id: d for d in result.detections}
    return {t.label_id: [by_id[i] for i in np.unique(instances[truth == t.label_id]) if i] for t in case.fractures}


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "oblique"])
def test_detection_centroids_equal_phantom_truth(orientation):
    case = generate_phantom(PhantomParams(shape=(128, 128, 80), spacing=(2.6, 2.6, 3.5), n_fractures=4,
                                          orientation=orientation, seed=3))
    image = _marked(case)
    result = segment_ct(image, MARKER_CKPT, overlap=0.5, precision="fp32",
                        postprocess=PostprocessParams(remove_spine=False, min_volume_mm3=0.0))
    assert 0 < result.patches_skipped < result.patches_total  # skipping was on and the markers survived it
    assert geometry.same_grid(result.instances, image)
    assert np.array_equal(sitk.GetArrayViewFromImage(result.instances) > 0,
                          sitk.GetArrayViewFromImage(case.fracture_labels) > 0)
    groups = _detections_by_truth(result, case)
    assert sum(len(g) for g in groups.values()) == len(result.detections)  # every detection is on one truth
    on_rib = [d for d in result.detections if d.rib != "none"]  # measured in their rib's frame by segment_ct
    assert on_rib and all(d.gap_mm is not None and d.frame_code >= 0 for d in on_rib)
    for truth in case.fractures:
        pieces = groups[truth.label_id]
        weights = np.array([d.voxel_count for d in pieces], dtype=float)
        center_ras = np.average([d.center_ras for d in pieces], axis=0, weights=weights)
        error_ijk = np.array(geometry.ras_to_index(image, center_ras)) - np.array(truth.center_ijk)
        assert np.abs(error_ijk).max() < 0.5, (orientation, truth.label_id, error_ijk)
        assert np.allclose(np.average([d.centroid_ijk for d in pieces], axis=0, weights=weights),
                           truth.center_ijk, atol=0.5)
        assert weights.sum() == truth.voxel_count
        for d in pieces:
            assert np.allclose(geometry.ras_to_lps(d.center_ras), d.center_lps)
            assert d.volume_mm3 == pytest.approx(d.voxel_count * float(np.prod(image.GetSpacing())))
            assert d.confidence > 0.99
            lo, hi = d.bbox_ijk
            assert all(l - 0.5 <= c <= h + 0.5 for l, c, h in zip(lo, d.centroid_ijk, hi))


def test_spine_step_finds_the_spine_in_any_storage():
    """The spine footprint is found from the image whatever the storage; a marker on it is dropped."""
    counts, centers = {}, []
    for orientation in ("LPS", "RAS", "LPI"):
        case = generate_phantom(PhantomParams(shape=(128, 128, 80), spacing=(2.6, 2.6, 3.5), n_fractures=3,
                                              orientation=orientation, seed=5))
        image = _marked(case)
        volume = canonical_volume(image)
        footprint = spine_mask(volume.array, volume.spacing_zyx, PostprocessParams())
        t8 = next(v for v in case.vertebrae if v.name == "T8")
        t8_kji = np.array(t8.center_ijk)[::-1]  # canonical slice through T8: undo the storage of axis 0
        k = volume.array.shape[0] - 1 - t8_kji[volume.axes[0]] if volume.flips[0] else t8_kji[volume.axes[0]]
        j, i = np.argwhere(footprint).mean(axis=0)
        marker_ijk = np.rint(volume.index_to_input(np.array([k, j, i]))).astype(int)
        centers.append(np.array(image.TransformContinuousIndexToPhysicalPoint(marker_ijk.tolist())))
        # FracNet's projection rule keeps the densest column: on our phantoms the posterior arch, behind the body
        offset = centers[-1][:2] - np.array(t8.center_lps[:2])
        assert abs(offset[0]) < 10.0 and 0.0 <= offset[1] < 50.0  # mm: on the midline, posterior to the body
        hu = sitk.GetArrayFromImage(image)
        hu[tuple(slice(c - 1, c + 2) for c in marker_ijk[::-1])] = MARKER_HU
        marked = sitk.GetImageFromArray(hu)
        marked.CopyInformation(image)
        result = segment_ct(marked, MARKER_CKPT, precision="fp32", postprocess=PostprocessParams(remove_small=False, on_rib=False))
        assert all(np.abs(np.array(d.centroid_ijk) - marker_ijk).max() > 3 for d in result.detections)
        kept = segment_ct(marked, MARKER_CKPT, precision="fp32",
                          postprocess=PostprocessParams(remove_small=False, remove_spine=False, on_rib=False))
        assert len(kept.detections) == len(result.detections) + 1  # only the spine marker was removed
        counts[orientation] = len(result.detections)
    assert len(set(counts.values())) == 1 and counts["LPS"] >= 2
    assert max(np.linalg.norm(c - centers[0]) for c in centers) < 4.0  # same place in mm for every storage

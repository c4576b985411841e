"""Scans with little or nothing to look at: air only, one slice, no bone, long runs of skipped slices.

A long run of slices without bone (air below the lungs, a gap between two scanned regions) means
no computed patch for more than a patch depth; the aggregator must close those slices with 0.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from RibFracSegLib.inference import segment_ct
from RibFracSegLib.sliding_window import SlabAggregator

from inference_helpers import checkpoint

torch.set_num_threads(1)
POINTWISE = checkpoint("test_pointwise", patch=16)  # probability = sigmoid(3 * window(x) + 0.5)


def _image(array: np.ndarray, spacing=(1.0, 1.0, 2.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.int16))
    image.SetSpacing(spacing)
    return image


def test_aggregator_closes_a_gap_deeper_than_one_patch_with_zeros():
    agg = SlabAggregator((40, 3, 3), np.ones((8, 3, 3), np.float32))
    agg.add((slice(0, 8), slice(0, 3), slice(0, 3)), np.full((8, 3, 3), 2.0, np.float32))
    agg.add((slice(4, 12), slice(0, 3), slice(0, 3)), np.full((8, 3, 3), 4.0, np.float32))
    agg.add((slice(30, 38), slice(0, 3), slice(0, 3)), np.full((8, 3, 3), 6.0, np.float32))  # 18 slices skipped
    out = agg.finish()
    assert out[:4, 0, 0].tolist() == [2.0] * 4
    assert out[4:8, 0, 0].tolist() == [3.0] * 4  # equal weights: the mean of 2 and 4
    assert out[8:12, 0, 0].tolist() == [4.0] * 4
    assert not out[12:30].any()
    assert out[30:38, 1, 1].tolist() == [6.0] * 8 and not out[38:].any()


def test_air_only_volume_gives_no_detection_and_no_crash():
    result = segment_ct(_image(np.full((80, 96, 96), -1000)), POINTWISE, device="cpu")
    assert result.detections == [] and result.patches_skipped == result.patches_total > 0
    assert not sitk.GetArrayViewFromImage(result.instances).any()


def test_bone_at_both_ends_of_a_long_bone_free_run():
    array = np.full((120, 32, 32), -1000, np.int16)
    array[:, 4:28, 4:28] = -150  # a body of fat (probability below the threshold)
    array[2:8, 10:20, 10:20] = 1000  # bone at the top ...
    array[112:118, 10:20, 10:20] = 1000  # ... and at the bottom, 100 slices apart
    result = segment_ct(_image(array), POINTWISE, device="cpu", overlap=0.5, return_probability=True)
    probability = sitk.GetArrayFromImage(result.probability)
    assert len(result.detections) == 2
    assert sorted(d.centroid_ijk for d in result.detections) == [pytest.approx((14.5, 14.5, 4.5)),
                                                                 pytest.approx((14.5, 14.5, 114.5))]
    assert not probability[30:90].any()  # no computed patch there
    expected = 1.0 / (1.0 + np.exp(-3.5))  # bone saturates the window at +1
    assert probability[5, 15, 15] == pytest.approx(expected, abs=1e-5)


def test_one_slice_volume_is_segmented_without_crash():
    array = np.full((1, 96, 96), -1000, np.int16)
    array[0, 4:92, 4:92] = -150
    array[0, 36:56, 36:56] = 1000  # the spine (removed by post-processing) ...
    array[0, 10:20, 70:80] = 1000  # ... and a 100 mm^3 "rib" at 1 x 1 x 1 mm
    result = segment_ct(_image(array, spacing=(1.0, 1.0, 1.0)), POINTWISE, device="cpu")
    assert [d.voxel_count for d in result.detections] == [100]
    assert result.detections[0].centroid_ijk == pytest.approx((74.5, 14.5, 0.0))


def test_bone_free_body_gives_no_detection():
    array = np.full((48, 64, 64), -1000, np.int16)
    array[:, 8:56, 8:56] = 40  # soft tissue, no bone: every patch is skipped
    result = segment_ct(_image(array), POINTWISE, device="cpu")
    assert result.detections == [] and result.patches_skipped == result.patches_total > 0

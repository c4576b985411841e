"""The candidate classifier's mechanics: crops on a fixed patient-space grid, re-scoring, typing,
dropping and renumbering detections, the operating point, and the checkpoint that carries it."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from RibFracSegLib.candidates.classifier import keep_detections, type_code
from RibFracSegLib.candidates.crops import extract_crops
from RibFracSegLib.candidates.operating import CurvePoint, choose_floor, curve
from RibFracSegLib.checkpoint import load_checkpoint, save_checkpoint
from RibFracSegLib.inference import segment_ct
from RibFracSegLib.networks import register_network
from RibFracSegLib.postprocess import PostprocessParams

from inference_helpers import checkpoint


@register_network("test_centre_value")
class CentreValue(nn.Module):
    """'Fracture, displaced' when the crop's centre is brighter than 0.5 (normalised), else 'no fracture'."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.shape[-1] // 2
        c = x[:, 0, v, v, v]
        return torch.stack([-40 * (c - 0.5), 2 * c, 0 * c, 0 * c, -c], dim=1)


@pytest.mark.parametrize("orientation", ["LPS", "PIR", "RAI"])
def test_crop_is_centred_on_the_point_whatever_the_storage(orientation):
    arr = np.full((40, 50, 60), -1000, np.int16)
    arr[22, 31, 17] = 1000  # one bright voxel
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.8, 0.9, 2.0))
    image.SetOrigin((-20.0, 30.0, 100.0))
    point = image.TransformIndexToPhysicalPoint((17, 31, 22))
    stored = sitk.DICOMOrient(image, orientation)
    crop = extract_crops(stored, [point], voxels=9, spacing_mm=0.5)[0]
    assert crop.shape == (9, 9, 9)
    assert np.unravel_index(np.argmax(crop), crop.shape) == (4, 4, 4)
    assert crop[4, 4, 4] == pytest.approx(1000, abs=1)
    # one voxel along L (array axis 2) at 0.5 mm is inside the 0.8 mm voxel's interpolation: brighter than air
    assert -1000 < crop[4, 4, 5] < 1000
    assert crop[0, 0, 0] == pytest.approx(-1000)


def test_type_code_abstains_below_the_floor():
    assert type_code([0.1, 0.7, 0.1, 0.1], 0.4) == 2
    assert type_code([0.3, 0.3, 0.2, 0.2], 0.4) == -1


def test_curve_and_floor_from_validation_candidates():
    scans = [(np.array([0.9, 0.8, 0.3, 0.2]), np.array([1, 1, 0, 0]), 2),  # fracture 1 found twice, fracture 2 missed
             (np.array([0.6, 0.05]), np.array([3, 0]), 1)]
    points = {p.floor: p for p in curve(scans)}
    assert points[0.0].recall == pytest.approx(2 / 3) and points[0.0].fp_per_scan == pytest.approx(1.5)
    assert points[0.25].fp_per_scan == pytest.approx(0.5)
    assert points[0.7].recall == pytest.approx(1 / 3)
    assert choose_floor(list(points.values()), tolerance=0.0).floor == 0.6
    assert choose_floor([CurvePoint(0.0, 1.0, 5), CurvePoint(0.5, 0.99, 1), CurvePoint(0.9, 0.5, 0)], 0.02).floor == 0.5


def _two_blobs() -> sitk.Image:
    arr = np.full((48, 48, 48), -1000, np.int16)
    arr[4:44, 4:44, 4:44] = 0  # a body around both (patches outside the body are skipped)
    arr[10:16, 10:16, 10:16] = 900  # "fracture": bright centre
    arr[30:36, 30:36, 30:36] = 600  # "not a fracture"
    image = sitk.GetImageFromArray(arr)
    image.SetOrigin((5.0, -7.0, 20.0))
    return image


def _with_classifier(floor: float):
    ckpt = checkpoint("test_pointwise", patch=16)
    ckpt.candidate_classifier = {"arch": "test_centre_value", "hparams": {}, "state_dict": {}, "crop_voxels": 8,
                                 "crop_mm": 1.0, "min_probability": floor, "min_type_probability": 0.4}
    return ckpt


def test_segment_ct_rescores_types_and_drops_with_the_checkpoints_classifier(tmp_path):
    image = _two_blobs()
    params = PostprocessParams(probability=0.5, remove_spine=False)
    first = segment_ct(image, _with_classifier(0.5), postprocess=params, find_ribs=False, classify_candidates=False)
    assert len(first.detections) == 2 and all(d.label_code == -1 and not d.code_probabilities for d in first.detections)
    path = save_checkpoint(tmp_path / "two_stage.pt", _with_classifier(0.5))
    result = segment_ct(image, load_checkpoint(path), postprocess=params, find_ribs=False)
    assert len(result.detections) == 1
    d = result.detections[0]
    assert d.id == 1 and d.label_code == 1
    assert d.centroid_ijk == pytest.approx((12.5, 12.5, 12.5))
    c = (900 + 200) / 1200 * 2 - 1
    logits = torch.tensor([-40 * (c - 0.5), 2 * c, 0, 0, -c])
    p = torch.softmax(logits, 0).numpy()
    assert d.confidence == pytest.approx(1 - p[0], abs=1e-5)
    assert d.code_probabilities == pytest.approx(tuple(p[1:] / p[1:].sum()), abs=1e-4)
    assert d.network_confidence == pytest.approx(next(f.confidence for f in first.detections
                                                      if f.centroid_ijk == d.centroid_ijk))
    labels = sitk.GetArrayFromImage(result.instances)
    assert set(np.unique(labels)) == {0, 1}
    assert labels[12, 12, 12] == 1 and labels[32, 32, 32] == 0  # the dim blob is erased from the instances
    none_dropped = segment_ct(image, _with_classifier(0.0), postprocess=params, find_ribs=False)
    assert len(none_dropped.detections) == 2


def test_keep_detections_renumbers_in_place():
    from RibFracSegLib.detections import Detection

    labels = np.array([[0, 1, 2, 3, 3]], np.uint16)
    dets = [Detection(i, 0.5, 1, 1.0, (0, 0, 0), (0, 0, 0), (0, 0, 0), ((0, 0, 0), (0, 0, 0))) for i in (1, 2, 3)]
    kept = keep_detections([dets[0], dets[2]], labels)
    assert [d.id for d in kept] == [1, 2]
    assert labels.tolist() == [[0, 1, 0, 2, 2]]

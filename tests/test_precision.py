"""Precision calibration: a faster precision is kept only when it gives the same fractures as fp32.

The CT is a soft-tissue block with three marker blobs; the networks are known functions (see
inference_helpers), one of which answers differently under autocast, as a precision-sensitive
network would.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from RibFracSegLib import defaults
from RibFracSegLib.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from RibFracSegLib.inference import segment_ct
from RibFracSegLib.networks import register_network
from RibFracSegLib.precision import compare_results, store_calibration, stored_precision
from RibFracSegLib.precision_calibration import calibrate_precision

from inference_helpers import checkpoint, native_and_faster

torch.set_num_threads(1)
WINDOW = dict(patch=32, hu_window=(1500.0, 3000.0))
BLOBS = ((12, 20, 20), (30, 40, 25), (48, 22, 44))  # z, y, x corners of 6^3 marker blobs


@register_network("test_autocast_sensitive")
class AutocastSensitive(nn.Module):
    """logit = 20 x - 10, but 9.5 lower under CPU/CUDA autocast: fp32 confidence ~1, autocast ~0.6."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shift = 9.5 if torch.is_autocast_enabled(x.device.type) else 0.0
        return self.gain * x - 10.0 - shift


def _ct() -> sitk.Image:
    hu = np.full((64, 64, 64), 40, np.int16)
    hu[:, :6], hu[:, -6:] = -1000, -1000  # air around the body
    for z, y, x in BLOBS:
        hu[z:z + 6, y:y + 6, x:x + 6] = 3000
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((1.0, 1.0, 1.0))
    return image


def _sensitive() -> Checkpoint:
    return Checkpoint.from_model("test_autocast_sensitive", AutocastSensitive(), {}, patch_size=(32,) * 3,
                                 preprocessing={"hu_window": [1500.0, 3000.0], "normalisation": "window_to_minus1_1",
                                                "target_spacing": None})


def test_same_fractures_needs_same_count_overlap_and_confidence():
    image, ckpt = _ct(), checkpoint("test_pointwise", gain=20.0, bias=-10.0, **WINDOW)
    fp32 = segment_ct(image, ckpt, precision="fp32", find_ribs=False)
    assert len(fp32.detections) == len(BLOBS)
    assert compare_results("ct", "bf16", fp32, fp32).same

    nudged = replace(fp32, detections=[replace(d, confidence=d.confidence - 0.03) if d.id == 2 else d
                                       for d in fp32.detections])
    c = compare_results("ct", "bf16", fp32, nudged)
    assert not c.same and c.matched == 3 and abs(c.max_confidence_diff - 0.03) < 1e-6

    labels = sitk.GetArrayFromImage(fp32.instances)
    shrunk = labels.copy()
    shrunk[(labels == 1) & (np.arange(64)[:, None, None] >= BLOBS[0][0] + 5)] = 0  # 5 of 6 slices: IoU 0.83
    moved = replace(fp32, instances=sitk.GetImageFromArray(shrunk))
    c = compare_results("ct", "bf16", fp32, moved)
    assert not c.same and c.matched == 2 and c.count_other == 3

    fewer = replace(fp32, detections=fp32.detections[:2])
    assert not compare_results("ct", "bf16", fp32, fewer).same


def test_calibration_keeps_bf16_when_the_fractures_are_the_same(tmp_path, monkeypatch):
    native_and_faster(monkeypatch)
    ckpt = checkpoint("test_pointwise", gain=20.0, bias=-10.0, **WINDOW)
    assert stored_precision(ckpt, "cpu") is None
    calibration = calibrate_precision(ckpt, [("a", _ct())], candidates=["bf16"], log=lambda _: None)
    assert calibration.chosen == "bf16" and calibration.cases[0].same and calibration.cases[0].count_fp32 == 3
    path = save_checkpoint(tmp_path / "calibrated.pt", store_calibration(ckpt, calibration))
    loaded = load_checkpoint(path)
    assert stored_precision(loaded, "cpu") == "bf16" and stored_precision(loaded, "cuda") is None
    assert loaded.inference["precision_calibration"]["cpu"]["cases"][0]["matched"] == 3
    result = segment_ct(_ct(), loaded, find_ribs=False)  # precision "auto" reads the verdict
    assert result.device == "cpu (bf16)" and len(result.detections) == 3


def test_calibration_refuses_a_precision_that_changes_the_fractures(tmp_path, monkeypatch):
    native_and_faster(monkeypatch)
    ckpt = _sensitive()
    calibration = calibrate_precision(ckpt, [("a", _ct())], log=lambda _: None)
    assert calibration.chosen == "fp32"
    bf16 = [c for c in calibration.cases if c.precision == "bf16"][0]
    assert bf16.count_other == bf16.count_fp32 == 3 and bf16.max_confidence_diff > 0.3 and not bf16.same
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.pt", store_calibration(ckpt, calibration)))
    assert stored_precision(loaded, "cpu") == "fp32"
    assert stored_precision(loaded, "cuda") == "fp32"  # never calibrated there: no fp16 for a sensitive model
    result = segment_ct(_ct(), loaded, find_ribs=False)
    assert result.device == "cpu (fp32)"
    assert min(d.confidence for d in result.detections) > 0.99  # the fp32 answer, not the autocast one
    assert bf16.max_confidence_diff > defaults.PRECISION_CONFIDENCE_TOLERANCE  # refused on confidence, counts equal
    # "auto" obeys the stored verdict even where the uncalibrated first-batch rule would pick fp32
    ckpt.inference = {"precision": {"cpu": "bf16"}}
    forced = segment_ct(_ct(), ckpt, find_ribs=False)
    assert forced.device == "cpu (bf16)" and max(d.confidence for d in forced.detections) < 0.7
    ckpt.inference = {}
    assert segment_ct(_ct(), ckpt, find_ribs=False).device == "cpu (fp32)"

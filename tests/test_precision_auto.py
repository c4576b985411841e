"""`auto` precision is never slower than fp32: reduced precision only where the device runs it natively
and where the first batch shows it faster (RibFracSegLib.precision.auto_precision, inference._Runner).

The stand-in networks are pointwise (their output does not change under autocast) and sleep in one
precision, as an emulated bf16 Conv3d (~100x slower than fp32 on an AVX2-only CPU) or a fast one would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from RibFracSegLib import defaults, precision, precision_calibration
from RibFracSegLib.checkpoint import Checkpoint
from RibFracSegLib.errors import InputError
from RibFracSegLib.inference import _Runner, segment_ct
from RibFracSegLib.networks import register_network

from inference_helpers import native_and_faster

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
SLEEP_S = 0.2


class _Sleeper(nn.Module):
    """logit = 3 x; sleeps SLEEP_S in the precision it is slow in, and counts forwards per precision."""

    slow_under_autocast = True

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(3.0))
        self.calls = {"autocast": 0, "fp32": 0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        autocast = torch.is_autocast_enabled(x.device.type)
        self.calls["autocast" if autocast else "fp32"] += 1
        if autocast == self.slow_under_autocast:
            time.sleep(SLEEP_S)
        return self.gain * x


@register_network("test_slow_under_autocast")
class SlowUnderAutocast(_Sleeper):
    pass


@register_network("test_slow_in_fp32")
class SlowInFp32(_Sleeper):
    slow_under_autocast = False


def _batch() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 16)).astype(np.float32)


def _native(monkeypatch, value):
    monkeypatch.setattr(precision, "native_reduced_precision", lambda device: value)


def test_a_slower_reduced_path_keeps_fp32(monkeypatch):
    _native(monkeypatch, "bf16")  # the feature check says native, the first batch says slower
    model = SlowUnderAutocast()
    runner = _Runner(model, CPU, "auto")
    out = runner(_batch())
    assert runner.precision == "fp32"
    assert runner.seconds["bf16"] >= SLEEP_S > runner.seconds["fp32"]
    assert runner.errors["bf16"] == 0.0  # its output agreed: only the timing refused it
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-3 * _batch())), atol=1e-6)
    calls = dict(model.calls)
    runner(_batch())
    assert model.calls["autocast"] == calls["autocast"]  # later batches: fp32 only

    faster = SlowInFp32()  # the same rule keeps bf16 where it is the faster one
    runner = _Runner(faster, CPU, "auto")
    runner(_batch())
    assert runner.precision == "bf16" and runner.seconds["bf16"] < SLEEP_S <= runner.seconds["fp32"]


def test_a_near_tie_keeps_fp32(monkeypatch):
    native_and_faster(monkeypatch, fp32_s=1.0, reduced_s=1.05 / defaults.REDUCED_PRECISION_MIN_SPEEDUP)
    runner = _Runner(SlowInFp32(), CPU, "auto")
    runner(_batch())
    assert runner.precision == "fp32" and runner.seconds["bf16"] < runner.seconds["fp32"]


def _image() -> sitk.Image:
    hu = np.full((32, 32, 32), 40, np.int16)
    hu[10:20, 10:20, 10:20] = 700
    return sitk.GetImageFromArray(hu)


def _checkpoint(arch: str, verdict: str) -> Checkpoint:
    return Checkpoint.from_model(arch, {"test_slow_under_autocast": SlowUnderAutocast,
                                        "test_slow_in_fp32": SlowInFp32}[arch](), {}, patch_size=(16,) * 3,
                                 inference={"precision": {"cpu": verdict}})


def test_a_stored_verdict_is_timed_too(monkeypatch):
    _native(monkeypatch, "bf16")
    slow = segment_ct(_image(), _checkpoint("test_slow_under_autocast", "bf16"), find_ribs=False, skip_empty=False)
    assert slow.device == "cpu (fp32)"
    fast = segment_ct(_image(), _checkpoint("test_slow_in_fp32", "bf16"), find_ribs=False, skip_empty=False)
    assert fast.device == "cpu (bf16)"


def test_not_native_means_fp32_without_timing(monkeypatch):
    _native(monkeypatch, None)
    model = SlowUnderAutocast()
    runner = _Runner(model, CPU, "auto")
    assert runner.precision == "fp32" and runner.auto.candidates == ()
    runner(_batch())
    assert model.calls == {"autocast": 0, "fp32": 1} and runner.seconds == {}

    ckpt = _checkpoint("test_slow_in_fp32", "bf16")  # a verdict stored on a machine with native bf16
    plan = precision.auto_precision(ckpt, CPU)
    assert plan.candidates == () and "stored verdict bf16 is not used" in plan.reason
    assert segment_ct(_image(), ckpt, find_ribs=False, skip_empty=False).device == "cpu (fp32)"
    assert precision.auto_precision(_checkpoint("test_slow_in_fp32", "fp32"), CPU).candidates == ()
    with pytest.raises(InputError, match="no native reduced precision"):
        precision_calibration.calibrate_precision(ckpt, [("a", _image())], log=lambda _: None)


def test_onednn_capped_at_avx2_is_not_native():
    """The real check, on any x86 CPU: oneDNN limited to AVX2 emulates bf16, so bf16 is not native."""
    code = "import torch; from RibFracSegLib.precision import native_reduced_precision as n; print(n(torch.device('cpu')))"
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"


def test_cuda_native_needs_tensor_cores(monkeypatch):
    for capability, expected in (((6, 1), None), ((7, 0), "fp16"), ((9, 0), "fp16")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert precision.native_reduced_precision(torch.device("cuda")) == expected

"""Sliding window: exact blending on oblique odd-sized volumes, skipping, cancel, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy.signal.windows import gaussian

from RibFracSegLib import geometry
from RibFracSegLib.inference import Cancelled, segment_ct
from RibFracSegLib.postprocess import PostprocessParams
from RibFracSegLib.sliding_window import SlabAggregator, importance_map

from torch import nn

from RibFracSegLib.networks import register_network

from inference_helpers import PatchMean, Pointwise, checkpoint, oblique_image

torch.set_num_threads(1)
NO_POST = PostprocessParams(remove_spine=False, remove_small=False)


def _ct(shape_kji=(23, 30, 37), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-400, 1200, size=shape_kji).astype(np.int16)


def _window(hu: np.ndarray) -> np.ndarray:
    return (np.clip(hu.astype(np.float64), -200, 1000) + 200) / 1200 * 2 - 1


def _naive_blend(x: np.ndarray, patch: int, overlap: float) -> np.ndarray:
    """Reference: float64 full buffers, every patch, Gaussian (sigma = patch / 8) weights floored at 1e-3."""
    step = int(patch * (1 - overlap))
    starts = [sorted({min(s, n - patch) for s in range(0, n - patch + step, step)}) for n in x.shape]
    g = gaussian(patch, patch / 8.0)
    w = np.maximum(g[:, None, None] * g[None, :, None] * g[None, None, :], 1e-3)
    num, den = np.zeros(x.shape), np.zeros(x.shape)
    for a in starts[0]:
        for b in starts[1]:
            for c in starts[2]:
                box = np.s_[a:a + patch, b:b + patch, c:c + patch]
                p = 1 / (1 + np.exp(-(x[box] + 4 * x[box].mean())))
                num[box] += w * p
                den[box] += w
    return num / den


def test_pointwise_model_gives_its_function_on_oblique_odd_volume():
    hu = _ct()
    image = oblique_image(hu)
    result = segment_ct(image, checkpoint("test_pointwise", gain=3.0, bias=0.5), overlap=0.5, skip_empty=False,
                        return_probability=True, postprocess=NO_POST, precision="fp32")
    assert geometry.same_grid(result.probability, image) and geometry.same_grid(result.instances, image)
    expected = 1 / (1 + np.exp(-(3.0 * _window(hu) + 0.5)))
    assert np.abs(sitk.GetArrayFromImage(result.probability) - expected).max() < 1e-5


def test_context_model_blend_matches_naive_reference_on_oblique_volume():
    hu = _ct(seed=1)
    image = oblique_image(hu)
    result = segment_ct(image, checkpoint("test_patch_mean"), overlap=0.5, skip_empty=False,
                        return_probability=True, postprocess=NO_POST, precision="fp32", batch_size=3)
    # reference computed independently: SimpleITK's own reorientation to LPS, then back
    canonical = sitk.DICOMOrient(image, "LPS")
    ref = sitk.GetImageFromArray(_naive_blend(_window(sitk.GetArrayFromImage(canonical)), 16, 0.5))
    ref.CopyInformation(canonical)
    ref = sitk.DICOMOrient(ref, geometry.axis_codes(image))
    assert geometry.same_grid(ref, image)
    ours = sitk.GetArrayFromImage(result.probability)
    assert np.abs(ours - sitk.GetArrayFromImage(ref)).max() < 1e-5
    assert result.patches_total == 2 * 3 * 4 and result.patches_skipped == 0  # 23/30/37 voxels, stride 8


def test_gaussian_weights_and_aggregator_order():
    w = importance_map((16, 16, 16))
    assert w.max() == pytest.approx(gaussian(16, 2.0)[7] ** 3, rel=1e-6) and w.min() == pytest.approx(1e-3)
    agg = SlabAggregator((20, 4, 4), np.ones((8, 4, 4), np.float32))
    agg.add((slice(8, 16), slice(0, 4), slice(0, 4)), np.ones((8, 4, 4), np.float32))
    with pytest.raises(ValueError, match="order"):
        agg.add((slice(0, 8), slice(0, 4), slice(0, 4)), np.ones((8, 4, 4), np.float32))


def test_aggregator_on_scattered_boxes_is_the_weighted_mean():
    """Boxes far apart along every axis (the rib-frame fallback's), gaps longer than the slab and
    partial boxes at the edge: the blended value is sum(w p) / sum(w) wherever a box reached, 0 elsewhere."""
    rng = np.random.default_rng(3)
    shape, patch = (70, 40, 50), (8, 6, 7)
    w = importance_map(patch)
    starts = sorted((int(a), int(b), int(c)) for a, b, c in zip(rng.integers(0, 66, 12), rng.integers(0, 36, 12),
                                                                  rng.integers(0, 46, 12)))
    starts += [(2, 1, 1), (2, 30, 40), (64, 36, 46)]  # same slab, far apart in y and x; one clipped at the edge
    starts.sort()
    num, den = np.zeros(shape), np.zeros(shape)
    agg = SlabAggregator(shape, w)
    for a, b, c in starts:
        box = (slice(a, min(a + 8, 70)), slice(b, min(b + 6, 40)), slice(c, min(c + 7, 50)))
        p = rng.random(tuple(s.stop - s.start for s in box)).astype(np.float32)
        ww = w[tuple(slice(0, s.stop - s.start) for s in box)]
        num[box] += ww * p
        den[box] += ww
        agg.add(box, p)
    expected = np.divide(num, den, out=np.zeros(shape), where=den > 0)
    assert np.abs(agg.finish() - expected).max() < 1e-5
    assert (expected > 0).sum() > 2000  # the boxes did write


def test_scattered_patches_blend_group_by_group_as_one_mean():
    """`predict_probability` with explicit boxes (the rib-frame fallback's): boxes that overlap (a
    chain of three) and boxes far apart blend on their own regions (`blend_groups`); the map is still
    sum(w p) / sum(w) over every box reaching a voxel, 0 where none does."""
    from RibFracSegLib.inference import predict_probability
    from RibFracSegLib.sliding_window import blend_groups

    hu = _ct((60, 44, 52), seed=5)
    patch = (16, 16, 16)
    starts = sorted([(0, 0, 0), (8, 6, 4), (14, 12, 10), (40, 28, 36), (44, 0, 36), (44, 28, 0)])
    boxes = [tuple(slice(a, min(a + p, n)) for a, p, n in zip(s, patch, hu.shape)) for s in starts]
    groups = blend_groups(boxes)
    assert [len(m) for _, m in groups] == [3, 1, 1, 1]  # the chain is one group; the far ones alone
    assert groups[0][0] == (slice(0, 30), slice(0, 28), slice(0, 26))
    w = importance_map(patch)
    num, den = np.zeros(hu.shape), np.zeros(hu.shape)
    x = _window(hu)
    for box in boxes:
        p = 1 / (1 + np.exp(-(x[box] + 4 * x[box].mean())))  # PatchMean's function
        num[box] += w * p
        den[box] += w
    expected = np.divide(num, den, out=np.zeros(hu.shape), where=den > 0)
    model = PatchMean()
    out, _ = predict_probability(hu, model, patch_size=patch, hu_window=(-200, 1000), boxes=boxes, precision="fp32",
                                 batch_size=2)
    assert np.abs(out - expected).max() < 1e-5
    assert (out > 0).sum() == (den > 0).sum() > 6 * 16 ** 3 // 2


def _body_with_bone() -> np.ndarray:
    hu = np.full((40, 48, 56), -1000, dtype=np.int16)  # k, j, i
    hu[4:36, 6:42, 4:50] = 40  # body
    hu[10:14, 30:34, 8:12] = 800  # two bone blobs in one corner
    hu[28:31, 10:12, 40:44] = 650
    hu[0:40, 46:48, 0:56] = 900  # a bright table outside the body
    return hu


def test_skipping_never_changes_probabilities_inside_bone():
    hu = _body_with_bone()
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.8, 0.8, 1.25))
    ckpt = checkpoint("test_patch_mean")
    run = dict(overlap=0.5, return_probability=True, postprocess=NO_POST, precision="fp32")
    full = segment_ct(image, ckpt, skip_empty=False, **run)
    skipped = segment_ct(image, ckpt, skip_empty=True, **run)
    p_full, p_skip = (sitk.GetArrayFromImage(r.probability) for r in (full, skipped))
    bone = hu > 300
    bone[:, 46:, :] = False  # the table is not bone of the patient
    assert np.abs(p_full[bone] - p_skip[bone]).max() < 1e-6
    assert full.patches_skipped == 0 and skipped.patches_total == full.patches_total == 4 * 5 * 6
    assert skipped.patches_skipped >= 60  # the table and the empty body never cost a patch
    assert np.abs(p_full - p_skip).max() > 0.01  # ... and skipped voxels really were left out


def test_cancel_stops_within_one_batch_and_returns_nothing():
    image = sitk.GetImageFromArray(_ct((40, 40, 40)))
    seen = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total, PatchMean.calls))

    PatchMean.calls = 0
    with pytest.raises(Cancelled):
        segment_ct(image, checkpoint("test_patch_mean"), skip_empty=False, batch_size=4, precision="fp32",
                   progress=progress, cancel=lambda: len(seen) >= 2)
    assert seen == [(0, 64, 0), (4, 64, 1)] and PatchMean.calls == 1


def test_same_input_same_output_and_progress_counts():
    hu = _body_with_bone()
    image = sitk.GetImageFromArray(hu)
    torch.manual_seed(0)
    from RibFracSegLib.checkpoint import Checkpoint
    from RibFracSegLib.networks import build_network
    ckpt = Checkpoint.from_model("fracnet_unet", build_network("fracnet_unet", first_out_channels=4),
                                 {"first_out_channels": 4}, patch_size=(16, 16, 16))
    calls = []
    runs = [segment_ct(image, ckpt, return_probability=True, progress=lambda d, t: calls.append((d, t)),
                       precision="fp32") for _ in range(2)]  # `auto` is timed: it may choose bf16 once only
    a, b = (sitk.GetArrayFromImage(r.probability) for r in runs)
    assert np.array_equal(a, b) and a.max() > 0
    computed = runs[0].patches_total - runs[0].patches_skipped
    assert calls[0] == (0, computed) and calls[len(calls) // 2 - 1] == (computed, computed)


def test_auto_precision_stays_within_stated_tolerance_of_fp32():
    from RibFracSegLib import defaults
    from RibFracSegLib.inference import predict_probability
    from RibFracSegLib.networks import build_network
    from RibFracSegLib.networks.fusion import fold_batchnorm
    torch.manual_seed(0)
    model = fold_batchnorm(build_network("fracnet_unet", first_out_channels=8))
    hu = _body_with_bone()
    run = dict(patch_size=(16, 16, 16), hu_window=(-200.0, 1000.0), batch_size=4)
    fp32, s32 = predict_probability(hu, model, precision="fp32", **run)
    auto, s_auto = predict_probability(hu, model, precision="auto", **run)
    assert s32.precision == "fp32" and s_auto.precision in ("bf16", "mixed", "fp32")
    assert np.abs(auto - fp32).max() <= 2 * defaults.BF16_PROB_TOLERANCE
    bf16, _ = predict_probability(hu, model, precision="bf16", **run)
    assert 0 < np.abs(bf16 - fp32).max() < 0.05  # bf16 really ran, and is close but not exact


@register_network("test_oom_above_one")
class _OutOfMemoryAboveOnePatch(nn.Module):
    """Pointwise logit, but raises CUDA's out-of-memory error for batches of more than one patch."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(3.0))
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(int(x.shape[0]))
        if x.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")
        return self.gain * x


def test_out_of_memory_halves_the_batch_and_keeps_the_result():
    from RibFracSegLib.inference import predict_probability
    hu = _body_with_bone()
    model = _OutOfMemoryAboveOnePatch()
    run = dict(patch_size=(16, 16, 16), hu_window=(-200.0, 1000.0), precision="fp32")
    prob, stats = predict_probability(hu, model, batch_size=4, **run)
    assert model.sizes[:3] == [4, 2, 1]  # 4 fails, 2 fails, then one patch at a time
    assert set(model.sizes[3:]) == {1}  # later batches start at the size that worked
    assert stats.device == "cpu" and stats.precision == "fp32"
    expected, _ = predict_probability(hu, Pointwise(gain=3.0, bias=0.0), batch_size=1, **run)
    np.testing.assert_allclose(prob, expected, atol=1e-6)

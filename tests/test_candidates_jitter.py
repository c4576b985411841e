"""Sub-voxel crop jitter and the two-view term of the candidate classifier's training, and the
stability figure (largest change of the fracture probability when the crop centre moves)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from RibFracSegLib import defaults
from RibFracSegLib.candidates.dataset import CropSet
from RibFracSegLib.candidates.stability import Stability, shift_offsets, stability
from RibFracSegLib.candidates.training import CandidateTrainConfig, augment, shifted_cut, train, two_view_loss
from RibFracSegLib.preprocess import normalise


def _stored(b: int = 3, v: int = 12) -> torch.Tensor:
    return torch.randn(b, v, v, v, generator=torch.Generator().manual_seed(1)) * 300


def test_shifted_cut_matches_slicing_at_whole_voxels_and_interpolates_between():
    hu = _stored()
    starts = torch.tensor([[0, 2, 4], [4, 4, 4], [1, 3, 0]])
    cut = shifted_cut(hu, starts.float(), 8)
    for n, (k, j, i) in enumerate(starts.tolist()):
        assert torch.allclose(cut[n], hu[n, k:k + 8, j:j + 8, i:i + 8], atol=1e-3)
    half = shifted_cut(hu, starts.float() + torch.tensor([0.0, 0.0, 0.5]), 8)
    k, j, i = starts[2].tolist()
    expected = 0.5 * (hu[2, k:k + 8, j:j + 8, i:i + 8] + hu[2, k:k + 8, j:j + 8, i + 1:i + 9])
    assert torch.allclose(half[2], expected, atol=1e-3)


def _alternating(b: int, v: int = 12) -> torch.Tensor:
    """Stored crops whose HU alternate 100 / 700 along i: a cut that starts between voxels blends them."""
    hu = torch.full((b, v, v, v), 100.0)
    hu[..., 1::2] = 700.0
    return hu


def _alternation(x: torch.Tensor) -> np.ndarray:
    """Per crop, the mean step between neighbours along i, in units of a whole-voxel cut's (600 HU)."""
    return ((x[:, 0, ..., 1:] - x[:, 0, ..., :-1]).abs().mean(dim=(1, 2, 3)) / (600 * 2 / 1200)).numpy()


def test_augment_cuts_whole_voxels_by_default_and_between_voxels_with_jitter():
    hu = _alternating(16)
    old = augment(hu, 8, torch.Generator().manual_seed(3))
    again = augment(hu, 8, torch.Generator().manual_seed(3), jitter=False)
    assert old.shape == (16, 1, 8, 8, 8) and torch.equal(old, again)
    whole = _alternation(old)
    assert whole.min() > 0.85  # full steps (gain 1 +- 0.05, noise up to 20 HU): the stored voxels themselves
    jittered = augment(hu, 8, torch.Generator().manual_seed(3), jitter=True)
    assert jittered.shape == (16, 1, 8, 8, 8)
    assert float(jittered.min()) >= -1.0 and float(jittered.max()) <= 1.0
    steps = _alternation(jittered)  # |1 - 2 f| for a start f voxels past a grid point, f uniform
    assert (steps < 0.6).sum() >= 4 and steps.min() < 0.3


class MeanOfCrop(nn.Module):
    """Logits from the crop's mean and a learnable bias: small enough to train in a test."""

    def __init__(self, width: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.mean(dim=(1, 2, 3, 4))[:, None])


def test_two_view_training_learns(monkeypatch):
    import RibFracSegLib.candidates.training as training
    monkeypatch.setattr(training, "build_network", lambda arch, **hp: MeanOfCrop())
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 20)
    crops = (rng.normal(0, 30, (40, 12, 12, 12)) + (labels * 600 - 100)[:, None, None, None]).astype(np.int16)
    data = CropSet(crops, labels, np.zeros(40, bool), np.array(["a"] * 40), np.array(["truth"] * 40))
    config = CandidateTrainConfig(steps=60, batch=16, lr=0.1, voxels=8, jitter=True, consistency=1.0)
    model, hparams = train(data, config, log=lambda m: None)
    with torch.no_grad():
        x = augment(torch.from_numpy(crops).float(), 8, torch.Generator().manual_seed(0), jitter=True)
        accuracy = float((model(x).argmax(1).numpy() == labels).mean())
    assert hparams == {"width": 12}
    assert accuracy == 1.0  # bone-bright crops are class 1, soft-tissue ones class 0


def _two_view_loss(model: nn.Module, consistency: float) -> float:
    """The two-view loss on fixed crops with fixed draws (the term itself draws nothing)."""
    crops = torch.from_numpy(np.random.default_rng(0).normal(0, 300, (8, 12, 12, 12)).astype(np.float32))
    labels = torch.tensor([0, 1] * 4)
    config = CandidateTrainConfig(batch=8, voxels=8, jitter=True, consistency=consistency)
    with torch.no_grad():
        return float(two_view_loss(model, crops, labels, np.full(8, 1 / 8), np.random.default_rng(1),
                                   torch.Generator().manual_seed(2), config, "cpu"))


def test_consistency_term_is_the_two_views_disagreement_times_its_weight():
    sensitive, blind = CentreIntensity(), Constant()  # P(fracture) from the centre voxel / from nothing
    term = _two_view_loss(sensitive, 1.0) - _two_view_loss(sensitive, 0.0)
    assert term > 0.003  # the two views' centres fall on different voxels of a noisy crop
    assert _two_view_loss(sensitive, 3.0) - _two_view_loss(sensitive, 0.0) == pytest.approx(3 * term, rel=1e-4)
    assert _two_view_loss(blind, 3.0) == pytest.approx(_two_view_loss(blind, 0.0), abs=1e-7)


class Constant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[0.3, 0.1, 0.0, -0.2, 0.0]]).expand(x.shape[0], 5)


def test_shift_offsets_are_the_axes_and_corners():
    off = shift_offsets(0.5)
    assert off.shape == (14, 3)
    assert np.allclose(np.abs(off[:6]).sum(axis=1), 0.5) and np.allclose(np.abs(off[6:]), 0.5)


class CentreIntensity(nn.Module):
    """P(fracture) rises with the centre voxel's (normalised) intensity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.shape[-1] // 2
        c = x[:, 0, v, v, v]
        return torch.stack([-4 * c, 4 * c, 0 * c, 0 * c, 0 * c], dim=1)


def test_stability_is_zero_on_a_flat_ct_and_positive_across_an_edge():
    arr = np.zeros((30, 30, 30), np.int16)
    arr[:, :, 15:] = 800  # an edge along L (array axis 2) at x = 14.5 mm
    image = sitk.GetImageFromArray(arr)
    model = CentreIntensity()
    flat = stability(model, image, [(5.0, 15.0, 15.0)], voxels=5, spacing_mm=1.0, shift_mm=0.5)
    assert flat.change[0] == pytest.approx(0.0, abs=1e-6)
    edge = stability(model, image, [(14.5, 15.0, 15.0)], voxels=5, spacing_mm=1.0, shift_mm=0.5)
    assert edge.change[0] > 0.1


def test_flips_counts_centres_kept_at_some_shifts_only():
    s = Stability(np.array([[0.8, 0.78, 0.82], [0.76, 0.74, 0.8], [0.2, 0.1, 0.3]]))
    assert s.flips(0.75) == 1
    assert np.allclose(s.change, [0.02, 0.04, 0.1])


def test_training_starts_from_given_weights(monkeypatch):
    import RibFracSegLib.candidates.training as training
    monkeypatch.setattr(training, "build_network", lambda arch, **hp: MeanOfCrop())
    start = MeanOfCrop()
    with torch.no_grad():
        start.linear.weight.fill_(0.25)
        start.linear.bias.fill_(-0.5)
    labels = np.array([0, 1] * 4)
    data = CropSet(np.zeros((8, 12, 12, 12), np.int16), labels, np.zeros(8, bool), np.array(["a"] * 8),
                   np.array(["truth"] * 8))
    model, _ = train(data, CandidateTrainConfig(steps=2, batch=4, lr=1e-9, voxels=8), log=lambda m: None,
                     init=start.state_dict())
    assert torch.allclose(model.linear.weight, torch.full((5, 1), 0.25), atol=1e-6)
    assert torch.allclose(model.linear.bias, torch.full((5,), -0.5), atol=1e-6)


def test_training_normalises_crops_as_inference_does():
    hu = np.random.default_rng(0).normal(300, 700, (2, 12, 12, 12)).astype(np.float32)
    stored = normalise(hu, defaults.HU_WINDOW)
    assert stored.min() == -1.0 and stored.max() == 1.0  # the window's ends
    assert torch.equal(normalise(torch.from_numpy(hu), defaults.HU_WINDOW), torch.from_numpy(stored))
    starts = torch.tensor([[2, 2, 2], [0, 4, 1]])
    cut = augment(torch.from_numpy(hu), 8, torch.Generator().manual_seed(0), starts=starts)[:, 0]
    for n, (k, j, i) in enumerate(starts.tolist()):  # gain, offset and noise are small: the same window
        window = torch.from_numpy(stored[n, k:k + 8, j:j + 8, i:i + 8])
        assert float((cut[n] - window).abs().median()) < 0.1 or float((cut[n] - window.flip(-1)).abs().median()) < 0.1

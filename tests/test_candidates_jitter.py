"""Sub-voxel crop jitter and the two-view term of the candidate classifier's training, and the
stability figure (largest change of the fracture probability when the crop centre moves)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from RibFracSegLib.candidates.dataset import CropSet
from RibFracSegLib.candidates.stability import Stability, shift_offsets, stability
from RibFracSegLib.candidates.training import TrainConfig, augment, shifted_cut, train


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


def test_augment_keeps_whole_voxel_path_and_jitters_in_the_stored_room():
    hu = _stored(b=16)
    old = augment(hu, 8, torch.Generator().manual_seed(3))
    again = augment(hu, 8, torch.Generator().manual_seed(3), jitter=False)
    assert old.shape == (16, 1, 8, 8, 8) and torch.equal(old, again)
    jittered = augment(hu, 8, torch.Generator().manual_seed(3), jitter=True)
    assert jittered.shape == (16, 1, 8, 8, 8)
    assert float(jittered.min()) >= -1.0 and float(jittered.max()) <= 1.0


class MeanOfCrop(nn.Module):
    """Logits from the crop's mean and a learnable bias: small enough to train in a test."""

    def __init__(self, width: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.mean(dim=(1, 2, 3, 4))[:, None])


def test_two_view_training_runs_and_learns(monkeypatch):
    import RibFracSegLib.candidates.training as training
    monkeypatch.setattr(training, "build_network", lambda arch, **hp: MeanOfCrop())
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 20)
    crops = (rng.normal(0, 30, (40, 12, 12, 12)) + (labels * 600 - 100)[:, None, None, None]).astype(np.int16)
    data = CropSet(crops, labels, np.zeros(40, bool), np.array(["a"] * 40), np.array(["truth"] * 40))
    config = TrainConfig(steps=60, batch=16, lr=0.1, voxels=8, jitter=True, consistency=1.0)
    model, hparams = train(data, config, log=lambda m: None)
    with torch.no_grad():
        x = augment(torch.from_numpy(crops).float(), 8, torch.Generator().manual_seed(0), jitter=True)
        accuracy = float((model(x).argmax(1).numpy() == labels).mean())
    assert hparams == {"width": 12}
    assert accuracy == 1.0  # bone-bright crops are class 1, soft-tissue ones class 0


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
    model, _ = train(data, TrainConfig(steps=2, batch=4, lr=1e-9, voxels=8), log=lambda m: None,
                     init=start.state_dict())
    assert torch.allclose(model.linear.weight, torch.full((5, 1), 0.25), atol=1e-6)
    assert torch.allclose(model.linear.bias, torch.full((5,), -0.5), atol=1e-6)


def test_train_candidates_options_reach_the_config():
    import argparse

    from RibFracSegLib.cli.train_candidates import add_arguments
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--corpus", "c", "--out", "o.pt", "--consistency", "2", "--init", "x.pt"])
    assert (args.jitter, args.consistency, args.init) == (False, 2.0, "x.pt")  # --consistency implies jitter in run()
    assert parser.parse_args(["--corpus", "c", "--out", "o.pt", "--jitter"]).jitter is True

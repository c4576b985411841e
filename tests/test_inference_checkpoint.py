"""Networks and checkpoints: FracNet's exact state_dict, safe loading, clear errors, generic archs."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from RibFracSegLib.checkpoint import (Checkpoint, CheckpointError, build_model, cached_checkpoint, cached_model,
                                     load_checkpoint, save_checkpoint)
from RibFracSegLib.networks import build_network, register_network
from RibFracSegLib.networks.fusion import fold_batchnorm, keep_full_resolution_fp32

torch.set_num_threads(1)

# A few rows of shared/reference/fracnet-unet.md's key table (ConvTranspose weights are [in, out, k, k, k]).
FRACNET_SHAPES = {
    "first.0.weight": (16, 1, 3, 3, 3), "first.1.num_batches_tracked": (), "down1.1.3.weight": (32, 32, 3, 3, 3),
    "down3.1.0.weight": (128, 64, 3, 3, 3), "up1.conv1.0.weight": (64, 128, 3, 3, 3),
    "up1.conv2.0.weight": (128, 64, 2, 2, 2), "up3.conv2.0.weight": (32, 16, 2, 2, 2),
    "up2.conv1.4.running_var": (32,), "final.weight": (1, 16, 1, 1, 1), "final.bias": (1,),
}


def _fracnet_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = build_network("fracnet_unet")
    for m in model.modules():  # non-trivial BN statistics, as a trained model has
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.state_dict()


def test_fracnet_state_dict_with_exact_keys_loads_and_predicts(tmp_path):
    state = _fracnet_state()
    assert len(state) == 104
    assert {k: tuple(state[k].shape) for k in FRACNET_SHAPES} == FRACNET_SHAPES
    reference = build_network("fracnet_unet")
    assert sum(p.numel() for p in reference.parameters()) == 1_401_377
    reference.load_state_dict(state)
    torch.save(state, tmp_path / "model_weights.pth")  # what FracNet's training script writes

    ckpt = load_checkpoint(tmp_path / "model_weights.pth")
    assert ckpt.arch == "fracnet_unet" and ckpt.preprocessing["hu_window"] == [-200.0, 1000.0]
    model = build_model(ckpt)
    x = torch.rand(1, 1, 32, 32, 32) * 2 - 1
    with torch.no_grad():
        y = model(x)
        assert y.shape == (1, 1, 32, 32, 32)
        assert torch.allclose(y, reference.eval()(x), atol=1e-6)  # the weights were loaded, not re-initialised
        assert torch.allclose(fold_batchnorm(model)(x), y, atol=1e-4)


def test_dataparallel_prefix_is_accepted(tmp_path):
    state = {f"module.{k}": v for k, v in _fracnet_state().items()}
    torch.save(state, tmp_path / "dp.pth")
    assert load_checkpoint(tmp_path / "dp.pth").state_dict.keys() == _fracnet_state().keys()


class _Boom:
    def __reduce__(self):
        return (open, ("/tmp/ribfracseg-pwned-marker", "w"))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    _Boom.__reduce__ = lambda self: (open, (str(marker), "w"))
    torch.save({"state_dict": _fracnet_state(), "payload": _Boom()}, tmp_path / "evil.pt")
    torch.save(build_network("fracnet_unet"), tmp_path / "whole_model.pt")
    for name in ("evil.pt", "whole_model.pt"):
        with pytest.raises(CheckpointError, match="pickled Python objects or code"):
            load_checkpoint(tmp_path / name)
    assert not marker.exists()


def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    state = _fracnet_state()
    state["down2.1.0.weight"] = torch.zeros(64, 16, 3, 3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"down2\.1\.0\.weight has shape \[64, 16, 3, 3, 3\], "
                                              r"expected \[64, 32, 3, 3, 3\]"):
        build_model(load_checkpoint(tmp_path / "bad.pth"))


def test_missing_keys_truncated_and_foreign_files(tmp_path):
    state = _fracnet_state()
    save_checkpoint(tmp_path / "ok.pt", Checkpoint("fracnet_unet", {}, state))
    partial = {k: v for k, v in state.items() if not k.startswith("final")}
    save_checkpoint(tmp_path / "partial.pt", Checkpoint("fracnet_unet", {}, partial))
    with pytest.raises(CheckpointError, match=r"missing final\.weight \[1, 16, 1, 1, 1\]"):
        build_model(load_checkpoint(tmp_path / "partial.pt"))
    (tmp_path / "cut.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:4000])
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    for name in ("cut.pt", "notes.pt"):
        with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
            load_checkpoint(tmp_path / name)
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not FracNet's"):
        load_checkpoint(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")


@register_network("test_tiny2d")
class Tiny2D(nn.Module):
    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_self_describing_round_trip_is_generic_2d(tmp_path):
    torch.manual_seed(1)
    model = Tiny2D(channels=4)
    ckpt = Checkpoint.from_model("test_tiny2d", model, {"channels": 4}, patch_size=(128, 96),
                                 preprocessing={"hu_window": [100.0, 1500.0], "target_spacing": [1.0, 1.0]},
                                 thresholds={"confidence": 0.2}, provenance={"epochs": 3, "data": "phantoms"})
    save_checkpoint(tmp_path / "l3.pt", ckpt)
    loaded = load_checkpoint(tmp_path / "l3.pt")
    assert (loaded.arch, loaded.hparams, loaded.patch_size) == ("test_tiny2d", {"channels": 4}, (128, 96))
    assert loaded.preprocessing["target_spacing"] == [1.0, 1.0] and loaded.provenance["epochs"] == 3
    x = torch.rand(1, 1, 20, 24)
    assert torch.equal(build_model(loaded)(x), model(x))
    with pytest.raises(CheckpointError, match="plain Python values"):
        save_checkpoint(tmp_path / "bad.pt", Checkpoint("test_tiny2d", {"channels": Tiny2D}, model.state_dict()))
    assert not (tmp_path / "bad.pt").exists()


def test_residual_unet_deep_supervision_and_size():
    model = build_network("res_unet_ds")
    assert 9.0e6 < sum(p.numel() for p in model.parameters()) < 10.0e6
    x = torch.rand(1, 1, 32, 32, 32)
    outputs = model.train()(x)
    assert [tuple(o.shape[2:]) for o in outputs] == [(32,) * 3, (16,) * 3, (8,) * 3, (4,) * 3]
    with torch.no_grad():
        y = model.eval()(x)
        assert y.shape == (1, 1, 32, 32, 32)
        assert torch.allclose(fold_batchnorm(model)(x), y, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = keep_full_resolution_fp32(model)(x)
        assert mixed.dtype == torch.float32 and torch.allclose(mixed, y, atol=0.1)


def test_segresnet_vae_branch_trains_but_inference_skips_it():
    torch.manual_seed(0)
    model = build_network("segresnet_vae", use_vae=True, input_size=(32, 32, 32), init_filters=8)
    x = torch.rand(2, 1, 32, 32, 32)
    logits, vae_loss = model.train().forward_train(x)
    assert logits.shape == (2, 1, 32, 32, 32) and vae_loss.item() > 0
    vae_loss.backward()
    assert model.vae_mu.weight.grad.abs().sum() > 0 and model.stem[0].weight.grad.abs().sum() > 0
    calls = []
    model.vae_down.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 1, 16, 24, 32)).shape == (1, 1, 16, 24, 32)
    assert calls == []
    with pytest.raises(ValueError, match="divisible"):
        build_network("segresnet_vae", use_vae=True, input_size=(40, 32, 32))


def test_cached_checkpoint_is_read_once_per_file_version(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", Checkpoint.from_model("test_tiny2d", Tiny2D(2), {"channels": 2},
                                                                      patch_size=(32, 32)))
    first = cached_checkpoint(path)
    assert cached_checkpoint(tmp_path / "." / "c.pt") is first  # the same file by another spelling
    ckpt, model = cached_model(path)
    assert ckpt is first and cached_model(path)[1] is model and not model.training
    save_checkpoint(path, Checkpoint.from_model("test_tiny2d", Tiny2D(3), {"channels": 3}, patch_size=(32, 32)))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # a new version, even within a tick
    assert cached_checkpoint(path).hparams == {"channels": 3} and cached_model(path)[1].conv.out_channels == 3

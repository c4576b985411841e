"""Training in the rib frame: the label sampled into a frame lies on the truth fracture, windows are
drawn where their kind says, a run resumed from its state goes on exactly as one run, its checkpoint
says "rib_frame", and the held-out real CT never becomes a source."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy.spatial import cKDTree

from RibFracSegLib.checkpoint import build_model, load_checkpoint
from RibFracSegLib.errors import InputError
from RibFracSegLib.geometry import indices_to_lps, lps_to_indices
from RibFracSegLib.phantom import generate_phantom
from RibFracSegLib.training.frame_dataset import load_case, phantom_sources, real_cts, real_sources
from RibFracSegLib.training.frame_sampler import FrameSamplerConfig, sample_windows, window_arrays
from RibFracSegLib.training.frame_train import FrameTrainConfig, train

SOURCE = phantom_sources(1, size=128, slice_mm=2.5, n_fractures=4)[0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    load_case(SOURCE, folder)
    return folder


@pytest.fixture(scope="module")
def case(cache):
    return load_case(SOURCE, cache)


def test_frame_label_lies_on_the_truth_fracture(case):
    phantom = generate_phantom(SOURCE.phantom_params())
    truth = sitk.GetArrayViewFromImage(phantom.fracture_labels) > 0
    spacing = np.array(phantom.image.GetSpacing())
    voxels = cKDTree(indices_to_lps(phantom.image, np.argwhere(truth)[:, ::-1]))
    labelled = 0
    for i in sorted({p["frame"] for p in case.fractures}):
        frame = case.frame(i)
        idx = np.argwhere(case.arrays(i)[1] > 0)[::5].astype(float)
        lps = frame.index_to_lps(idx)
        # linear interpolation >= 0.5: about half a voxel's diagonal from a fracture voxel's centre (a little
        # more where 3 of a cell's 4 corners in a plane are fracture: 0.5025 of it seen on L9)
        dist, _ = voxels.query(lps)
        assert dist.max() <= 0.55 * np.linalg.norm(spacing), (frame.name, dist.max())
        ijk = np.rint(lps_to_indices(phantom.image, lps)).astype(int)
        assert truth[tuple(ijk[:, ::-1].T)].mean() > 0.8, frame.name
        labelled += len(idx)
    assert labelled > 1000
    # every truth fracture is a piece of its own rib's frame, its centre within 6 mm of the truth centre
    own = [(case.frames[p["frame"]]["name"], case.frame(p["frame"]).index_to_lps([p["a"], p["p"], p["q"]]))
           for p in case.fractures if p["own"]]
    assert len(phantom.fractures) == SOURCE.n_fractures
    for fracture in phantom.fractures:
        near = [np.linalg.norm(lps - fracture.center_lps) for name, lps in own if name == fracture.rib]
        assert near and min(near) < 6.0, (fracture.rib, near)


def test_windows_are_where_their_kind_says(case):
    config = FrameSamplerConfig(window=(32, 32, 32), batch=40, positive_fraction=0.5)
    windows = sample_windows([case], config, np.random.default_rng(3))
    kinds = {w.kind for w in windows}
    assert kinds == {"fracture", "intact", "frame_end", "head_end", "crossing"}, kinds
    for w in windows:
        f = case.frames[w.frame]
        label = window_arrays(case, w, config.window)[1]
        assert abs(w.centre[1] - f["half"]) <= 2 and abs(w.centre[2] - f["half"]) <= 2
        if w.kind == "fracture":  # jittered by at most 12 mm = 20 voxels: the break stays in the window
            assert label.sum() > 0
        elif w.kind in ("head_end", "frame_end"):
            assert abs(w.centre[0] - f["head" if w.kind == "head_end" else "end"]) <= config.end_jitter_mm / 0.6 + 1
            assert w.centre[0] - config.window[0] // 2 >= 0 and w.centre[0] + config.window[0] // 2 <= f["length"]
        elif w.kind == "crossing":
            assert w.centre[0] in f["crossings"]
    intact = [window_arrays(case, w, config.window)[1].sum() for w in windows if w.kind == "intact"]
    assert sum(n == 0 for n in intact) >= 0.8 * len(intact)


def _config(steps: int) -> FrameTrainConfig:
    return FrameTrainConfig(hparams={"first_out_channels": 4}, steps=steps, warmup_steps=2, lr=3e-3, device="cpu",
                            sampler=FrameSamplerConfig(window=(32, 32, 32), batch=2))


def test_resume_goes_on_exactly_and_saves_a_frame_checkpoint(cache, tmp_path):
    quiet = lambda _: None  # noqa: E731
    first = train(_config(3), [SOURCE], cache, tmp_path / "a", save_minutes=60, log=quiet)
    more = train(_config(5), [SOURCE], cache, tmp_path / "a", resume=tmp_path / "a" / "train_state.pt",
                 save_minutes=60, log=quiet)
    whole = train(_config(5), [SOURCE], cache, tmp_path / "b", save_minutes=60, log=quiet)
    assert len(first["losses"]) == 3 and len(more["losses"]) == 2 and more["step"] == 5
    np.testing.assert_allclose(first["losses"] + more["losses"], whole["losses"], rtol=1e-6)
    assert len(set(np.round(whole["losses"], 6))) == 5  # the losses differ step to step: the test can tell

    ckpt = load_checkpoint(tmp_path / "a" / "last.pt")
    assert ckpt.preprocessing["space"] == "rib_frame"
    assert ckpt.preprocessing["frame_voxel_mm"] == 0.6 and ckpt.preprocessing["frame_half_mm"] == 15.0
    assert ckpt.patch_size == (32, 32, 32) and ckpt.inference["fallback"] == "shipped"
    assert ckpt.provenance["step"] == 5
    model = build_model(ckpt)
    state = torch.load(tmp_path / "b" / "train_state.pt", weights_only=True)["model"]
    for key, value in model.state_dict().items():  # resumed and whole runs end with the same weights
        assert torch.allclose(value, state[key], atol=1e-6), key
    assert model(torch.zeros(1, 1, 32, 32, 32)).shape == (1, 1, 32, 32, 32)
    card = (tmp_path / "a" / "model_card.md").read_text()
    assert "LIDC-IDRI-0314" in card and SOURCE.key in card


def test_fine_tune_starts_from_its_init_and_frozen_norm_keeps_running_statistics(cache, tmp_path):
    """--init: the run's first weights are the checkpoint's; --freeze-norm: batch norm's running statistics
    (what inference normalises with) stay as they were, while the convolutions learn."""
    from dataclasses import replace
    quiet = lambda _: None  # noqa: E731
    train(_config(2), [SOURCE], cache, tmp_path / "a", save_minutes=60, log=quiet)
    start = load_checkpoint(tmp_path / "a" / "last.pt").state_dict
    config = replace(_config(2), init=str(tmp_path / "a" / "last.pt"), freeze_norm=True, seed=7)
    train(config, [SOURCE], cache, tmp_path / "b", save_minutes=60, log=quiet)
    tuned = load_checkpoint(tmp_path / "b" / "last.pt").state_dict
    stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    weights = [k for k in start if k.endswith("weight") and start[k].dim() == 5]
    assert stats and weights
    for k in stats:
        assert torch.equal(start[k], tuned[k]), k
    moved = [float((start[k] - tuned[k]).abs().max()) for k in weights]
    assert min(moved) > 0 and max(moved) < 0.1  # learning from the init (3e-3 x 2 steps), not from scratch
    card = (tmp_path / "b" / "model_card.md").read_text()
    assert "batch norm frozen" in card and "started from last.pt" in card
    with pytest.raises(ValueError, match="not a rib-frame checkpoint"):
        bad = replace(_config(1), hparams={"first_out_channels": 8}, init=str(tmp_path / "a" / "last.pt"))
        train(bad, [SOURCE], cache, tmp_path / "c", save_minutes=60, log=quiet)


def test_held_out_ct_is_never_a_source(tmp_path):
    image = sitk.Image(4, 4, 4, sitk.sitkInt16)
    for name in ("LIDC-IDRI-0314", "LIDC-IDRI-0006", "CRLM-CT-1004"):
        sitk.WriteImage(image, str(tmp_path / f"{name}.nii.gz"))
    (tmp_path / "README.md").write_text("not a CT")
    assert [n for n, _ in real_cts(tmp_path)] == ["CRLM-CT-1004", "LIDC-IDRI-0006"]
    with pytest.raises(InputError, match="held-out"):
        real_sources([("LIDC-IDRI-0314", tmp_path / "LIDC-IDRI-0314.nii.gz")])
    sources = real_sources(real_cts(tmp_path), seeds=(0, 1))
    assert len(sources) == 4 and all("0314" not in s.key for s in sources)

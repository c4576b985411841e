"""Training loop on a few patches of one small phantom: the loss falls, resume is exact, the CLI writes
loadable checkpoints with a validation FROC. No accuracy claim: that is the benchmark's job."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from RibFracSegLib.cases import labelled_cases
from RibFracSegLib.checkpoint import build_model, load_checkpoint
from RibFracSegLib.cli import main as cli_main
from RibFracSegLib.phantom import PhantomParams, generate_phantom
from RibFracSegLib.preprocess import normalise
from RibFracSegLib.training.augment import AugmentConfig
from RibFracSegLib.training.dataset import load_volume
from RibFracSegLib.training.sampler import SamplerConfig
from RibFracSegLib.training.trainer import TrainConfig, train
from RibFracSegLib.training.validation import load_validation_cases, validate

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms")
    case = generate_phantom(PhantomParams(shape=(160, 160, 64), spacing=(1.8, 1.8, 2.5), n_fractures=6,
                                          orientation="RAS", seed=3))
    sitk.WriteImage(case.image, str(out / "RibFrac1-image.nii.gz"))
    sitk.WriteImage(case.fracture_labels, str(out / "RibFrac1-label.nii.gz"))
    rows = "".join(f"RibFrac1,{f.label_id},{f.code}\n" for f in case.fractures)
    (out / "ribfrac-train-info.csv").write_text("public_id,label_id,label_code\nRibFrac1,0,0\n" + rows)
    return out


def small_config(epochs: int) -> TrainConfig:
    return TrainConfig(hparams={"first_out_channels": 4}, epochs=epochs, steps_per_epoch=8, cases_per_step=1,
                       lr=1e-2, schedule="constant", seed=7,
                       sampler=SamplerConfig(patch_size=(24, 24, 24), patches_per_case=4, positive_fraction=0.75,
                                             jitter_voxels=3),
                       augment=AugmentConfig(max_rotation_deg=0, scale=(1.0, 1.0), max_offset=0, noise_std=0))


def test_cache_is_memory_mapped_and_canonical(data_dir, tmp_path):
    files = labelled_cases(data_dir)[0]
    vol = load_volume(files, tmp_path / "cache")
    again = load_volume(files, tmp_path / "cache")
    assert isinstance(again.hu, np.memmap) and np.array_equal(vol.hu, again.hu)
    assert len(vol.centroids) == 6 and vol.hu.shape == (64, 160, 160)
    # RAS storage is flipped to LPS: the canonical x axis runs to the patient's left.
    image = sitk.ReadImage(str(files.image))
    assert np.array_equal(vol.hu[:, ::-1, ::-1], sitk.GetArrayFromImage(image))


def test_loss_falls_and_resume_is_exact(data_dir, tmp_path):
    vols = [load_volume(f) for f in labelled_cases(data_dir)]
    full = train(small_config(3), vols, tmp_path / "full", log=lambda m: None)
    state = torch.load(tmp_path / "full" / "train_state.pt", weights_only=True)
    losses = [h["loss"] for h in json.loads(state["state"])["history"]]
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0] - 0.1, losses
    # Two epochs, then resume for the third: the same loss as the uninterrupted run.
    train(small_config(2), vols, tmp_path / "part", log=lambda m: None)
    resumed = train(small_config(3), vols, tmp_path / "part", resume=tmp_path / "part" / "train_state.pt",
                    log=lambda m: None)
    assert resumed["epoch"] == 3
    assert resumed["last_loss"] == pytest.approx(full["last_loss"], rel=1e-5)


def test_cli_train_writes_checkpoints_with_validation_froc(data_dir, tmp_path):
    out = tmp_path / "run"
    code = cli_main(["train", "--data", str(data_dir), "--out", str(out), "--epochs", "1", "--steps-per-epoch", "2",
                     "--patch-size", "16", "--cases-per-step", "1", "--hparams", '{"first_out_channels": 4}',
                     "--val", str(data_dir), "--val-cases", "1", "--threads", "1"])
    assert code == 0
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.arch == "fracnet_unet" and ckpt.hparams == {"first_out_channels": 4}
    assert tuple(ckpt.patch_size) == (64, 64, 64)
    assert ckpt.provenance["epoch"] == 1
    # the FROC stored and logged is the one validation computes for these weights on the validation CT
    report = validate(load_validation_cases(data_dir, 1), ckpt, device="cpu")
    logged = [json.loads(line) for line in (out / "train.log").read_text().splitlines() if line.startswith("{")]
    assert ckpt.provenance["val_froc"] == pytest.approx(report.froc, rel=1e-6)
    assert (logged[-1]["val_froc"], logged[-1]["val_fp_at_max_recall"]) == pytest.approx(
        (report.froc, report.fp_at_max_recall), rel=1e-6)
    assert report.fp_at_max_recall > 0  # a figure a constant could not match
    # Releasing keeps weights, drops the trainer's absolute paths, adds the card's notes.
    from RibFracSegLib.training.release import release_checkpoint

    shipped = load_checkpoint(release_checkpoint(out / "best.pt", tmp_path / "ship.pt", {"use": "demo only"}))
    assert shipped.provenance["data"] == [data_dir.name] and shipped.provenance["use"] == "demo only"
    assert all(torch.equal(shipped.state_dict[k], v) for k, v in ckpt.state_dict.items())


def test_cli_trains_the_vae_branch_at_a_patch_size_other_than_64(data_dir, tmp_path):
    out = tmp_path / "vae"
    hparams = '{"use_vae": true, "init_filters": 4, "blocks_down": [1, 1, 1, 1], "vae_latent": 8}'
    code = cli_main(["train", "--data", str(data_dir), "--out", str(out), "--arch", "segresnet_vae", "--hparams",
                     hparams, "--patch-size", "48", "--epochs", "1", "--steps-per-epoch", "1", "--cases-per-step",
                     "1", "--patches-per-case", "1", "--threads", "1"])
    assert code == 0
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.hparams["input_size"] == [48, 48, 48]
    model = build_model(ckpt)
    assert model.vae_grid == (3, 3, 3)
    _, vae_loss = model.train().forward_train(torch.zeros(1, 1, 48, 48, 48))
    assert torch.isfinite(vae_loss)
    with pytest.raises(ValueError, match=r"built for \(48, 48, 48\) patches"):
        model.forward_train(torch.zeros(1, 1, 64, 64, 64))


def test_cli_trains_fracture_types_and_segment_ct_reads_the_checkpoint(data_dir, tmp_path):
    from RibFracSegLib.inference import segment_ct
    from RibFracSegLib.training.dataset import info_codes

    codes = info_codes(data_dir)["RibFrac1"]
    assert len(codes) == 6 and any(c in (1, 2, 3, 4) for c in codes.values())  # the phantom's csv gives types
    out = tmp_path / "types"
    code = cli_main(["train", "--data", str(data_dir), "--out", str(out), "--classes", "types", "--epochs", "1",
                     "--steps-per-epoch", "2", "--patch-size", "16", "--cases-per-step", "1",
                     "--hparams", '{"first_out_channels": 4}', "--val", str(data_dir), "--val-cases", "1",
                     "--threads", "1"])
    assert code == 0
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.hparams == {"first_out_channels": 4, "num_classes": 5}
    assert ckpt.provenance["classes"]["channels"] == ["background", "displaced", "non-displaced", "buckle",
                                                      "segmental"]
    assert ckpt.provenance["train_config"]["classes"] == "types"
    # validation ran segment_case on the 5-channel network: its FROC is the stored one
    report = validate(load_validation_cases(data_dir, 1), ckpt, device="cpu")
    assert ckpt.provenance["val_froc"] == pytest.approx(report.froc, rel=1e-6)
    model = build_model(ckpt)
    assert model.final.out_channels == 5
    # one 64^3 patch covers this crop: its fracture probability is 1 - P(background) of the five channels
    image = sitk.DICOMOrient(sitk.ReadImage(str(data_dir / "RibFrac1-image.nii.gz"))[48:112, 48:112, :], "LPS")
    result = segment_ct(image, ckpt, device="cpu", find_ribs=False, return_probability=True, precision="fp32")
    prob = sitk.GetArrayFromImage(result.probability)
    x = torch.from_numpy(normalise(sitk.GetArrayFromImage(image), ckpt.preprocessing["hu_window"]))[None, None]
    with torch.no_grad():
        expected = 1.0 - torch.softmax(model(x), dim=1)[0, 0].numpy()
    assert prob.shape == (64, 64, 64) and np.abs(prob - expected).max() < 1e-4
    assert expected.max() - expected.min() > 0.01  # the check can tell voxels apart
    # A num_classes that contradicts --classes is refused before any data is read.
    assert cli_main(["train", "--data", str(data_dir), "--out", str(tmp_path / "bad"), "--classes", "types",
                     "--hparams", '{"num_classes": 2}']) == 2

"""Sampler, cropping, augmentation and losses of the training pipeline on hand-made volumes."""

import numpy as np
import pytest
import torch

from RibFracSegLib.networks import build_network
from RibFracSegLib.training.augment import AugmentConfig, augment_batch
from RibFracSegLib.postprocess import spine_column
from RibFracSegLib.training.dataset import TrainingVolume, class_map, target_patch
from RibFracSegLib.training.losses import (UNKNOWN_TYPE, LossConfig, deep_supervision_loss, dice_bce_loss,
                                           downsample_target, multiclass_loss, segmentation_loss, soft_dice_loss,
                                           tversky_loss, window_loss)
from RibFracSegLib.training.trainer import TrainConfig, _forward
from RibFracSegLib.training.sampler import SamplerConfig, crop, mirror_point, sample_centres

torch.set_num_threads(1)


def body_with_spine(shape=(40, 50, 60), spine_yx=(35, 22)):
    """Soft tissue with a 15-mm bone column at spine_yx through every slice, plus a short 'rib' at y 10."""
    hu = np.full(shape, 40, np.int16)
    y, x = spine_yx
    hu[:, y - 7:y + 8, x - 7:x + 8] = 700
    hu[20, 10, 30:40] = 600
    return hu


def test_spine_column_found_from_the_image_off_centre():
    hu = body_with_spine()
    (yc, xc), (z0, z1) = spine_column(hu, (1.0, 1.0, 1.0))
    assert abs(yc - 35) <= 0.5 and abs(xc - 22) <= 0.5  # found on the ribs' working grid (2 voxels a block here)
    assert (z0, z1) == (0, 39)


def make_volume(n_fractures=2):
    hu = body_with_spine()
    labels = np.zeros(hu.shape, np.uint16)
    centroids = []
    for i in range(n_fractures):
        c = (10 + 10 * i, 12, 40)
        labels[c[0] - 1:c[0] + 2, c[1] - 1:c[1] + 2, c[2] - 1:c[2] + 2] = i + 1
        centroids.append(c)
    bone = np.argwhere(hu > 300).astype(np.int32)
    return TrainingVolume("t", hu, labels, (1.0, 1.0, 1.0), np.array(centroids, float).reshape(-1, 3),
                          (35.0, 22.0), (0, 39), bone)


def test_mirror_is_reflection_across_the_spine():
    vol = make_volume()
    assert np.allclose(mirror_point(np.array([10.0, 12.0, 40.0]), vol), [10, 12, 4])


def test_sample_centres_positive_fraction_and_jitter():
    vol = make_volume()
    cfg = SamplerConfig(patch_size=(16, 16, 16), patches_per_case=4, positive_fraction=0.5, jitter_voxels=2)
    rng = np.random.default_rng(0)
    for _ in range(20):
        centres = sample_centres(vol, cfg, rng)
        kinds = [k for _, k in centres]
        assert len(centres) == 4 and kinds.count("positive") == 2
        for c, k in centres:
            if k == "positive":
                assert min(np.abs(c - vol.centroids).max(axis=1)) <= 2
            if k == "bone":
                assert vol.hu[tuple(c)] > 300
            if k == "spine":
                assert abs(c[1] - 35) <= 2 and abs(c[2] - 22) <= 2
    # No fractures: all negatives.
    empty = make_volume(0)
    assert all(k != "positive" for _, k in sample_centres(empty, cfg, rng))


def test_crop_pads_outside_the_volume():
    arr = np.arange(27, dtype=np.int16).reshape(3, 3, 3)
    out = crop(arr, np.array([0, 0, 0]), (3, 3, 3), -1024)
    assert out[0, 0, 0] == -1024 and out[1, 1, 1] == arr[0, 0, 0] and out[2, 2, 2] == arr[1, 1, 1]
    assert (crop(arr, np.array([1, 1, 1]), (3, 3, 3), 0) == arr).all()


def test_identity_augmentation_and_lr_flip_keep_image_and_label_aligned():
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(2, 1, 8, 8, 8) * 2 - 1
    lab = (img > 0.3).float()
    still = AugmentConfig(flip_lr=0.0, max_rotation_deg=0, scale=(1.0, 1.0), max_offset=0, gain=0, shift=0, noise_std=0)
    a, b = augment_batch(img, lab, still, gen)
    assert torch.allclose(a, img, atol=1e-5) and torch.equal(b, lab)
    flip = AugmentConfig(flip_lr=1.0, max_rotation_deg=0, scale=(1.0, 1.0), max_offset=0, gain=0, shift=0, noise_std=0)
    a, b = augment_batch(img, lab, flip, gen)
    assert torch.allclose(a, img.flip(-1), atol=1e-5) and torch.equal(b, lab.flip(-1))


def test_random_affine_moves_label_with_image():
    gen = torch.Generator().manual_seed(1)
    lab = torch.zeros(4, 1, 24, 24, 24)
    lab[:, :, 8:16, 6:18, 10:14] = 1
    img = lab * 2 - 1  # the image is the label: after one shared warp they must still agree
    cfg = AugmentConfig(max_rotation_deg=15, scale=(0.8, 1.25), max_offset=0.1, gain=0, shift=0, noise_std=0)
    a, b = augment_batch(img, lab, cfg, gen)
    agree = ((a > 0).float() == b).float().mean()
    assert agree > 0.995
    assert not torch.equal(b, lab)  # it did move


def test_losses_by_hand():
    target = torch.zeros(1, 1, 4, 4, 4)
    target[..., :2, :, :] = 1  # 32 of 64 voxels
    perfect = (target * 2 - 1) * 30
    assert soft_dice_loss(perfect, target) < 1e-6
    # Predict all zeros: Dice = 1 - smooth / (0 + 0.5 * 32 + 1)
    zeros = torch.full_like(target, -30.0)
    assert soft_dice_loss(zeros, target).item() == pytest.approx(1 - 1 / 17, abs=1e-6)
    # Recall weighting: missing everything costs more than flagging everything when fn_weight > 0.5.
    ones = torch.full_like(target, 30.0)
    assert tversky_loss(zeros, target, 0.8) > tversky_loss(ones, target, 0.8)
    cfg = LossConfig(dice_weight=0.0, bce_weight=1.0)
    assert dice_bce_loss(torch.zeros_like(target), target, cfg).item() == pytest.approx(np.log(2), abs=1e-6)
    # Deep supervision: heads at full and half resolution, targets max-pooled.
    heads = [perfect, torch.full((1, 1, 2, 2, 2), 30.0)]
    half_target = torch.ones(1, 1, 2, 2, 2)
    half_target[..., 1, :, :] = 0
    ds = deep_supervision_loss(heads, target, LossConfig())
    expected = (1.0 * dice_bce_loss(heads[0], target) + 0.5 * dice_bce_loss(heads[1], half_target)) / 1.5
    assert ds.item() == pytest.approx(expected.item(), abs=1e-6)
    vae = torch.tensor(2.0)
    assert segmentation_loss(perfect, target, LossConfig(vae_weight=0.1), vae).item() == pytest.approx(
        dice_bce_loss(perfect, target).item() + 0.2, abs=1e-6)


def test_window_term_charges_a_false_blob_in_an_intact_window_like_a_missed_fracture():
    """Two windows, one with a fracture (found), one intact: a 40-voxel false blob in the intact one moves the
    voxel BCE + batch Dice by a fraction (the less, the more fracture voxels the batch holds) but costs the
    window term as much as missing the fracture."""
    target = torch.zeros(2, 1, 16, 16, 16)
    target[0, :, 6:10, 6:10, 6:10] = 1  # 64 voxels
    clean = (target * 2 - 1) * 8
    blob = clean.clone()
    blob[1, :, :5, :2, :4] = 8  # 40 false voxels of 4096
    missed = clean.clone()
    missed[0] = -8
    plain, windowed = LossConfig(), LossConfig(window_weight=1.0)
    assert dice_bce_loss(blob, target, plain) - dice_bce_loss(clean, target, plain) < 0.4
    assert window_loss(clean, target).item() == pytest.approx(float(np.log1p(np.exp(-8))), abs=1e-5)
    # the top 32 logits of the blob window are all false: its window's BCE is log(1 + e^8), as the miss's
    assert window_loss(blob, target).item() == pytest.approx(window_loss(missed, target).item(), abs=1e-5)
    assert window_loss(blob, target).item() == pytest.approx(float(np.log1p(np.exp(8)) + np.log1p(np.exp(-8))) / 2,
                                                             abs=1e-4)
    assert (dice_bce_loss(blob, target, windowed) - dice_bce_loss(blob, target, plain)).item() == pytest.approx(
        window_loss(blob, target).item(), abs=1e-6)


# --- multi-class ("types": background + RibFrac codes 1..4) -------------------------------------------

U = UNKNOWN_TYPE


def one_hot_logits(classes: torch.Tensor, n: int = 5, scale: float = 30.0) -> torch.Tensor:
    """(B, 1, ...) class map -> (B, n, ...) logits that put all the probability on that class."""
    return torch.nn.functional.one_hot(classes[:, 0].long(), n).movedim(-1, 1).float() * scale


def typed_target() -> torch.Tensor:
    target = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    target[..., 0, :, :] = 1  # displaced
    target[..., 1, :2, :] = 3  # buckle
    return target


def test_class_map_from_instances_and_codes():
    labels = np.array([[0, 1, 2], [3, 4, 0]], np.uint16)
    # 1 non-displaced, 2 undefined (-1), 3 not in the csv, 4 an unexpected code: 3 and 4 are of unknown type.
    assert class_map(labels, {1: 2, 2: -1, 4: 0}).tolist() == [[0, 2, U], [U, U, 0]]
    vol = make_volume(2)
    vol.codes = {1: 4, 2: -1}
    assert target_patch(vol.labels, vol, "types").dtype == np.int64
    assert set(np.unique(target_patch(vol.labels, vol, "types"))) == {0, 4, U}
    binary = target_patch(vol.labels, vol)
    assert binary.dtype == np.float32 and np.array_equal(binary, (vol.labels > 0).astype(np.float32))


def test_multiclass_loss_by_hand():
    target = typed_target()
    perfect = one_hot_logits(target)
    assert multiclass_loss(perfect, target).item() < 1e-4
    # Uniform logits: CE = log 5 exactly.
    ce_only = LossConfig(dice_weight=0.0, bce_weight=1.0)
    assert multiclass_loss(torch.zeros(1, 5, 4, 4, 4), target, ce_only).item() == pytest.approx(np.log(5), abs=1e-6)
    # The right type costs less than a wrong type at the same fracture-vs-background certainty.
    wrong = target.clone()
    wrong[target == 1] = 2
    assert multiclass_loss(one_hot_logits(wrong), target) > multiclass_loss(perfect, target) + 1.0
    # 16 of 64 voxels at -log softmax = 30: CE = 16 * 30 / 64.
    assert multiclass_loss(one_hot_logits(wrong), target, ce_only).item() == pytest.approx(7.5, abs=1e-4)
    # Recall weighting on the fracture-vs-background Dice: missing all fractures costs more than flagging all.
    dice_only = LossConfig(dice_weight=1.0, bce_weight=0.0, fn_weight=0.8, type_dice_weight=0.0)
    all_background = one_hot_logits(torch.zeros_like(target))
    all_fracture = one_hot_logits(torch.ones_like(target))
    assert multiclass_loss(all_background, target, dice_only) > multiclass_loss(all_fracture, target, dice_only)
    # 24 fracture voxels missed: 1 - 1 / (0.8 * 24 + 1).
    assert multiclass_loss(all_background, target, dice_only).item() == pytest.approx(1 - 1 / 20.2, abs=1e-4)


def test_unknown_type_counts_as_fracture_but_its_type_is_free():
    target = typed_target()
    target[..., 2, 0, 0] = U  # one fracture voxel whose code is -1
    ce_only = LossConfig(dice_weight=0.0, bce_weight=1.0)
    base = one_hot_logits(target.clamp(max=4))  # right everywhere else; 'segmental' at the unknown voxel
    as_displaced = base.clone()
    as_displaced[0, :, 2, 0, 0] = torch.tensor([0.0, 30.0, 0.0, 0.0, 0.0])
    as_background = base.clone()
    as_background[0, :, 2, 0, 0] = torch.tensor([30.0, 0.0, 0.0, 0.0, 0.0])
    # Which type the network gives an unknown-type voxel changes neither the CE nor the whole loss ...
    for config in (ce_only, LossConfig()):
        assert multiclass_loss(base, target, config).item() == pytest.approx(
            multiclass_loss(as_displaced, target, config).item(), abs=1e-6)
    # ... but calling it background costs -log P(fracture) = -log(4 / (e^30 + 4)), averaged over the 64 voxels.
    assert multiclass_loss(as_background, target, ce_only).item() == pytest.approx((30 - np.log(4)) / 64, abs=1e-5)
    # Uniform logits at the voxel: its CE is -log(4/5), not -log(1/5).
    uniform = base.clone()
    uniform[0, :, 2, 0, 0] = 0.0
    assert multiclass_loss(uniform, target, ce_only).item() == pytest.approx(np.log(5 / 4) / 64, abs=1e-5)


def test_class_map_downsampling_keeps_thin_fractures_and_known_types():
    target = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    target[0, 0, 0, 0, 0] = 3  # one buckle voxel in block (0, 0, 0)
    target[0, 0, 3, 3, 3] = U  # one unknown-type voxel in block (1, 1, 1)
    target[0, 0, 0, 3, 3], target[0, 0, 1, 2, 2] = U, 2  # unknown and non-displaced in block (0, 1, 1)
    half = downsample_target(target, (2, 2, 2))
    assert half.dtype == torch.long
    expected = torch.zeros(2, 2, 2, dtype=torch.long)
    expected[0, 0, 0], expected[1, 1, 1], expected[0, 1, 1] = 3, U, 2
    assert torch.equal(half[0, 0], expected)
    # Deep supervision over multi-class heads: the weighted mean of the heads' losses on pooled targets.
    heads = [one_hot_logits(typed_target()), torch.zeros(1, 5, 2, 2, 2)]
    ds = deep_supervision_loss(heads, typed_target())
    pooled = downsample_target(typed_target(), (2, 2, 2))
    expected_loss = (multiclass_loss(heads[0], typed_target()) + 0.5 * multiclass_loss(heads[1], pooled)) / 1.5
    assert ds.item() == pytest.approx(expected_loss.item(), abs=1e-6)


def test_class_maps_are_resampled_by_nearest_neighbour():
    gen = torch.Generator().manual_seed(2)
    lab = torch.zeros(2, 1, 24, 24, 24, dtype=torch.long)
    lab[:, :, 8:16, 6:18, 10:14] = 2
    lab[:, :, 8:16, 6:18, 14:18] = 4
    lab[:, :, 4:6, 4:6, 4:6] = U
    img = (lab > 0).float() * 2 - 1
    still = AugmentConfig(flip_lr=0.0, max_rotation_deg=0, scale=(1.0, 1.0), max_offset=0, gain=0, shift=0, noise_std=0)
    _, same = augment_batch(img, lab, still, gen)
    assert same.dtype == torch.long and torch.equal(same, lab)
    flip = AugmentConfig(flip_lr=1.0, max_rotation_deg=0, scale=(1.0, 1.0), max_offset=0, gain=0, shift=0, noise_std=0)
    assert torch.equal(augment_batch(img, lab, flip, gen)[1], lab.flip(-1))
    cfg = AugmentConfig(max_rotation_deg=15, scale=(0.8, 1.25), max_offset=0.1, gain=0, shift=0, noise_std=0)
    a, b = augment_batch(img, lab, cfg, gen)
    assert set(b.unique().tolist()) <= {0, 2, 4, U}  # no interpolated codes (bilinear would make 1, 3, ...)
    assert not torch.equal(b, lab) and ((a > 0) == (b > 0)).float().mean() > 0.99


@pytest.mark.parametrize("arch, hparams", [
    ("fracnet_unet", {"first_out_channels": 4}),
    ("res_unet_ds", {"base_channels": 2, "depth": 4, "num_heads": 3}),
    ("segresnet_vae", {"init_filters": 4, "blocks_down": [1, 1, 1, 1], "use_vae": True, "vae_latent": 8,
                       "input_size": [32, 32, 32]}),
])
def test_every_architecture_trains_with_five_classes(arch, hparams):
    config = TrainConfig(arch=arch, hparams=hparams, classes="types")
    assert config.hparams["num_classes"] == 5
    torch.manual_seed(0)
    model = build_network(arch, **config.hparams).train()
    target = torch.zeros(2, 1, 32, 32, 32, dtype=torch.long)
    for code, z in ((1, 4), (2, 10), (3, 16), (4, 22), (U, 28)):
        target[:, :, z:z + 2, 8:24, 12:14] = code  # thin plates: they must survive the heads' pooling
    x = (target > 0).float() * 2 - 1 + 0.1 * torch.randn(2, 1, 32, 32, 32)
    output, vae_term = _forward(model, x)
    if arch == "res_unet_ds":
        assert [o.shape[1:] for o in output] == [(5, 32, 32, 32), (5, 16, 16, 16), (5, 8, 8, 8)]
    else:
        assert output.shape == (2, 5, 32, 32, 32)
    assert (vae_term is not None) == (arch == "segresnet_vae")
    loss = segmentation_loss(output, target, config.loss, vae_term)
    assert torch.isfinite(loss) and loss.item() > 0.1
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    heads = [g for name, g in grads.items() if name.startswith(("final.", "heads.", "head.")) and g.dim() > 1]
    assert heads and all(g.abs().sum() > 0 for g in heads)
    if arch == "segresnet_vae":
        assert grads["vae_mu.weight"].abs().sum() > 0


def test_class_mode_sets_and_checks_num_classes():
    assert "num_classes" not in TrainConfig().hparams  # the binary default is untouched
    assert TrainConfig(classes="types").hparams == {"first_out_channels": 8, "num_classes": 5}
    with pytest.raises(ValueError, match="num_classes 5"):
        TrainConfig(classes="types", hparams={"num_classes": 3})
    with pytest.raises(ValueError, match="num_classes 1"):
        TrainConfig(hparams={"num_classes": 5})
    with pytest.raises(ValueError, match="class mode"):
        TrainConfig(classes="kinds")


def test_fine_tuning_starts_from_a_checkpoint_of_the_same_network():
    from RibFracSegLib.checkpoint import CheckpointError, load_checkpoint
    from RibFracSegLib.cli.train import _init_weights
    from RibFracSegLib.shipped import shipped_model
    from RibFracSegLib.training.trainer import TrainConfig

    shipped = shipped_model("fracture_ct")
    state = _init_weights(str(shipped), TrainConfig(arch="fracnet_unet", hparams={"first_out_channels": 8}))
    expected = load_checkpoint(shipped).state_dict
    assert set(state) == set(expected) and torch.equal(state["first.0.weight"], expected["first.0.weight"])
    with pytest.raises(CheckpointError, match="--init .* holds fracnet_unet"):
        _init_weights(str(shipped), TrainConfig(arch="fracnet_unet", hparams={"first_out_channels": 16}))

"""Sampler, cropping, augmentation and losses of the training pipeline on hand-made volumes."""

import numpy as np
import pytest
import torch

from RibFracSegLib.training.augment import AugmentConfig, augment_batch
from RibFracSegLib.postprocess import spine_column
from RibFracSegLib.training.dataset import TrainingVolume
from RibFracSegLib.training.losses import (LossConfig, deep_supervision_loss, dice_bce_loss, segmentation_loss,
                                           soft_dice_loss, tversky_loss)
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
    assert abs(yc - 35) < 0.5 and abs(xc - 22) < 0.5
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

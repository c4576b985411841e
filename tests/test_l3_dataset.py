"""L3 training data: the public npz format, our cache round trip, crops whose target stays on L3."""

from __future__ import annotations

import numpy as np
import pytest

from RibFracSegLib.l3.augment import line_target, random_example
from RibFracSegLib.l3.dataset import MipSample, load_npz, save_npz
from RibFracSegLib.l3.evaluation import error_stats


def _objects(arrays):
    out = np.empty(len(arrays), dtype=object)
    out[:] = arrays
    return out


def test_public_format_is_resampled_to_mm(tmp_path):
    f = np.full((80, 300), -1000, np.int16)  # 80 slices of 2.5 mm, 300 columns of 0.8 mm (HU)
    f[40:42, 100:200] = 1500
    path = tmp_path / "l3.npz"
    np.savez(path, images_f=_objects([f]), images_s=_objects([f[:, :250]]),
             ydata=np.array({"A": np.array([40.0]), "B": np.array([42.0])}, dtype=object),
             names=np.array(["case1"]), spacings=np.array([[0.8, 0.7, 2.5]]))
    (sample,) = load_npz(path)
    assert sample.row_mm == pytest.approx(41 * 2.5)
    assert sample.frontal.shape == (198, 240) and sample.sagittal.shape == (198, 175)
    assert sample.frontal.max() == pytest.approx(1.0) and sample.frontal.min() == 0.0
    bright = np.nonzero(sample.frontal[:, 150] > 0.5)[0]
    assert bright.min() == pytest.approx(100, abs=2) and bright.max() == pytest.approx(103, abs=2)


def test_cache_round_trip_keeps_missing_l3(tmp_path):
    rng = np.random.default_rng(0)
    samples = [MipSample("a", rng.random((50, 60), dtype=np.float32), rng.random((50, 40), dtype=np.float32), 21.5),
               MipSample("b", rng.random((70, 60), dtype=np.float32), rng.random((70, 40), dtype=np.float32), None)]
    back = load_npz(save_npz(tmp_path / "c.npz", samples))
    assert [s.name for s in back] == ["a", "b"]
    assert back[0].row_mm == pytest.approx(21.5) and back[1].row_mm is None
    np.testing.assert_allclose(back[1].frontal, samples[1].frontal, atol=1 / 255)
    with pytest.raises(ValueError, match="images_f"):
        np.savez(tmp_path / "bad.npz", images=np.zeros(2))
        load_npz(tmp_path / "bad.npz")


@pytest.mark.parametrize("augment", [False, True])
def test_crop_target_follows_the_l3_row(augment):
    image = np.zeros((500, 300), np.float32)
    image[200:400, 120:180] = 0.3  # a "spine"
    image[309:312, 120:180] = 1.0  # marker on the L3 row (310)
    sample = MipSample("m", image, image.copy(), 310.0)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        x, y = random_example(sample, "frontal", rng, 160, 128, sigma=2.0, p_l3=1.0, augment=augment)
        assert x.shape == y.shape == (160, 128)
        target_row = int(np.argmax(y[:, 64]))
        marker_row = int(np.argmax(np.convolve(x[:, 40:90].mean(axis=1), np.ones(3), "same")))
        assert abs(target_row - marker_row) <= 2, (seed, target_row, marker_row)
        assert y.max() > 0.9


def test_line_target_and_error_stats():
    t = line_target(100, 10, 30.0, sigma=3.0)
    assert np.argmax(t[:, 0]) == 30 and t[30].min() == pytest.approx(1.0) and t[60].max() < 1e-10
    assert line_target(100, 10, None).max() == 0
    s = error_stats([1.0, -2.0, 6.0, 12.0])
    assert s["median"] == pytest.approx(4.0) and s["mean"] == pytest.approx(5.25)
    assert s["within_5mm"] == 0.5 and s["within_10mm"] == 0.75

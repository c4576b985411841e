"""The one HU-window -> grey rule of the QC pictures."""

import numpy as np

from RibFracSegLib.pictures import grey, grey_rgb


def test_the_window_maps_to_black_through_white_and_nan_to_black():
    values = np.array([-1000.0, -250.0, 425.0, 1100.0, 3000.0, np.nan])
    assert grey(values, (-250.0, 1100.0)).tolist() == [0, 0, 127, 255, 255, 0]
    assert grey(np.array([100, 550, 1000], np.int16), (100.0, 1000.0)).tolist() == [0, 127, 255]


def test_the_rgb_picture_repeats_the_grey_in_each_channel():
    values = np.array([[0.0, 0.5], [1.0, np.nan]])
    rgb = grey_rgb(values, (0.0, 1.0))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[..., 0].tolist() == rgb[..., 2].tolist() == [[0, 127], [255, 0]]

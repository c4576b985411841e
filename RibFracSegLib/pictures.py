"""Grey pictures of CT values for the QC PNGs (L3 overlay and MIPs, spine count, unfolded ribs): one
rule from a value window to 0..255, so every picture shows the same HU the same way."""

from __future__ import annotations

import numpy as np


def grey(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """uint8 grey of `values` in `window` (low, high): low and below black, high and above white, NaN black."""
    lo, hi = window
    return (np.clip((np.nan_to_num(values, nan=lo) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def grey_rgb(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """`grey` as an RGB array (..., 3), ready for coloured marks."""
    return np.repeat(grey(values, window)[..., None], 3, axis=2)

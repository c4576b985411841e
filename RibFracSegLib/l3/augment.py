"""Training crops of L3 MIPs and their targets (Kanavati et al. style, on 2 CPU cores).

A crop is centred on the MIP's column centre (with jitter); the target is a line across the L3 row,
and the loss is counted on the central band that decoding reads (band_weight), as wide in mm as at
inference. Most crops contain the L3 row; the rest are
anywhere, and crops without L3 (or CTs without L3) get an all-zero target: that is what teaches the
network to say "not in view". Augmentations: vertical scale (body size), left-right flip, slice-
thickness blur along rows, a short field of view (a liver CT that stops near L3, like CRLM-CT-1004:
the MIP cut to 120-300 mm, L3 inside or not), contrast/gamma, a smooth gain field (uneven bone
density and beam hardening), bright blobs (contrast-filled organs and vessels), noise and occluding
boxes. The short field of view, gain field and blobs are off unless asked for (train-l3 --p-short,
--p-gain, --p-blobs).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from RibFracSegLib import defaults
from RibFracSegLib.l3.dataset import MipSample
from RibFracSegLib.l3.decoding import band_columns
from RibFracSegLib.l3.projections import fit_to_input


def line_target(rows: int, cols: int, row: float | None, sigma: float = defaults.L3_TARGET_SIGMA_MM) -> np.ndarray:
    """Gaussian line at `row` across all columns (zeros if row is None)."""
    if row is None:
        return np.zeros((rows, cols), np.float32)
    profile = np.exp(-0.5 * ((np.arange(rows) - row) / sigma) ** 2).astype(np.float32)
    return np.repeat(profile[:, None], cols, axis=1)


def band_weight(rows: int, cols: int) -> np.ndarray:
    """Loss weight: 1 on the central band read at decoding, 0 elsewhere (free to be anything)."""
    weight = np.zeros((rows, cols), np.float32)
    weight[:, band_columns(cols)] = 1.0
    return weight


def _crop(image: np.ndarray, top: int, rows: int, cols: int, col_shift: int) -> np.ndarray:
    """Rows [top, top+rows) of the image, columns centred (+shift) and zero-padded as needed."""
    padded, offset = fit_to_input(image, cols=cols + 2 * abs(col_shift) + 2, min_rows=0, row_multiple=1)
    c0 = (padded.shape[1] - cols) // 2 + col_shift
    out = np.zeros((rows, cols), np.float32)
    src = padded[max(0, top):top + rows, c0:c0 + cols]
    out[max(0, -top):max(0, -top) + src.shape[0]] = src
    return out


def short_field_of_view(image: np.ndarray, row: float | None, rng: np.random.Generator,
                        length_mm: tuple[float, float] = (120.0, 300.0)) -> tuple[np.ndarray, float | None]:
    """The rows of a shorter scan of the same patient (1-mm rows): L3 kept inside in 60 % of cuts when
    the MIP has it; an L3 row within defaults.L3_EDGE_MM of a cut counts as not in view."""
    n = image.shape[0]
    length = int(min(n, rng.uniform(*length_mm) / defaults.L3_MIP_SPACING_MM))
    if row is not None and rng.random() < 0.6:
        lo, hi = max(0, int(row) - length + 10), min(n - length, int(row) - 10)
        top = int(rng.integers(lo, hi + 1)) if hi >= lo else int(rng.integers(0, n - length + 1))
    else:
        top = int(rng.integers(0, n - length + 1))
    edge = defaults.L3_EDGE_MM / defaults.L3_MIP_SPACING_MM
    inside = row is not None and edge <= row - top < length - edge
    return image[top:top + length], (row - top if inside else None)


def bright_blobs(shape: tuple[int, int], rng: np.random.Generator, n: tuple[int, int] = (1, 6)) -> np.ndarray:
    """A few smooth bright ellipses (0.05-0.6 of the bone range, 3-40 mm) anywhere in the crop."""
    rr, cc = np.mgrid[:shape[0], :shape[1]].astype(np.float32)
    out = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(*n))):
        r0, c0 = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        a, b = rng.uniform(3, 40, size=2)
        d = ((rr - r0) / a) ** 2 + ((cc - c0) / b) ** 2
        out = np.maximum(out, rng.uniform(0.05, 0.6) * np.exp(-0.5 * d ** 2))
    return out


def random_example(sample: MipSample, view: str, rng: np.random.Generator, rows: int, cols: int,
                   sigma: float = defaults.L3_TARGET_SIGMA_MM, p_l3: float = 0.8, augment: bool = True,
                   p_short: float = 0.0, p_gain: float = 0.0, p_blobs: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(image, target) crop of one view of a sample, both [rows, cols]; `p_short`: chance of a
    short field of view (see short_field_of_view), `p_gain`: of a smooth gain field, `p_blobs`: of
    bright blobs (contrast-filled organs, vessels, calcifications; 0: the rng stream and the crops are
    those of before these three existed)."""
    image = sample.frontal if view == "frontal" else sample.sagittal
    row = sample.row_mm / defaults.L3_MIP_SPACING_MM if sample.row_mm is not None else None
    if augment:
        scale = rng.uniform(0.85, 1.15)
        image = ndimage.zoom(image, (scale, 1.0), order=1)
        row = None if row is None else row * scale
        if rng.random() < 0.5:
            image = image[:, ::-1]
        if rng.random() < 0.5:
            image = ndimage.gaussian_filter1d(image, rng.uniform(0.5, 2.0), axis=0)
        if p_short and rng.random() < p_short:
            image, row = short_field_of_view(image, row, rng)
    n = image.shape[0]
    if row is not None and rng.random() < p_l3:
        top = int(round(row - rng.uniform(0.15, 0.85) * rows))
    else:
        top = int(rng.integers(min(0, n - rows), max(1, n - rows + 1)))
    x = _crop(image, top, rows, cols, int(rng.integers(-16, 17)) if augment else 0)
    local = None if row is None or not 0 <= row - top < rows else row - top
    if augment:
        x = np.clip(x * rng.uniform(0.8, 1.2), 0, 1) ** rng.uniform(0.7, 1.4)
        if p_gain and rng.random() < p_gain:  # smooth gain field on a 20-mm scale
            gain = ndimage.gaussian_filter(rng.standard_normal((rows // 4, cols // 4)), 5.0)
            gain = ndimage.zoom(gain / (gain.std() + 1e-6), 4, order=1)[:rows, :cols]
            x = np.clip(x * (1 + rng.uniform(0.05, 0.25) * gain), 0, 1)
        if p_blobs and rng.random() < p_blobs:
            x = np.where(x > 0, np.maximum(x, bright_blobs((rows, cols), rng)), x)  # not beyond the scan
        x = x + rng.normal(0, rng.uniform(0, 0.03), x.shape).astype(np.float32)
        for _ in range(int(rng.integers(0, 3))):
            h, w = (int(v) for v in rng.integers(10, 60, size=2))
            r0, c0 = int(rng.integers(0, rows - h)), int(rng.integers(0, cols - w))
            x[r0:r0 + h, c0:c0 + w] = 0
    return x.astype(np.float32), line_target(rows, cols, local, sigma)


def random_batch(samples: list[MipSample], rng: np.random.Generator, batch: int, rows: int, cols: int,
                 sigma: float = defaults.L3_TARGET_SIGMA_MM, p_short: float = 0.0, p_gain: float = 0.0,
                 p_blobs: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """[batch, 1, rows, cols] images and targets, views and samples drawn at random."""
    pairs = [random_example(samples[int(rng.integers(len(samples)))], ("frontal", "sagittal")[int(rng.integers(2))],
                            rng, rows, cols, sigma, p_short=p_short, p_gain=p_gain, p_blobs=p_blobs)
             for _ in range(batch)]
    return np.stack([p[0] for p in pairs])[:, None], np.stack([p[1] for p in pairs])[:, None]

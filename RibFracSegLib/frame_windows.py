"""Where a rib-frame network looks along a straightened rib, and how its windows are blended.

Windows are `patch_size` (a, p, q): along the arc every patch x (1 - overlap) sections, the last flush
with the frame's end (`sliding_window.axis_starts`), centred across the section, blended with the
sliding window's weights and aggregator (`importance_map`, `SlabAggregator`).

A break near the seam of two windows is seen by each with little context on one side, and both can
answer weakly (a faint demo break 5 mm from both windows' ends: blended peak 0.66, a window centred on
it 0.998). So where the blended answer peaks at or above `relook_from` at a place no window holds in
its centre (FRAME_RELOOK_CENTRAL of the window from both its ends), one more window is run centred
there and blended in with the others; its Gaussian weight rules at its centre. An adaptive overlap:
windows are added only where the network saw something, not along the whole rib.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
from scipy import ndimage

from . import defaults
from .errors import Cancelled
from .preprocess import patch_batch
from .progress import Cancel
from .sliding_window import Box, SlabAggregator, axis_starts

Predict = Callable[[np.ndarray], np.ndarray]  # (n, a, p, q) normalised windows -> (n, a, p, q) probabilities


def frame_windows(shape: Sequence[int], patch_size: Sequence[int], overlap: float) -> list[Box]:
    """Window boxes in a frame [a, p, q]: along the arc as the sliding window places patches, centred across."""
    across = []
    for n, p in zip(shape[1:], patch_size[1:]):
        start = max(0, (n - p) // 2)
        across.append(slice(start, min(n, start + p)))
    return [(slice(a, min(a + patch_size[0], shape[0])), *across) for a in axis_starts(shape[0], patch_size[0], overlap)]


def relook_windows(section_peak: np.ndarray, boxes: Sequence[Box], length: int, relook_from: float) -> list[Box]:
    """Windows (like `boxes`, `length` sections along the arc) centred on the peaks of `section_peak`
    (the blended value's maximum per section) at or above `relook_from` that no window of `boxes` holds
    at least FRAME_RELOOK_CENTRAL x `length` sections from both its ends; none where a frame is one window long."""
    n = len(section_peak)
    if relook_from <= 0 or n <= length or not len(boxes):
        return []
    central = max(1, int(round(defaults.FRAME_RELOOK_CENTRAL * length)))
    a = np.arange(n)
    depth = np.max([np.minimum(a - b[0].start, b[0].stop - 1 - a) for b in boxes], axis=0)  # sections from the nearer end
    peak = (section_peak >= relook_from) & (section_peak == ndimage.maximum_filter1d(section_peak, 2 * central + 1))
    runs, n_runs = ndimage.label(peak & (depth < central))  # a flat top is one peak: its middle
    middles = [int(round(m[0])) for m in ndimage.center_of_mass(np.ones(n), runs, range(1, n_runs + 1))]
    starts = sorted({int(np.clip(i - length // 2, 0, n - length)) for i in middles} - {b[0].start for b in boxes})
    return [(slice(s, s + length), *boxes[0][1:]) for s in starts]


def frame_values(volume: np.ndarray, boxes: Sequence[Box], predict: Predict, patch_size: Sequence[int],
                 hu_window: Sequence[float], weights: np.ndarray, batch_size: int,
                 step: Callable[[int], None], cancel: Optional[Cancel], floor: float,
                 relook_from: float = 0.0, more: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """The blended probabilities of one sampled frame `volume` [a, p, q] (`boxes`, then the `relook_windows`
    they call for: `more(n)` is told how many before they run; `step(n)` counts windows run), spread across
    the whole section (nearest computed value beyond the windows' width), values below `floor` set to 0."""
    ran: list[tuple[Box, np.ndarray]] = []

    def run(windows: Sequence[Box]) -> None:
        for first in range(0, len(windows), batch_size):
            if cancel is not None and cancel():
                raise Cancelled("inference cancelled; no result was produced")
            chunk = windows[first:first + batch_size]
            for box, prediction in zip(chunk, predict(patch_batch(volume, chunk, patch_size, hu_window))):
                ran.append((box, prediction[tuple(slice(0, b.stop - b.start) for b in box)]))
            step(len(chunk))

    def blend() -> np.ndarray:
        aggregator = SlabAggregator(volume.shape, weights)
        for box, prediction in sorted(ran, key=lambda r: r[0][0].start):  # stable: ties keep their order
            aggregator.add(box, prediction)
        return aggregator.finish()

    run(boxes)
    out = blend()
    p, q = boxes[0][1], boxes[0][2]
    extra = (relook_windows(out[:, p, q].max(axis=(1, 2)), boxes, int(patch_size[0]), relook_from)
             if relook_from > 0 else [])
    if extra:
        if more is not None:
            more(len(extra))
        run(extra)
        out = blend()
    values = np.pad(out[:, p, q], ((0, 0), (p.start, volume.shape[1] - p.stop), (q.start, volume.shape[2] - q.stop)),
                    mode="edge")
    values[values < floor] = 0.0
    return values

"""Windows along a straightened rib: a seam-weak peak gets a window centred on it, and that window's
answer rules the blend there (`frame_windows`)."""

import numpy as np
import pytest

from RibFracSegLib.frame_windows import frame_values, frame_windows, relook_windows
from RibFracSegLib.sliding_window import importance_map

PATCH = (64, 8, 8)
HU = (0.0, 1000.0)  # normalised to [-1, 1]: the stand-in reads the index back
SHAPE = (200, 10, 10)  # sections; windows start at 0, 48, 96, 136 (overlap 0.25, the last flush)
BREAK = 56  # 8 sections into the window starting at 48, 8 from the end of the one starting at 0


def seam_blind(break_at: int):
    """A stand-in network that answers 0.99 on a break it sees with at least 16 sections of context
    either side, 0.3 with less (a rib network at a window's end), 0 elsewhere."""

    def predict(batch: np.ndarray) -> np.ndarray:
        out = np.zeros(batch.shape, np.float32)
        for k, window in enumerate(batch):
            start = int(round((window[0, 0, 0] + 1.0) * HU[1] / 2))  # the volume holds each section's index
            depth = min(break_at - start, start + PATCH[0] - 1 - break_at)
            if depth >= 0:
                out[k, break_at - start - 1:break_at - start + 2] = 0.99 if depth >= 16 else 0.3
        return out

    return predict


def run(relook_from: float):
    volume = np.broadcast_to(np.arange(SHAPE[0], dtype=np.float32)[:, None, None], SHAPE).copy()
    boxes = frame_windows(SHAPE, PATCH, 0.25)
    counted, added = [], []
    values = frame_values(volume, boxes, seam_blind(BREAK), PATCH, HU, importance_map(PATCH), 2,
                          counted.append, None, 0.0, relook_from, added.append)
    return values, boxes, sum(counted), sum(added)


def test_a_seam_peak_gets_a_window_centred_on_it_and_its_answer_rules_there():
    plain, boxes, ran, added = run(0.0)
    assert [b[0].start for b in boxes] == [0, 48, 96, 136] and ran == 4 and added == 0
    assert plain[BREAK].max() == pytest.approx(0.3, abs=1e-3)  # both windows see it near an end
    relooked, _, ran, added = run(0.1)
    assert added == 1 and ran == 5
    assert relooked[BREAK].max() > 0.9
    far = np.r_[0:BREAK - 40, BREAK + 40:SHAPE[0]]
    np.testing.assert_array_equal(relooked[far], plain[far])  # beyond the added window's reach: unchanged
    high, _, _, added = run(0.5)  # the seam's 0.3 is below this level: nothing added
    assert added == 0
    np.testing.assert_array_equal(high, plain)


def test_relook_windows_only_where_no_window_holds_the_peak_in_its_centre():
    boxes = frame_windows(SHAPE, PATCH, 0.25)
    peak = np.zeros(SHAPE[0], np.float32)
    peak[80] = 0.5  # 32 sections into the window at 48: its centre
    assert relook_windows(peak, boxes, PATCH[0], 0.1) == []
    peak[56] = 0.5  # in the seam of the windows at 0 and 48
    peak[196] = 0.5  # 4 sections from the frame's end: no window can centre there, the last one is flush
    got = relook_windows(peak, boxes, PATCH[0], 0.1)
    assert [(b[0].start, b[0].stop) for b in got] == [(24, 88)]
    assert got[0][1:] == boxes[0][1:]  # centred across as the others
    assert relook_windows(peak, boxes, PATCH[0], 0.6) == []  # below the level
    assert relook_windows(peak, boxes, PATCH[0], 0.0) == []  # 0: never
    one = frame_windows((60, 10, 10), PATCH, 0.25)  # a frame one window long
    assert relook_windows(np.full(60, 0.9, np.float32), one, PATCH[0], 0.1) == []


def test_the_relook_level_is_the_checkpoints_and_checked():
    import dataclasses

    from RibFracSegLib import defaults
    from RibFracSegLib.checkpoint import load_checkpoint
    from RibFracSegLib.errors import CheckpointError
    from RibFracSegLib.frame_inference import frame_relook_from
    from RibFracSegLib.shipped import shipped_model

    ckpt = load_checkpoint(shipped_model("fracture"))
    bare = dataclasses.replace(ckpt, inference={k: v for k, v in ckpt.inference.items() if k != "frame_relook_from"})
    assert frame_relook_from(bare) == defaults.FRAME_RELOOK_FROM
    assert frame_relook_from(dataclasses.replace(ckpt, inference={**ckpt.inference, "frame_relook_from": 0.2})) == 0.2
    with pytest.raises(CheckpointError, match="frame_relook_from"):
        frame_relook_from(dataclasses.replace(ckpt, inference={**ckpt.inference, "frame_relook_from": 1.5}))

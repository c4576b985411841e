"""What the shipped rib-frame detector learned, on the held-out real chest CT (LIDC-IDRI-0314, never
trained on): straightened by the rib step, a rib with a displaced break simulated into it makes the
network fire at the break, and not on the same rib's intact bone 35 mm away, not at the same place
before the break, nor at the rib's anterior end (the costochondral junction, where the bone stops as
it does at a gap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from RibFracSegLib.checkpoint import build_model, load_checkpoint
from RibFracSegLib.frame_inference import frame_geometry
from RibFracSegLib.preprocess import patch_batch
from RibFracSegLib.ribs.frame import RibFrame
from RibFracSegLib.ribs.frame_build import body_centre, rib_frame
from RibFracSegLib.shipped import shipped_model

REAL_CHEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "LIDC-IDRI-0314.nii.gz"
INTACT_MM = 35.0  # the intact point lies this far along the rib from the break
CORE_MM = 6.0  # the network's answer for a place: its highest probability within this much arc of it
END_MM = 8.0  # the costochondral point: this far inside the frame's anterior end


@pytest.fixture(scope="module")
def frame_model():
    ckpt = load_checkpoint(shipped_model("fracture"))
    assert ckpt.preprocessing.get("space") == "rib_frame"
    torch.set_num_threads(2)
    return ckpt, build_model(ckpt).eval()


def _core_max(ckpt, model, frame: RibFrame, a: float) -> float:
    """Highest probability within CORE_MM of arc index `a`, from one window centred there (clamped
    to the frame) and across the section."""
    patch = tuple(int(s) for s in ckpt.patch_size)
    m = frame.shape[0]
    start = int(np.clip(round(a) - patch[0] // 2, 0, max(0, m - patch[0])))
    box = (slice(start, min(m, start + patch[0])),
           *(slice((n - p) // 2, (n - p) // 2 + p) for n, p in zip(frame.shape[1:], patch[1:])))
    x = torch.from_numpy(patch_batch(frame.volume, [box], patch, ckpt.preprocessing["hu_window"]))[:, None]
    with torch.no_grad():
        p = torch.sigmoid(model(x)).numpy()[0, 0]
    core, c = int(CORE_MM / frame.voxel_mm), int(round(a)) - start
    return float(p[max(0, c - core):c + core + 1].max())


def decision_level(ckpt) -> float:
    """What a probability must reach to make a detection: the threshold, or the confidence floor if higher."""
    return max(float(ckpt.thresholds["probability"]), float(ckpt.thresholds.get("min_confidence", 0.0)))


@pytest.mark.skipif(not REAL_CHEST.is_file(), reason="../shared/data/real/LIDC-IDRI-0314.nii.gz not present")
def test_on_a_real_rib_frame_it_fires_on_a_break_only(frame_model):
    from RibFracSegLib.io import read_ct
    from RibFracSegLib.ribs import segment_ribs
    from RibFracSegLib.simulate.case import simulate_case

    ckpt, model = frame_model
    voxel_mm, half_mm = frame_geometry(ckpt)
    level = decision_level(ckpt)
    image = read_ct(REAL_CHEST)
    ribs = segment_ribs(image)
    centre = body_centre(ribs.ribs)
    case = simulate_case(image, ribs, 1, np.random.default_rng(1), kinds=[1])
    brk = case.fractures[0]
    rib = next(r for r in ribs.ribs if r.label == brk.spec.rib_label)
    broken, before = rib_frame(rib, centre, voxel_mm, half_mm), rib_frame(rib, centre, voxel_mm, half_mm)
    broken.sample(case.image)
    before.sample(image)
    a = float(broken.lps_to_index(np.asarray([brk.center_lps]))[0, 0])
    step = INTACT_MM / voxel_mm
    intact = a + step if a + step < broken.shape[0] - 2 * step / 3 else a - step
    end = broken.shape[0] - 1 - END_MM / voxel_mm
    assert abs(end - a) > 2 * step / 3 and abs(intact - end) > CORE_MM / voxel_mm, "the break lies too near the end"
    scores = {"break": _core_max(ckpt, model, broken, a), "intact": _core_max(ckpt, model, broken, intact),
              "before": _core_max(ckpt, model, before, a), "costochondral": _core_max(ckpt, model, before, end)}
    assert scores["break"] >= max(level, 0.5), f"{rib.name} at {a * voxel_mm:.0f} mm: {scores}, level {level}"
    quiet = {k: v for k, v in scores.items() if k != "break"}
    assert max(quiet.values()) < level, f"{rib.name}: fires off the break: {scores}, level {level}"

"""A training run's resumable state: weights, optimiser, schedule, both random generators and the
loop's own counters, saved atomically and restored exactly (`--resume` gives the losses an unbroken
run would). One home for every trainer that resumes (trainer.py, frame_train.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path


def save_train_state(path: Path, model, opt, sched, rng: np.random.Generator, aug_gen: torch.Generator,
                     state: dict, **extra: str) -> None:
    """Write train_state.pt; `extra`: plain strings kept beside (e.g. the config as JSON)."""
    payload = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
               "numpy_rng": json.dumps(rng.bit_generator.state), "aug_rng": aug_gen.get_state(),
               "torch_rng": torch.get_rng_state(), "state": json.dumps(state), **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_train_state(path: Path, model, opt, sched, rng: np.random.Generator, aug_gen: torch.Generator) -> dict:
    """Restore what `save_train_state` wrote into the given objects; returns the loop's counters."""
    saved = torch.load(Path(path), map_location="cpu", weights_only=True)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])
    rng.bit_generator.state = json.loads(saved["numpy_rng"])
    aug_gen.set_state(saved["aug_rng"])
    torch.set_rng_state(saved["torch_rng"])
    return json.loads(saved["state"])

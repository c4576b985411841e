"""Self-describing checkpoints: one file says which network, how to pre-process, which thresholds.

Only plain containers and tensors are stored, and files are read with `weights_only=True`, so a
checkpoint can never run code. A bare FracNet `model_weights.pth` (state_dict only) is recognised
by its keys and wrapped with FracNet's published pre-processing. Generic: any registered arch, 2-D too.
"""

from __future__ import annotations

import functools
import os
import pickle
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from . import defaults
from .errors import CheckpointError
from .io import atomic_path
from .networks import build_network

FORMAT_KEY = "ribfracseg_checkpoint"
FORMAT_VERSION = 1
FRACNET_ARCH = "fracnet_unet"


def default_preprocessing() -> dict:
    return {"hu_window": list(defaults.HU_WINDOW), "normalisation": "window_to_minus1_1", "target_spacing": None}


def default_thresholds() -> dict:
    return {"probability": defaults.PROB_THRESHOLD, "bone_hu": defaults.BONE_HU,
            "min_volume_mm3": defaults.MIN_FRACTURE_VOLUME_MM3, "min_confidence": defaults.MIN_CONFIDENCE,
            "on_rib": defaults.ON_RIB_FILTER, "rib_margin_mm": defaults.ON_RIB_MARGIN_MM}


@dataclass
class Checkpoint:
    arch: str
    hparams: dict
    state_dict: dict[str, torch.Tensor]
    preprocessing: dict = field(default_factory=default_preprocessing)
    patch_size: tuple[int, ...] = defaults.PATCH_SIZE
    thresholds: dict = field(default_factory=default_thresholds)
    provenance: dict = field(default_factory=dict)
    candidate_classifier: dict = field(default_factory=dict)  # second stage (RibFracSegLib.candidates); empty: none
    inference: dict = field(default_factory=dict)  # how to run it, e.g. the calibrated precision (RibFracSegLib.precision)

    @classmethod
    def from_model(cls, arch: str, model: nn.Module, hparams: Optional[dict] = None, **fields: Any) -> "Checkpoint":
        """Capture a model's weights (copied to CPU) with its description."""
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return cls(arch=arch, hparams=dict(hparams or {}), state_dict=state, **fields)


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint) -> Path:
    """Write atomically in a form `load_checkpoint` accepts (plain types + tensors only)."""
    payload = asdict(ckpt) | {FORMAT_KEY: FORMAT_VERSION, "patch_size": list(ckpt.patch_size)}
    payload["state_dict"] = dict(ckpt.state_dict)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
        try:  # refuse to write what could not be read back safely (e.g. a numpy scalar in hparams)
            torch.load(tmp, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise CheckpointError(f"checkpoint fields must be plain Python values and tensors: {err}") from None
    return Path(path)


def _pickle_reason(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if "global" in line.lower()]
    return (named or lines or ["unsupported object"])[0][:200]


def _read(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}. Check the path, or use the shipped model "
                              f"(RibFracSegLib/{defaults.MODELS_PACKAGE_DIR}/ holds ribfrac_default.pt and "
                              "l3_default.pt).")
    with path.open("rb") as fh:
        head = fh.read(2)
    if not zipfile.is_zipfile(path) and not head.startswith(b"\x80"):  # neither zip nor legacy torch format
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or another file type). "
                              "Expected a file written by torch.save.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} contains pickled Python objects or code, which are refused for safety "
            f"({_pickle_reason(err)}). Expected tensors and plain values only: "
            "re-save the weights with RibFracSegLib.checkpoint.save_checkpoint or torch.save(model.state_dict()).") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or another file type: "
            f"{str(err).strip().splitlines()[0][:200]}). Expected a file written by torch.save.") from None


def _fracnet_hparams(state: dict[str, torch.Tensor]) -> Optional[dict]:
    """FracNet's constructor arguments if `state` has exactly FracNet's keys, else None."""
    expected = build_network(FRACNET_ARCH).state_dict().keys()
    if set(state) != set(expected):
        return None
    first, final = state["first.0.weight"], state["final.weight"]
    if first.ndim != 5 or final.ndim != 5:
        return {}
    return {"in_channels": first.shape[1], "num_classes": final.shape[0], "first_out_channels": first.shape[0]}


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint (ours, or a bare FracNet state_dict) without executing any pickled code."""
    path = Path(path)
    data = _read(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}; expected a dict (checkpoint or state_dict).")
    if FORMAT_KEY in data:
        if data[FORMAT_KEY] > FORMAT_VERSION:
            raise CheckpointError(f"{path} is checkpoint format {data[FORMAT_KEY]}; this version reads up to "
                                  f"{FORMAT_VERSION}. Update RibFracSeg.")
        missing = {"arch", "hparams", "state_dict"} - set(data)
        if missing:
            raise CheckpointError(f"{path} lacks the fields {sorted(missing)} every checkpoint must have.")
        fields = {k: data[k] for k in ("arch", "hparams", "state_dict", "preprocessing", "thresholds", "provenance",
                                                    "candidate_classifier", "inference")
                  if k in data}
        return Checkpoint(patch_size=tuple(int(s) for s in data.get("patch_size", defaults.PATCH_SIZE)), **fields)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in data.items()}
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is neither a RibFracSeg checkpoint (no '{FORMAT_KEY}' field) nor a "
                              f"state_dict of tensors; top-level keys: {sorted(map(str, data))[:8]}.")
    hparams = _fracnet_hparams(state)
    if hparams is None:
        raise CheckpointError(f"{path} is a bare state_dict ({len(state)} tensors) whose keys are not FracNet's "
                              "104 U-Net keys, so its architecture is unknown. Save it with save_checkpoint "
                              "(arch name + hyper-parameters).")
    return Checkpoint(arch=FRACNET_ARCH, hparams=hparams, state_dict=state,
                      provenance={"source": "bare FracNet state_dict", "file": path.name})


TASK_NAMES = {"fractures": "a fracture checkpoint (3-D patches; the shipped ribfrac_default.pt or one from "
                            "`ribfracseg train`)",
              "l3": "an L3 locator checkpoint (2-D MIP input; the shipped l3_default.pt or one from "
                    "`ribfracseg train-l3`)"}


def checkpoint_task(ckpt: Checkpoint) -> str:
    """"l3" for the 2-D L3 locator, "fractures" for 3-D fracture networks (the patch size says which)."""
    return "l3" if len(ckpt.patch_size) == 2 else "fractures"


def require_task(ckpt: Checkpoint, task: str, path: str | os.PathLike, command: str,
                 option: str = "--checkpoint") -> Checkpoint:
    """Refuse a checkpoint made for the other task, naming the option, what it holds and what is needed."""
    found = checkpoint_task(ckpt)
    if found != task:
        raise CheckpointError(f"{option} {Path(path).name} is {TASK_NAMES[found].split(' (')[0]} ({ckpt.arch}); "
                              f"`{command}` needs {TASK_NAMES[task]}.")
    return ckpt


def _shape_problems(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> list[str]:
    problems = [f"missing {k} {list(v.shape)}" for k, v in expected.items() if k not in given]
    problems += [f"unexpected {k}" for k in given if k not in expected]
    problems += [f"{k} has shape {list(given[k].shape)}, expected {list(v.shape)}"
                 for k, v in expected.items() if k in given and given[k].shape != v.shape]
    return problems


def build_model(ckpt: Checkpoint, device: str | torch.device = "cpu") -> nn.Module:
    """The checkpoint's network with its weights, in eval mode; mismatches are listed by key."""
    try:
        model = build_network(ckpt.arch, **ckpt.hparams)
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint architecture cannot be built: {err.args[0]}") from None
    problems = _shape_problems(model.state_dict(), ckpt.state_dict)
    if problems:
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        raise CheckpointError(f"checkpoint weights do not fit {ckpt.arch}({ckpt.hparams}): "
                              + "; ".join(problems[:6]) + more)
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model.to(device).eval()


def cached_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """The checkpoint at `path`, read once per process per file version however many CTs it serves
    (a rewritten file is read again)."""
    return _cache_entry(path)["checkpoint"]


def cached_model(path: str | os.PathLike) -> tuple[Checkpoint, nn.Module]:
    """`cached_checkpoint` and its network (eval mode, CPU), built once with it: callers share the
    model and must not train or move it."""
    entry = _cache_entry(path)
    if "model" not in entry:
        entry["model"] = build_model(entry["checkpoint"])
    return entry["checkpoint"], entry["model"]


def _cache_entry(path: str | os.PathLike) -> dict:
    path = Path(path).resolve()
    return _cached(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int) -> dict:
    return {"checkpoint": load_checkpoint(path)}


def stored_precision(checkpoint: Checkpoint, device_type: str) -> Optional[str]:
    """The calibrated precision for this device type (`precision_calibration.calibrate_precision` stores it); fp32
    on a device never calibrated when reduced precision changed this checkpoint's fractures on another;
    None when it was never calibrated. Here, not in precision.py, so inference needs no import of it."""
    verdicts = checkpoint.inference.get("precision", {})
    value = verdicts.get(device_type)
    if value in defaults.PRECISIONS and value != "auto":
        return value
    return "fp32" if "fp32" in verdicts.values() else None

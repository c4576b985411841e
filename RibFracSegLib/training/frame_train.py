"""Training the rib-frame detector: windows along straightened ribs -> augmentation -> loss -> AdamW,
step by step, on whatever device torch has (CUDA when present; written for this 2-core CPU).

A run saves, every `save_minutes` and when it ends, a checkpoint `segment` can read (`last.pt`,
`preprocessing["space"] == "rib_frame"`), the whole training state beside it (`train_state.pt`:
weights, optimiser, schedule, the sampler's and augmentation's random states, step, which cases had
joined at which step) and a model card draft (`model_card.md`). `resume` goes on from the state
exactly: N steps, then N more after a resume, give the same losses as 2N steps in one go.

Cases not yet in the cache are built while training goes on: at the start until one case has
fractures, then after each save for up to `save_minutes` (a long run spends its first hour half
building, half training). The step at which each case joined is part of the state.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .. import defaults
from ..checkpoint import Checkpoint, save_checkpoint
from ..io import write_text
from ..networks import build_network
from .frame_dataset import FrameCase, FrameSource, load_case, read_case
from .frame_sampler import KINDS, FrameAugmentConfig, FrameSamplerConfig, augment_intensity, make_batch, sample_windows
from .losses import LossConfig
from .resume_state import load_train_state, save_train_state
from .trainer import train_step


@dataclass
class FrameTrainConfig:
    """How `ribfracseg train-frame` trains a detector in the rib frame (the sliding-window network
    has `trainer.TrainConfig`)."""

    arch: str = "fracnet_unet"
    hparams: dict = field(default_factory=lambda: {"first_out_channels": 8})
    steps: int = 20000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200  # linear warm-up, then a constant rate (a resumed run may add steps)
    seed: int = 0
    device: str = "auto"
    init: Optional[str] = None  # a frame checkpoint whose weights start the run (fine-tuning); None: random
    freeze_norm: bool = False  # batch norm uses its running statistics while training, as inference does: a
    #   batch of 4 with a fixed share of fractures let the network read "a fracture is in this batch" from the
    #   batch's statistics (step 6100 of runs/frame1 fired on 95% of intact windows in eval mode; issue 24)
    sampler: FrameSamplerConfig = field(default_factory=FrameSamplerConfig)
    augment: FrameAugmentConfig = field(default_factory=FrameAugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "FrameTrainConfig":
        data = dict(data)
        for key, kind in {"sampler": FrameSamplerConfig, "augment": FrameAugmentConfig, "loss": LossConfig}.items():
            if key in data:
                data[key] = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in data[key].items()})
        return cls(**data)


def frame_preprocessing() -> dict:
    """What a frame checkpoint says about its input (the contract h-fdetect's inference reads)."""
    return {"space": "rib_frame", "hu_window": list(defaults.HU_WINDOW), "normalisation": "window_to_minus1_1",
            "target_spacing": None, "frame_voxel_mm": defaults.RIB_FRAME_VOXEL_MM,
            "frame_half_mm": defaults.RIB_FRAME_HALF_MM}


def to_checkpoint(model: torch.nn.Module, config: FrameTrainConfig, provenance: dict) -> Checkpoint:
    return Checkpoint.from_model(config.arch, model, config.hparams, patch_size=tuple(config.sampler.window),
                                 preprocessing=frame_preprocessing(),
                                 inference={"fallback": "shipped", "confidence": defaults.FRAME_CONFIDENCE},
                                 provenance=provenance)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class _Cases:
    """The cases in training, in the order they joined, and the sources still to build."""

    def __init__(self, sources: Sequence[FrameSource], cache: Path, joined: list, log: Callable[[str], None]):
        self.cache, self.log = cache, log
        by_key = {s.key: s for s in sources}
        self.cases: list[FrameCase] = []
        self.joined: list = []
        self.build_seconds = 0.0
        for key, step in joined:  # a resumed run: the same cases, joined at the same steps
            if key not in by_key:
                raise ValueError(f"the run being resumed trained on {key}, which is not among this run's sources; "
                                 "resume with the same sources (--phantoms, --real, --lidc, --seeds).")
            self._add(load_case(by_key[key], cache), step)
        done = {k for k, _ in joined}
        self.pending = [s for s in sources if s.key not in done]

    def _add(self, case: FrameCase, step: int) -> None:
        self.joined.append([case.key, int(step)])
        self.log(f"case {case.key} joined at step {step}: {len(case.frames)} ribs, {len(case.fractures)} "
                 f"fracture pieces, built in {case.seconds:.0f} s" + (f" ({'; '.join(case.notes)})" if case.notes else ""))
        if case.frames:
            self.cases.append(case)

    def join_cached(self, step: int) -> None:
        """Cases already in the cache join now (no building)."""
        for source in list(self.pending):
            case = read_case(self.cache / f"{source.key}.npz")
            if case is not None:
                self.pending.remove(source)
                self._add(case, step)

    def build(self, step: int, seconds: float, until_fractures: bool = False,
              stop: Optional[Callable[[], bool]] = None) -> None:
        """Build pending cases for up to `seconds` (or, with `until_fractures`, until a case has fractures)."""
        t0 = time.perf_counter()
        while self.pending and not (stop is not None and stop()):
            if until_fractures and any(c.fractures for c in self.cases):
                break
            if not until_fractures and time.perf_counter() - t0 >= seconds:
                break
            self._add(load_case(self.pending.pop(0), self.cache), step)
        self.build_seconds += time.perf_counter() - t0


def init_weights(config: FrameTrainConfig) -> dict:
    """The state dict of `config.init`, checked to be a rib-frame checkpoint of the same network."""
    from ..checkpoint import load_checkpoint

    ckpt = load_checkpoint(config.init)
    if ckpt.preprocessing.get("space") != "rib_frame" or ckpt.arch != config.arch or dict(ckpt.hparams) != config.hparams:
        raise ValueError(f"--init {config.init}: not a rib-frame checkpoint of {config.arch} {json.dumps(config.hparams)} "
                         f"(it is {ckpt.arch} {json.dumps(dict(ckpt.hparams))}, space "
                         f"{ckpt.preprocessing.get('space', 'ct')}); give one that train-frame wrote with these settings")
    return dict(ckpt.state_dict)


def train_mode(model: torch.nn.Module, freeze_norm: bool) -> None:
    """Training mode; with `freeze_norm` the batch-norm layers stay in eval mode (running statistics,
    not updated), so training computes what inference computes."""
    model.train()
    if freeze_norm:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def train(config: FrameTrainConfig, sources: Sequence[FrameSource], cache_dir: str | Path, out_dir: str | Path, *,
          resume: Optional[str | Path] = None, save_minutes: float = 5.0, log_every: int = 10,
          log: Callable[[str], None] = print, provenance: Optional[dict] = None,
          stop: Optional[Callable[[], bool]] = None) -> dict:
    """Train up to `config.steps` steps; returns {'step', 'losses' (this call's, per step), 'cases'}.
    `stop()` is asked after every step (e.g. a signal), and a True saves and returns."""
    out, cache = Path(out_dir), Path(cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model = build_network(config.arch, **config.hparams).to(device)
    if config.init and not resume:
        model.load_state_dict(init_weights(config))
    if device.type == "cpu":  # 3-D convolutions run about twice as fast channels-last on CPU
        model = model.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(1, config.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    rng = np.random.default_rng(config.seed)
    aug_gen = torch.Generator().manual_seed(config.seed + 1)
    state = {"step": 0, "joined": [], "train_seconds": 0.0, "build_seconds": 0.0, "history": []}
    if resume:
        state = load_train_state(Path(resume), model, opt, sched, rng, aug_gen)
        log(f"resumed from {resume} at step {state['step']}")
    if provenance and provenance.get("command"):  # each start of the run, for the model card
        state["commands"] = state.get("commands", []) + [provenance["command"]]
    cases = _Cases(sources, cache, state["joined"], log)
    cases.join_cached(state["step"])
    cases.build(state["step"], 0.0, until_fractures=True, stop=stop)
    if not cases.cases:
        raise ValueError("no training case has rib frames: every source failed to give ribs")
    prov = dict(provenance or {}) | {"train_config": config.to_dict()}
    losses: list[float] = []
    window_losses, kinds = [], dict.fromkeys(KINDS, 0)
    last_save = t_log = time.perf_counter()
    step_log = state["step"]
    while state["step"] < config.steps:
        t_step = time.perf_counter()
        train_mode(model, config.freeze_norm)
        windows = sample_windows(cases.cases, config.sampler, rng)
        images, targets = make_batch(cases.cases, windows, config.sampler)
        x = augment_intensity(torch.from_numpy(images).to(device), config.augment, aug_gen)
        y = torch.from_numpy(targets).to(device)
        losses.append(train_step(model, x, y, config.loss, opt, sched))
        state["step"] += 1
        window_losses.append(losses[-1])
        for w in windows:
            kinds[w.kind] += 1
        state["train_seconds"] += time.perf_counter() - t_step
        if state["step"] % log_every == 0 or state["step"] == config.steps:
            now = time.perf_counter()
            entry = {"step": state["step"], "loss": round(float(np.mean(window_losses)), 5),
                     "steps_per_s": round((state["step"] - step_log) / max(now - t_log, 1e-9), 3),
                     "lr": float(sched.get_last_lr()[0]), "cases": len(cases.cases), "windows": kinds}
            log(json.dumps(entry))
            state["history"].append({k: v for k, v in entry.items() if k != "windows"})
            window_losses, kinds, t_log, step_log = [], dict.fromkeys(KINDS, 0), now, state["step"]
        stopping = stop is not None and stop()
        if stopping or state["step"] >= config.steps or time.perf_counter() - last_save >= save_minutes * 60:
            state["joined"] = cases.joined
            state["build_seconds"] = state.get("build_seconds", 0.0) + cases.build_seconds
            cases.build_seconds = 0.0
            save_run(out, model, opt, sched, rng, aug_gen, state, config, cases.cases, prov, device)
            log(f"saved step {state['step']} to {out / 'last.pt'}")
            if stopping:
                break
            if cases.pending and state["step"] < config.steps:
                cases.build(state["step"], save_minutes * 60, stop=stop)
                t_log = time.perf_counter()
            last_save = time.perf_counter()
    return {"step": state["step"], "losses": losses, "cases": [c.key for c in cases.cases]}


def save_run(out: Path, model, opt, sched, rng, aug_gen, state: dict, config: FrameTrainConfig,
             cases: Sequence[FrameCase], provenance: dict, device: torch.device) -> None:
    """last.pt (the checkpoint), train_state.pt (everything a resume needs), model_card.md; each atomic."""
    hours = round(state["train_seconds"] / 3600, 3)
    ckpt = to_checkpoint(model, config, provenance | {"step": state["step"], "train_hours": hours,
                                                      "data": data_summary(cases)})
    save_checkpoint(out / "last.pt", ckpt)
    save_train_state(out / "train_state.pt", model, opt, sched, rng, aug_gen, state, config=json.dumps(config.to_dict()))
    write_text(model_card(config, state, cases, provenance, device), out / "model_card.md")


def data_summary(cases: Sequence[FrameCase]) -> dict:
    """Sources, ribs and fracture pieces per RibFrac type (-1: type unknown) of the cases trained on."""
    types: dict[str, int] = {}
    for c in cases:
        for piece in c.fractures:
            types[str(piece["code"])] = types.get(str(piece["code"]), 0) + 1
    real = sorted({c.source["name"] for c in cases if c.source["kind"] == "real"})
    return {"cases": [c.key for c in cases], "real_cts": real, "phantoms": sum(c.source["kind"] == "phantom" for c in cases),
            "ribs": sum(len(c.frames) for c in cases), "fracture_pieces_by_code": types,
            "held_out": list(defaults.FRAME_HELD_OUT)}


def model_card(config: FrameTrainConfig, state: dict, cases: Sequence[FrameCase], provenance: dict,
               device: torch.device) -> str:
    data = data_summary(cases)
    last = state["history"][-1] if state["history"] else {}
    lines = [
        "# Rib-frame fracture detector (draft model card, written by `ribfracseg train-frame`)",
        "",
        "**Draft: not evaluated yet. For research, not for clinical use.**",
        "",
        f"- Network: `{config.arch}` {json.dumps(config.hparams)}, window (arc, u, v) {list(config.sampler.window)} "
        f"voxels of {defaults.RIB_FRAME_VOXEL_MM} mm in the rib frame (`RibFracSegLib.ribs.frame`), one logit per voxel.",
        f"- Checkpoint preprocessing: `{json.dumps(frame_preprocessing())}`; inference fallback: the shipped model.",
        f"- Data: {data['phantoms']} phantoms (truth ribs and fractures) and real CTs {', '.join(data['real_cts']) or 'none'} "
        f"with simulated fractures (all four types in turn, seeds in the case keys); {data['ribs']} straightened ribs; "
        f"fracture pieces by RibFrac code: {json.dumps(data['fracture_pieces_by_code'])}.",
        f"- Held out (never trained on, never used to choose anything): {', '.join(data['held_out'])}.",
        f"- Cases: {', '.join(data['cases'])}.",
        f"- Training: {state['step']} steps of batch {config.sampler.batch}, AdamW lr {config.lr} "
        f"(warm-up {config.warmup_steps} steps), positive fraction {config.sampler.positive_fraction}, hard negatives "
        f"{dict(zip(('intact', 'frame_end', 'head_end', 'crossing'), config.sampler.negative_weights))}; "
        f"loss Dice + {config.loss.bce_weight} BCE"
        f"{f' + {config.loss.window_weight} window (top {config.loss.window_top} logits)' if config.loss.window_weight else ''}"
        f"; last logged loss {last.get('loss', 'n/a')}"
        f"{'; started from ' + Path(config.init).name if config.init else ''}"
        f"{'; batch norm frozen (running statistics)' if config.freeze_norm else ''}.",
        f"- Hours: {state['train_seconds'] / 3600:.2f} training, {state.get('build_seconds', 0.0) / 3600:.2f} building "
        f"frames, on {device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads).",
        "- Commands (each start of the run): " + "; ".join(f"`{c}`" for c in state.get("commands", [])),
        "",
    ]
    return "\n".join(lines)

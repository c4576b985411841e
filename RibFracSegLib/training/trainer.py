"""The training loop: sampled patches -> on-device augmentation -> loss -> optimiser, epoch by epoch.

Every epoch writes a self-describing checkpoint (`last.pt`, loadable by `segment_ct`) and the
optimiser/scheduler/RNG state beside it (`train_state.pt`), so a run can be stopped at any time and
resumed exactly; the best checkpoint by validation FROC is kept as `best.pt`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .. import defaults
from ..checkpoint import Checkpoint, save_checkpoint
from ..inference import _probabilities
from ..networks import build_network
from ..preprocess import normalise
from .augment import AugmentConfig, augment_batch
from .dataset import TrainingVolume, class_hparams, class_meaning, num_classes, target_patch
from .losses import LossConfig, segmentation_loss
from .resume_state import load_train_state, save_train_state
from .sampler import SamplerConfig, crop, sample_centres
from .validation import ValidationCase, validate


@dataclass
class TrainConfig:
    """How `ribfracseg train` trains a fracture segmentation network; the L3 locator and the candidate
    classifier, other models with other schedules, have `l3.training.L3TrainConfig` and
    `candidates.training.CandidateTrainConfig`."""

    arch: str = "fracnet_unet"
    hparams: dict = field(default_factory=lambda: {"first_out_channels": 8})
    epochs: int = 20
    steps_per_epoch: int = 50
    cases_per_step: int = 2
    optimizer: str = "adam"  # adam | sgd
    lr: float = 2e-3
    weight_decay: float = 1e-5
    schedule: str = "onecycle"  # onecycle | step | constant
    seed: int = 0
    device: str = "auto"
    val_every: int = 1
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    classes: str = "fracture"  # "fracture" (one sigmoid channel) | "types" (background + RibFrac codes 1..4)

    def __post_init__(self) -> None:
        self.hparams = class_hparams(self.hparams, self.classes)  # the network's num_classes follows `classes`

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # plain types only (checkpoint-safe)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        data = dict(data)
        sub = {"sampler": SamplerConfig, "augment": AugmentConfig, "loss": LossConfig}
        for key, kind in sub.items():
            if key in data:
                data[key] = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in data[key].items()})
        return cls(**data)


def make_batch(volumes: Sequence[TrainingVolume], config: TrainConfig, rng: np.random.Generator,
               hu_window=defaults.HU_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(images, targets) (B, 1, D, H, W): `cases_per_step` random cases, sampler centres each; images
    float32, targets float32 masks or int64 class maps (`dataset.target_patch`, by `config.classes`)."""
    images, targets = [], []
    for idx in rng.choice(len(volumes), min(config.cases_per_step, len(volumes)), replace=False):
        vol = volumes[idx]
        for centre, _ in sample_centres(vol, config.sampler, rng):
            hu = crop(vol.hu, centre, config.sampler.patch_size, defaults.AIR_HU)
            lab = crop(vol.labels, centre, config.sampler.patch_size, 0)
            images.append(normalise(hu, hu_window))
            targets.append(target_patch(lab, vol, config.classes))
    return np.stack(images)[:, None], np.stack(targets)[:, None]


def _forward(model: torch.nn.Module, x: torch.Tensor):
    """Network output and VAE term (None unless the network has a VAE branch)."""
    if hasattr(model, "forward_train"):
        return model.forward_train(x)
    return model(x), None


def _scheduler(opt: torch.optim.Optimizer, config: TrainConfig):
    total = config.epochs * config.steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.15)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, total // 3), gamma=0.2)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def to_checkpoint(model: torch.nn.Module, config: TrainConfig, provenance: dict) -> Checkpoint:
    return Checkpoint.from_model(config.arch, model, config.hparams, patch_size=tuple(defaults.PATCH_SIZE),
                                 provenance=provenance)


def train(config: TrainConfig, volumes: Sequence[TrainingVolume], out_dir: str | Path, *,
          val_cases: Sequence[ValidationCase] = (), resume: Optional[str | Path] = None,
          init: Optional[dict] = None,
          log: Callable[[str], None] = print, writer=None, provenance: Optional[dict] = None,
          refresh: Optional[Callable[[], Sequence[TrainingVolume]]] = None) -> dict:
    """Train, checkpointing every epoch; returns {'best_froc', 'best_epoch', 'epoch', 'last_loss'}.

    `init` (a state_dict) starts from trained weights. `refresh`, when given, is called before each epoch and returns the current training volumes
    (so cases still being generated join the run as they appear).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if config.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if config.device == "auto" else config.device))
    model = build_network(config.arch, **config.hparams).to(device)
    if device.type == "cpu":  # 3-D convolutions run about twice as fast channels-last on CPU
        model = model.to(memory_format=torch.channels_last_3d)
    if init is not None:  # fine-tuning: the weights of an earlier checkpoint, a fresh optimiser
        model.load_state_dict(init)
    opt = make_optimizer(model, config)
    sched = _scheduler(opt, config)
    rng = np.random.default_rng(config.seed)
    aug_gen = torch.Generator().manual_seed(config.seed + 1)
    state = {"epoch": 0, "best_froc": -1.0, "best_epoch": -1, "history": []}
    if resume:
        state = load_train_state(Path(resume), model, opt, sched, rng, aug_gen)
        log(f"resumed from {resume} at epoch {state['epoch']} (best FROC {state['best_froc']:.4f})")
    base_prov = dict(provenance or {}) | {"train_config": config.to_dict()}
    if num_classes(config.classes) > 1:
        base_prov["classes"] = class_meaning(config.classes)
    last_loss = float("nan")
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if refresh is not None:
            volumes = refresh()
        model.train()
        t0, losses = time.perf_counter(), []
        for _ in range(config.steps_per_epoch):
            images, targets = make_batch(volumes, config, rng)
            x = torch.from_numpy(images).to(device)
            y = torch.from_numpy(targets).to(device)
            x, y = augment_batch(x, y, config.augment, aug_gen)
            losses.append(train_step(model, x, y, config.loss, opt, sched))
        last_loss = float(np.mean(losses))
        entry = {"epoch": epoch, "loss": last_loss, "cases": len(volumes), "lr": float(sched.get_last_lr()[0]),
                 "seconds": round(time.perf_counter() - t0, 1)}
        if writer is not None:
            writer.add_scalar("train/loss", last_loss, epoch)
            writer.add_scalar("train/lr", entry["lr"], epoch)
            _log_images(writer, model, x, y, epoch)
        ckpt = to_checkpoint(model, config, base_prov | {"epoch": epoch, "train_loss": last_loss})
        if val_cases and (epoch % config.val_every == 0 or epoch == config.epochs):
            t1 = time.perf_counter()
            report = validate(val_cases, ckpt, device=str(device))
            entry |= {"val_froc": report.froc, "val_max_recall": report.max_recall,
                      "val_fp_at_max_recall": report.fp_at_max_recall, "val_seconds": round(time.perf_counter() - t1, 1)}
            ckpt.provenance |= {"val_froc": report.froc, "val_key_recall": report.key_recall}
            if writer is not None:
                writer.add_scalar("val/froc", report.froc, epoch)
        state["epoch"] = epoch
        state["history"].append(entry)
        save_checkpoint(out / "last.pt", ckpt)
        # Best by validation FROC; on a tie (a small validation set saturates) fewer false positives win.
        score = (round(entry.get("val_froc", -1.0), 6), -entry.get("val_fp_at_max_recall", 0.0))
        if "val_froc" in entry and score > tuple(state.get("best_score", (-1.0, 0.0))):
            state["best_froc"], state["best_epoch"], state["best_score"] = entry["val_froc"], epoch, list(score)
            shutil.copyfile(out / "last.pt", out / "best.pt")
        elif not val_cases:
            shutil.copyfile(out / "last.pt", out / "best.pt")
        save_train_state(out / "train_state.pt", model, opt, sched, rng, aug_gen, state)
        log(json.dumps(entry))
    return {"best_froc": state["best_froc"], "best_epoch": state["best_epoch"], "epoch": state["epoch"],
            "last_loss": last_loss}


def train_step(model, x: torch.Tensor, y: torch.Tensor, loss_config: LossConfig, opt, sched) -> float:
    """One optimisation step on a batch (channels-last on the CPU, where its 3-D convolutions are faster);
    returns the loss. Every segmentation trainer steps through here."""
    if x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    output, vae_term = _forward(model, x)
    loss = segmentation_loss(output, y, loss_config, vae_term)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return float(loss.detach())


def _log_images(writer, model, x: torch.Tensor, y: torch.Tensor, epoch: int) -> None:
    """Middle axial slice of the first patch: input, label, prediction (TensorBoard)."""
    model.eval()
    with torch.no_grad():
        out, _ = _forward(model, x[:1])
        logits = out if isinstance(out, torch.Tensor) else out[0]
    model.train()
    mid = x.shape[2] // 2
    writer.add_image("patch/input", (x[0, :, mid] + 1) / 2, epoch)
    writer.add_image("patch/label", (y[0, :, mid] > 0).float(), epoch)
    writer.add_image("patch/prediction", _probabilities(logits[:1, :, mid])[:1], epoch)

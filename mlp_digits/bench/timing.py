"""What every way of the benchmark shares: its settings, its images and its start, and how
an epoch is timed (by a callback for the Lightning ways, until a deadline for the loops)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from mlp_digits.config import DEFAULTS, IMAGES_EVERY
from mlp_digits.data import load_mnist, resolve_val_size, split_indices
from mlp_digits.network import initial_parameters


@dataclass
class Settings:
    data_dir: Path
    val_size: int
    batch_size: int = DEFAULTS.batch_size
    epochs: int = 3  # timed epochs per way
    max_seconds: float = 2.0  # per timed epoch, for all ways but the project
    warmup_seconds: float = 1.0
    num_threads: int = 1
    accelerator: str = "cpu"
    images_every: int = IMAGES_EVERY  # the project's pictures, as train.py's
    seed: int = DEFAULTS.seed
    lr: float = DEFAULTS.lr
    sizes: tuple[int, ...] = DEFAULTS.sizes

    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if self.accelerator == "gpu" else "cpu")


@dataclass
class Epoch:
    steps: int
    samples: int
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)  # seconds spent in each part


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_set(s: Settings) -> tuple[Tensor, Tensor, Tensor]:
    """The project's training images, their labels, and their indices in the training file."""
    x, targets = load_mnist(s.data_dir, "train")
    train, _ = split_indices(len(x), resolve_val_size(s.val_size, len(x)))
    return x[train], targets[train], train


def initial_params(s: Settings) -> tuple[list[Tensor], list[Tensor]]:
    """The weights and biases that ``build_run`` starts the project from (seeded N(0, 1))."""
    return initial_parameters(s.sizes, "gaussian", s.seed)


class EpochTimer(Callback):
    """Times each epoch from its ``on_train_epoch_start`` to the next one's (or
    ``on_train_end``), so everything an epoch costs counts: the Lightning loop, validation,
    pictures, checkpoints. Phases, by hooks: inside ``training_step`` (a chunk of SGD steps,
    or one step), the rest of training, validation, and what comes after it. On a GPU the
    first two split launch time: a sync per batch would change what is measured."""

    def __init__(self, device: torch.device, max_seconds: float = math.inf) -> None:
        self.device, self.max_seconds = device, max_seconds
        self.epochs: list[dict[str, float]] = []

    def now(self) -> float:
        sync(self.device)
        return time.perf_counter()

    def mark(self, name: str) -> None:
        self.epochs[-1][name] = self.now()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epochs:
            self.mark("end")
        self.epochs.append({"start": self.now(), "in_steps": 0.0, "steps": 0, "samples": 0})
        if hasattr(pl_module, "deadline"):  # a way that stops its epoch early (idiomatic)
            pl_module.deadline = self.epochs[-1]["start"] + self.max_seconds

    def on_train_batch_start(self, *args: Any) -> None:
        self.batch_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, out: Any, batch: Any, i: int
    ) -> None:
        epoch = self.epochs[-1]
        epoch["in_steps"] += time.perf_counter() - self.batch_start
        epoch["steps"], epoch["samples"] = epoch["steps"] + 1, epoch["samples"] + len(batch[1])

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.mark("validation_start")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.mark("validation_end")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.mark("end")

    def timed(self) -> list[Epoch]:
        """Each epoch but the first, a warm-up; its steps and samples as Lightning batches."""
        result = []
        for t in self.epochs[1:]:
            train_end = t.get("validation_start", t["end"])
            phases = {"SGD steps": t["in_steps"], "loop": train_end - t["start"] - t["in_steps"]}
            if "validation_start" in t:
                phases["validation"] = t["validation_end"] - t["validation_start"]
                phases["pictures + checkpoints"] = t["end"] - t["validation_end"]
            result.append(Epoch(int(t["steps"]), int(t["samples"]), t["end"] - t["start"], phases))
        return result


# --- the plain loops: an epoch until a deadline ---------------------------------------------


class Loop(Protocol):
    def epoch(self, deadline: float = math.inf) -> tuple[int, int, dict[str, float]]:
        """Train one epoch, or until ``time.perf_counter()`` passes ``deadline``: returns
        (SGD steps, samples, seconds spent in each phase that is cheap to tell apart)."""
        ...


def warm_up(loop: Loop, seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        loop.epoch(until)


def time_epochs(s: Settings, loop: Loop) -> list[Epoch]:
    warm_up(loop, s.warmup_seconds)
    timed = []
    for _ in range(s.epochs):
        sync(s.device)
        start = time.perf_counter()
        steps, samples, phases = loop.epoch(start + s.max_seconds)
        sync(s.device)
        seconds = time.perf_counter() - start
        if phases:  # the rest of the epoch: the SGD steps themselves
            phases["SGD steps"] = seconds - sum(phases.values())
        timed.append(Epoch(steps, samples, seconds, phases))
    return timed

"""The project's way, timed and profiled: ``scripts/train.py``'s own path (``build_run``,
then ``Trainer.fit``), whole epochs with validation, checkpoints and pictures."""

from __future__ import annotations

import contextlib
import cProfile
import io
import pstats
import tempfile
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from mlp_digits import cli
from mlp_digits.bench.timing import Epoch, EpochTimer, Settings, sync
from mlp_digits.lightning.training import build_run


def project_args(s: Settings, backprop: str, logdir: str, epochs: int) -> Any:
    """``scripts/train.py``'s flags for this benchmark, parsed by its own parser."""
    flags = {"data-dir": s.data_dir, "val-size": s.val_size, "batch-size": s.batch_size}
    flags |= {"max-epochs": epochs, "accelerator": s.accelerator, "devices": 1}
    flags |= {"backprop": backprop, "logdir": logdir, "num-threads": s.num_threads}
    flags |= {"images-every": s.images_every, "seed": s.seed, "lr": s.lr}
    argv = [arg for k, v in flags.items() for arg in (f"--{k}", str(v))]
    return cli.parse_train_args([*argv, "--sizes", *map(str, s.sizes), "--no-download"])


def fit_project(s: Settings, backprop: str, epochs: int, callback: Callback) -> None:
    """Train as ``scripts/train.py`` does, its printed lines swallowed."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    with contextlib.redirect_stdout(io.StringIO()), tempfile.TemporaryDirectory() as logdir:
        run = build_run(project_args(s, backprop, logdir, epochs), [callback])
        run.trainer.fit(run.model, datamodule=run.datamodule)
    torch.use_deterministic_algorithms(deterministic)  # its Trainer sets it for everyone


def project(s: Settings, backprop: str, n_train: int) -> list[Epoch]:
    """Whole epochs of all ``n_train`` images (one process), after one untimed epoch.

    Steps and samples are counted from the epoch, not from Lightning's batches (a batch of
    the project is a chunk of K mini-batches)."""
    timer = EpochTimer(s.device)
    fit_project(s, backprop, s.epochs + 1, timer)
    steps = -(-n_train // s.batch_size)
    return [Epoch(steps, n_train, e.seconds, e.phases) for e in timer.timed()]


# --- where the project's time goes ------------------------------------------------------------


class Profile(Callback):
    """Profiles the second epoch (the first warms up) to the end of training: its steps,
    validation, pictures and checkpoints. ``kind``: ``"python"`` (cProfile: where Python spends
    its time, Lightning's loop included) or ``"torch"`` (torch.profiler: operator by operator)."""

    def __init__(self, kind: str, device: torch.device) -> None:
        self.kind, self.device = kind, device
        self.profiler: Any = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch != 1:
            return
        if self.kind == "python":
            self.profiler = cProfile.Profile()
            self.profiler.enable()
        else:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.start()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sync(self.device)
        if self.kind == "python":
            self.profiler.disable()
        else:
            self.profiler.stop()

    def top(self, n: int) -> str:
        if self.kind == "torch":
            key = "self_cuda_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
            return self.profiler.key_averages().table(sort_by=key, row_limit=n)
        out = io.StringIO()
        for key in ("tottime", "cumulative"):
            pstats.Stats(self.profiler, stream=out).sort_stats(key).print_stats(n)
        return out.getvalue()


def profile_project(s: Settings, backprop: str, kind: str, top: int = 25) -> str:
    """The ``top`` entries of a profile of one epoch of the project's path (after a warm-up
    epoch), as text."""
    profile = Profile(kind, s.device)
    fit_project(s, backprop, 2, profile)
    return profile.top(top)

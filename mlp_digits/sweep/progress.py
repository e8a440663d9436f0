"""What a sweep prints while it trains: a line per epoch of every stack, a bar at a terminal."""

from __future__ import annotations

import sys
import time

import lightning as L
from lightning.pytorch.callbacks import Callback

from mlp_digits.sweep.stack import StackedMLP


def say(line: str) -> None:
    print(line, flush=True)


class SweepProgress(Callback):
    """One line per epoch of every stack; at a terminal also a bar over the whole sweep
    (SGD updates of all networks, with its ETA)."""

    def __init__(self, total_updates: int, show_bar: bool) -> None:
        self.bar = None
        if show_bar and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_updates, unit=" updates", unit_scale=True, dynamic_ncols=True
            )
        self.label = ""

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            say(line)

    def on_train_batch_end(self, trainer: L.Trainer, model: StackedMLP, outputs, chunk, *_) -> None:
        if self.bar is not None and trainer.is_global_zero:
            self.bar.update(chunk[0].shape[0] * chunk[0].shape[1] * trainer.world_size)

    def on_train_epoch_start(self, trainer: L.Trainer, model: StackedMLP) -> None:
        self.started = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, model: StackedMLP) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        seconds = time.monotonic() - getattr(self, "started", time.monotonic())
        accuracy = model.history["val_correct"][-1].double() / model.n_val * 100
        live = model.diverged_at.cpu() < 0
        shown = accuracy[live] if live.any() else accuracy
        self.write(
            f"{self.label} epoch {trainer.current_epoch}: validation accuracy "
            f"{float(shown.min()):.2f}-{float(shown.max()):.2f}% (mean {float(shown.mean()):.2f}%)"
            + (f", {int((~live).sum())} diverged" if not live.all() else "")
            + f", {seconds:.1f} s"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

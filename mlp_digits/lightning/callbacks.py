"""The run's callbacks: what a learner sees while it trains, how it stops, what it saves.

- ``EpochReport`` prints one line per epoch; ``StepProgressBar`` counts SGD steps.
- ``StopOnSignal`` turns Ctrl-C or SIGTERM into a clean stop after the current chunk.
- ``SaveSettings`` puts the run's ``config.Settings`` in every checkpoint, for ``--resume``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_only

from mlp_digits.config import Settings
from mlp_digits.lightning.checkpoint import SaveCheckpoints


def say(trainer: L.Trainer, line: str) -> None:
    """Print a line without tearing the progress bar."""
    bar = trainer.progress_bar_callback
    if bar is not None and bar.is_enabled:
        bar.print(line)
    else:
        print(line, flush=True)


def count_line(label: str, metrics: dict[str, Any], stage: str, noun: str = "") -> str:
    """``Test: 9387 / 10000 correct (93.87%)`` from a stage's logged counts."""
    correct, total = int(metrics[f"{stage}/correct"]), int(metrics[f"{stage}/total"])
    noun = f" {noun}" if noun else ""
    return f"{label}: {correct} / {total}{noun} correct ({100 * correct / total:.2f}%)"


class StepProgressBar(TQDMProgressBar):
    """Lightning's progress bar, counting SGD steps rather than Lightning steps (chunks).

    It redraws at most every ``REDRAW_SECONDS``: each redraw reads the logged metrics back
    from the device, a sync that must not happen every chunk on a GPU.
    """

    REDRAW_SECONDS = 0.25

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.train_dataloader.steps_per_epoch()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self.epoch_start_step = trainer.current_epoch * self.total_train_batches
        self.shown_at = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        bar = self.train_progress_bar
        if bar is None or not self.is_enabled:
            return
        done = pl_module.sgd_steps - self.epoch_start_step
        if time.monotonic() - self.shown_at >= self.REDRAW_SECONDS or done >= bar.total:
            self.shown_at = time.monotonic()
            bar.n = done
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes the bar too


class EpochReport(Callback):
    """Prints ``Epoch 3: 9134 / 10000 validation images correct (91.34%), cost 0.0712``."""

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        line = count_line(f"Epoch {trainer.current_epoch}", metrics, "val", "validation images")
        say(trainer, f"{line}, cost {float(metrics['val/cost']):.4f}")


class Interrupted(Exception):
    """Training stopped on a signal, after saving ``last.ckpt``."""

    def __init__(self, signum: int, saved: Path | None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.saved = signum, saved


class StopOnSignal(Callback):
    """SIGTERM or Ctrl-C: finish the current chunk, save ``last.ckpt``, stop; a second one
    stops at once.

    Lightning on its own stops on SIGTERM with exit status 0, and on Ctrl-C in the middle of
    a chunk, ignoring a second Ctrl-C while it shuts down. Waiting for the chunk's end keeps
    the weights and the SGD-step count together, so a resumed run ends exactly where an
    uninterrupted one would. With several processes, all of them stop after the same chunk.
    """

    def __init__(self, checkpoints: SaveCheckpoints | None) -> None:
        self.checkpoints = checkpoints  # where to save: its last.ckpt
        self.signum: int | None = None
        self.after_validation = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            os._exit(128 + signum)  # the second signal: the user means it
        self.signum = signum

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        stop = trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False)
        if not stop:
            return
        if pl_module.sgd_steps % trainer.train_dataloader.steps_per_epoch() == 0:
            # The epoch's last step: its validation first. A run resumed from here would go
            # straight on to the next epoch, and this one would never be validated.
            self.after_validation = True
            return
        self.stop(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After SaveCheckpoints (listed before): the epoch's checkpoints are written. In the
        # last epoch there is nothing left to stop: the run ends and is tested.
        if self.after_validation and trainer.current_epoch + 1 < trainer.max_epochs:
            self.stop(trainer)

    def stop(self, trainer: L.Trainer) -> None:
        saved = self.checkpoints.last_path if self.checkpoints is not None else None
        if saved is not None:
            trainer.save_checkpoint(saved)  # every process takes part; the first one writes
        raise Interrupted(self.signum or signal.SIGTERM, saved)


class SaveSettings(Callback):
    """Every checkpoint holds the run's ``Settings`` (``"settings"``, with the epochs its
    length counts) and how many epochs it has trained and validated (``"epochs_done"``):
    ``--resume`` goes on with the same run, or says that it is finished."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        settings = self.settings.replace(max_epochs=trainer.max_epochs)
        checkpoint["settings"] = settings.to_dict()
        # An epoch is done once validated: a stop after its last step still has that to do.
        checkpoint["epochs_done"] = trainer.current_epoch + int(trainer.validating)

"""A sweep's network as a checkpoint of its own: ``scripts/train.py``'s best checkpoint of
the same run, which ``load_checkpoint``, evaluate.py, predict.py and draw.py read."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from mlp_digits.lightning.callbacks import SaveSettings
from mlp_digits.lightning.datamodule import MNISTDataModule
from mlp_digits.lightning.training import TRAINER_PRECISION
from mlp_digits.sweep.stack import StackedMLP

if TYPE_CHECKING:
    from mlp_digits.sweep.report import Result


class SaveAfterValidation(Callback):
    """Writes the checkpoint where train.py writes its best one, at the end of the epoch's
    validation: its epoch, and the epochs done, read as in train.py's."""

    def __init__(self, path: Path, epoch: int) -> None:
        self.path, self.epoch = path, epoch

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.fit_loop.epoch_progress.current.completed = self.epoch  # Trainer.current_epoch
        self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(self.path, weights_only=False)


def export(r: Result, path: Path, args: Namespace) -> None:
    """Network r at its best validation epoch as train.py's best checkpoint of the same run:
    ``StackedMLP.export`` of its stack's record, validated once more and saved by Lightning
    with the run's settings, the data module's and the SGD step (``load_checkpoint`` and
    evaluate.py read it)."""
    stack = StackedMLP(**r.record["hparams"]).to(r.record["best"][0][0].dtype)
    with torch.no_grad():
        for l, saved in enumerate(r.record["best"]):
            for best, value in zip(stack.best_parameters(l), saved):
                best.copy_(value)
    net = stack.export(r.position)
    net.sgd_steps = (r.best_epoch + 1) * r.steps_per_epoch
    net.warned_saturation = True  # the sweep's table says how its networks did
    settings = r.net.settings(args)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision=TRAINER_PRECISION[settings.precision],
        max_epochs=settings.max_epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[SaveSettings(settings), SaveAfterValidation(path, r.best_epoch)],
    )  # fmt: skip
    data = MNISTDataModule.from_settings(settings, args.data_dir, not args.no_download)
    trainer.validate(net, datamodule=data, verbose=False)

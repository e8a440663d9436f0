"""The main job: train DigitsMLP on MNIST with a Lightning Trainer, then test the best epoch.

    args (cli.train_parser) -> Settings -> build_run -> Trainer.fit -> Trainer.test (best)

What a user sees comes from here: one line per epoch (``callbacks.EpochReport``), the test
line, where the run went. Resuming is ``lightning.resume``; the HPARAMS tab ``hparams``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from argparse import Namespace
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from mlp_digits.config import Settings
from mlp_digits.data import RAW_FILES, check_idx, prepare_mnist, raw_folder
from mlp_digits.lightning.callbacks import (
    EpochReport,
    Interrupted,
    SaveSettings,
    StepProgressBar,
    StopOnSignal,
    count_line,
)
from mlp_digits.lightning.checkpoint import SaveCheckpoints
from mlp_digits.lightning.chunked import NonFiniteCost
from mlp_digits.lightning.datamodule import MNISTDataModule
from mlp_digits.lightning.hparams import write_hparams
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.lightning.pictures import TensorBoardPictures
from mlp_digits.lightning.projector import write_projector
from mlp_digits.lightning.resume import Finished, Resumed, resume, resume_command

TRAINER_PRECISION = {"32": "32-true", "64": "64-true"}  # config.PRECISIONS, as Lightning's


def quiet_lightning() -> None:
    """Keep Lightning's output to what a learner needs: no "GPU available: False", no tips,
    no "Restoring states from the checkpoint path" (its information, not its warnings)."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")
    warnings.filterwarnings("ignore", message=r".*returned `None`, this fit will run with no optim")


def check_data(data_dir: str, download: bool) -> None:
    """The four MNIST files present (downloaded if allowed) and their headers sound, or a
    one-line DataError: checked before anything is written, so a run that cannot start
    leaves no run folder behind."""
    prepare_mnist(data_dir, download)
    for name in RAW_FILES["train"] + RAW_FILES["test"]:
        check_idx(raw_folder(data_dir) / name, "labels" if "labels" in name else "images")


@dataclass
class Run:
    """Everything one training run is made of, built from the command-line flags."""

    settings: Settings
    trainer: L.Trainer
    model: DigitsMLP
    datamodule: MNISTDataModule
    logger: TensorBoardLogger | None
    checkpoints: SaveCheckpoints
    stopper: StopOnSignal
    resumed: Resumed | None = None

    @property
    def ckpt_path(self) -> str | None:
        """The checkpoint ``Trainer.fit`` resumes from, if any."""
        return str(self.resumed.checkpoint) if self.resumed else None

    @property
    def folder(self) -> Path | None:
        return Path(self.logger.log_dir) if self.logger is not None else None


def callbacks(args: Namespace, settings: Settings, checkpoints: SaveCheckpoints) -> list:
    """The run's callbacks: checkpoints, the epoch lines, signals, settings, pictures, bar."""
    found = [checkpoints, EpochReport(), StopOnSignal(checkpoints), SaveSettings(settings)]
    if args.images_every:
        found.append(TensorBoardPictures(every_n_epochs=args.images_every))
    if sys.stdout.isatty():  # a bar that redraws in place helps at a terminal, not in a log
        found.append(StepProgressBar())
    return found


def build_run(args: Namespace, extra_callbacks: Sequence[Callback] = ()) -> Run:
    """The model, the data and the Trainer exactly as ``scripts/train.py`` uses them."""
    quiet_lightning()
    torch.set_num_threads(args.num_threads)
    resumed = resume(args)  # a resumed run's own settings replace the flags'
    settings = Settings.from_dict(vars(args))
    # Stored resolved (hparams.yaml, checkpoints): evaluate.py, --resume and draw.py find
    # the data from any folder.
    args.data_dir = str(Path(args.data_dir).expanduser().resolve())
    check_data(args.data_dir, not args.no_download)
    L.seed_everything(settings.seed, verbose=False)
    logger = None
    if not args.fast_dev_run:
        logdir, name = (resumed.logdir, "") if resumed else (args.logdir, args.name or "")
        version = resumed.version if resumed else None
        logger = TensorBoardLogger(logdir, name=name, version=version, default_hp_metric=False)
    checkpoints = SaveCheckpoints(monitor="val/accuracy")
    found = callbacks(args, settings, checkpoints)
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=args.strategy,
        precision=TRAINER_PRECISION[settings.precision],
        max_epochs=settings.max_epochs,
        logger=logger or False,
        callbacks=[*found, *extra_callbacks],
        enable_checkpointing=False,  # the checkpoints are SaveCheckpoints'
        fast_dev_run=args.fast_dev_run,
        enable_model_summary=False,
        enable_progress_bar=any(isinstance(c, StepProgressBar) for c in found),
        log_every_n_steps=1,  # the curves are written by mlp_digits.chunked, at SGD steps
        num_sanity_val_steps=0,
        deterministic=True,
    )
    model = DigitsMLP.from_settings(settings)
    datamodule = MNISTDataModule.from_settings(settings, args.data_dir, not args.no_download)
    stopper = next(c for c in found if isinstance(c, StopOnSignal))
    return Run(settings, trainer, model, datamodule, logger, checkpoints, stopper, resumed)


def train(args: Namespace) -> int:
    """Train, test the best-validation checkpoint, print where everything is; the exit status."""
    try:
        run = build_run(args)
    except Finished as e:
        print(e, flush=True)
        return 0
    trainer, model = run.trainer, run.model
    if run.logger is not None and run.resumed is None:
        data = {"data_dir": args.data_dir, "download": not args.no_download}
        write_hparams(run.logger, {**run.settings.to_dict(), **data})
    try:
        trainer.fit(model, datamodule=run.datamodule, ckpt_path=run.ckpt_path, weights_only=True)
    except Interrupted as stop:
        if trainer.is_global_zero:
            where = f"saved {stop.saved}; " if stop.saved else ""
            go_on = f"to go on: {resume_command(run.folder)}" if run.folder else "nothing saved"
            print(
                f"Stopped at step {model.sgd_steps} (epoch {trainer.current_epoch}): "
                f"{where}{go_on}",
                file=sys.stderr,
                flush=True,
            )
        return 128 + stop.signum
    except NonFiniteCost as e:
        print(f"error: {e} (the last good checkpoint is kept)", file=sys.stderr, flush=True)
        return 1
    return test_best(args, run)


def test_best(args: Namespace, run: Run) -> int:
    """Test the epoch of the best validation accuracy; print the test line and the run's
    folder (rank 0)."""
    trainer, model, datamodule = run.trainer, run.model, run.datamodule
    best = run.checkpoints.best_model_path or None
    trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
    if not trainer.is_global_zero:
        return 0
    tested = (
        f"epoch {run.checkpoints.best_epoch} (the best on validation)"
        if best is not None
        else "the weights after training (nothing was saved)"
    )
    print(f"{count_line('Test', trainer.callback_metrics, 'test')}, {tested}", flush=True)
    if run.logger is None:
        return 0
    if args.images_every and "val" in datamodule.splits:
        write_projector(run.logger.experiment, model, *datamodule.splits["val"], model.sgd_steps)
    print(
        f"Run: {run.folder} (best: {Path(run.checkpoints.best_model_path).name}, last: "
        f"last.ckpt in {run.folder / 'checkpoints'})"
    )
    print(f"View it: tensorboard --logdir {run.folder.parent}")
    return 0

"""The main job: train DigitsMLP on MNIST with a Lightning Trainer, then test the best epoch.

What a user sees comes from here: one line per epoch, the test line, where the run went.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import time
import warnings
from argparse import Namespace
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.utils.tensorboard.summary import hparams as hparams_summary

from mlp_digits.data import RAW_FILES, DataError, check_idx, prepare_mnist, raw_folder
from mlp_digits.lightning.checkpoint import SaveCheckpoints, model_from_checkpoint, read_checkpoint
from mlp_digits.lightning.chunked import NonFiniteCost
from mlp_digits.lightning.datamodule import MNISTDataModule
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.lightning.pictures import TensorBoardPictures
from mlp_digits.lightning.projector import write_evaluation_projector, write_projector

PRECISIONS = {"32": "32-true", "64": "64-true"}


def quiet_lightning() -> None:
    """Keep Lightning's output to what a learner needs: no "GPU available: False", no tips,
    no "Restoring states from the checkpoint path" (its information, not its warnings)."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")
    warnings.filterwarnings("ignore", message=r".*returned `None`, this fit will run with no optim")


def say(trainer: L.Trainer, line: str) -> None:
    """Print a line without tearing the progress bar."""
    bar = trainer.progress_bar_callback
    if bar is not None and bar.is_enabled:
        bar.print(line)
    else:
        print(line, flush=True)


def count_line(label: str, metrics: dict[str, Any], stage: str, noun: str = "") -> str:
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


# The hyperparameters a learner compares runs by: ticked in the HPARAMS tab by default.
COMPARED_HPARAMS = ("lr", "sizes", "init", "seed", "batch_size")


def mark_compared(experiment: Any) -> None:
    """Mark ``COMPARED_HPARAMS`` as differing between runs in the experiment summary.

    TensorBoard lists a run's hyperparameters by name, those that differ first, and ticks
    the first five: alphabetically that was backprop, batch_size, check_gradients_every,
    data_dir and download. "Differs" puts the ones a learner compares first, and ticked.
    """
    value = experiment.value[0]
    data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in COMPARED_HPARAMS
    value.metadata.plugin_data.content = data.SerializeToString()


@rank_zero_only
def write_hparams(
    logger: TensorBoardLogger, hparams: dict[str, Any], metric_tags: list[str]
) -> None:
    """Put the run's hyperparameters in TensorBoard's HPARAMS tab, next to its final metrics.

    Written when the run starts: TensorBoard reads each metric's value from the run's
    scalars of that tag, so nothing is logged twice (and there is no placeholder
    ``hp_metric``). Lightning's ``log_hyperparams`` would log the metrics once more at step 0.
    """
    params = {
        k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in hparams.items()
    }
    summaries = hparams_summary(params, dict.fromkeys(metric_tags, 0.0))
    mark_compared(summaries[0])
    for summary in summaries:
        logger.experiment.file_writer.add_summary(summary)
    logger.experiment.flush()


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

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            os._exit(128 + signum)  # the second signal: the user means it
        self.signum = signum

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        stop = trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False)
        if not stop:
            return
        saved = self.checkpoints.last_path if self.checkpoints is not None else None
        if saved is not None:
            trainer.save_checkpoint(saved)  # every process takes part; the first one writes
        raise Interrupted(self.signum or signal.SIGTERM, saved)


class RunSettings(Callback):
    """Keeps the run's planned length and precision in its checkpoints, for ``--resume``."""

    def __init__(self, precision: str) -> None:
        self.precision = precision

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint):
        checkpoint["run_settings"] = {"max_epochs": trainer.max_epochs, "precision": self.precision}


@dataclass
class Run:
    """Everything one training run is made of, built from the command-line flags."""

    trainer: L.Trainer
    model: DigitsMLP
    datamodule: MNISTDataModule
    logger: TensorBoardLogger | None
    checkpoints: SaveCheckpoints
    stopper: StopOnSignal
    ckpt_path: str | None = None


def find_resume_checkpoint(args: Namespace) -> Path:
    """``--resume last``: the newest ``version_N/checkpoints/last.ckpt``; else the given path."""
    if args.resume != "last":
        return Path(args.resume)
    root = Path(args.logdir) / (args.name or "")
    candidates = [
        (int(p.parent.parent.name.split("_")[-1]), p)
        for p in root.glob("version_*/checkpoints/last.ckpt")
        if p.parent.parent.name.split("_")[-1].isdigit()
    ]
    if not candidates:
        raise DataError(
            f"--resume last: no version_N/checkpoints/last.ckpt under {root}; "
            "check --logdir and --name, or give the checkpoint's path"
        )
    return max(candidates)[1]


MODEL_SETTINGS = ("sizes", "lr", "init", "backprop", "check_gradients_every", "activation")
DATA_SETTINGS = ("batch_size", "val_size", "seed", "steps_per_chunk", "split")


def run_settings(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The settings a run was started with, as ``train.py``'s flag names, from a checkpoint."""
    model = checkpoint.get("hyper_parameters", {})
    data = checkpoint.get("datamodule_hyper_parameters", {})
    settings = {k: model[k] for k in MODEL_SETTINGS if k in model}
    settings |= {k: data[k] for k in DATA_SETTINGS if k in data}
    settings.setdefault("split", "seeded")  # checkpoints from before the book's split
    run = checkpoint.get("run_settings", {})
    weight = next(iter(checkpoint["state_dict"].values()), None)
    float64 = weight is not None and weight.dtype == torch.float64
    settings["precision"] = str(run.get("precision", "64" if float64 else "32"))
    if run.get("max_epochs"):
        settings["max_epochs"] = run["max_epochs"]
    if "sizes" in settings:
        settings["sizes"] = list(settings["sizes"])
    return settings


def use_runs_data(args: Namespace, checkpoint: dict[str, Any]) -> None:
    """The run's own data folder and download setting into ``args``, unless given as flags.

    The folder is stored resolved, so it is found from any working directory; the data
    belongs to the machine rather than to the run, so ``--data-dir`` given still wins.
    (``args`` without ``given``, as in a program's own call, keeps its values.)
    """
    data = checkpoint.get("datamodule_hyper_parameters", {})
    given = getattr(args, "given", {"data_dir", "no_download"})
    if "data_dir" not in given and data.get("data_dir"):
        args.data_dir = str(data["data_dir"])
    if "no_download" not in given and data.get("download") is False:
        args.no_download = True


def check_data(data_dir: str, download: bool) -> None:
    """The four MNIST files present (downloaded if allowed) and their headers sound, or a
    one-line DataError: checked before anything is written, so a run that cannot start
    leaves no run folder behind."""
    prepare_mnist(data_dir, download)
    for name in RAW_FILES["train"] + RAW_FILES["test"]:
        check_idx(raw_folder(data_dir) / name, "labels" if "labels" in name else "images")


def resume_command(args: Namespace) -> str:
    """The command that goes on with this run, to be run as printed from the same folder:
    the run's settings and data folder come back from its checkpoint."""
    script = sys.argv[0] if Path(sys.argv[0]).name == "train.py" else "scripts/train.py"
    words = ["python", script, "--resume", "last", "--logdir", str(args.logdir)]
    words += ["--name", args.name] if args.name else []
    return shlex.join(words)


def resume_settings(args: Namespace) -> tuple[str | None, int | None]:
    """For ``--resume``: the checkpoint to resume, and the run version whose folder to log to.

    The run's own settings come back from the checkpoint into ``args``, so that a bare
    ``--resume last`` continues the same run (its precision too), not a run with today's
    defaults. A flag the user gave that the run overrides is named in one line; only
    ``--max-epochs``, when given, changes the run (it counts from the run's start).
    """
    if not args.resume:
        return None, None
    path = find_resume_checkpoint(args)
    checkpoint = read_checkpoint(path)
    given = getattr(args, "given", set())
    overridden = []
    for key, value in run_settings(checkpoint).items():
        if key == "max_epochs" and key in given:
            continue
        if key in given and getattr(args, key) != value:
            overridden.append(f"--{key.replace('_', '-')} {getattr(args, key)} (run: {value})")
        setattr(args, key, value)
    use_runs_data(args, checkpoint)
    version = None
    run_dir = path.parent.parent
    same_logdir = run_dir.parent.resolve() == (Path(args.logdir) / (args.name or "")).resolve()
    if path.parent.name == "checkpoints" and run_dir.name.startswith("version_") and same_logdir:
        version = int(run_dir.name.removeprefix("version_"))
    steps = checkpoint.get("sgd_steps", checkpoint.get("global_step", 0))
    print(f"Resuming {path} at step {steps}", flush=True)
    if overridden:
        print(f"The run's own settings replace {', '.join(overridden)}", flush=True)
    return str(path), version


def build_run(args: Namespace, extra_callbacks: Sequence[Callback] = ()) -> Run:
    """The model, the data and the Trainer exactly as ``scripts/train.py`` uses them."""
    quiet_lightning()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    ckpt_path, version = resume_settings(args)
    # Stored resolved (hparams.yaml, checkpoints): evaluate.py, --resume and draw.py find
    # the data from any folder.
    args.data_dir = str(Path(args.data_dir).expanduser().resolve())
    check_data(args.data_dir, not args.no_download)
    L.seed_everything(args.seed, verbose=False)
    datamodule = MNISTDataModule(
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        val_size=args.val_size,
        seed=args.seed,
        download=not args.no_download,
        steps_per_chunk=args.steps_per_chunk,
        split=getattr(args, "split", "last"),
    )
    model = DigitsMLP(
        sizes=args.sizes,
        lr=args.lr,
        init=args.init,
        backprop=args.backprop,
        check_gradients_every=args.check_gradients_every,
        seed=args.seed,
        activation=args.activation,
    )
    logger = None
    if not args.fast_dev_run:
        logger = TensorBoardLogger(
            args.logdir, name=args.name or "", version=version, default_hp_metric=False
        )
    checkpoints = SaveCheckpoints(monitor="val/accuracy")
    stopper = StopOnSignal(checkpoints)
    callbacks = [checkpoints, EpochReport(), stopper, RunSettings(str(args.precision))]
    callbacks += extra_callbacks
    if args.images_every:
        callbacks.append(TensorBoardPictures(every_n_epochs=args.images_every))
    # A bar that redraws in place helps at a terminal and only litters a log file.
    show_bar = sys.stdout.isatty()
    if show_bar:
        callbacks.append(StepProgressBar())
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=args.strategy,
        precision=PRECISIONS[str(args.precision)],
        max_epochs=args.max_epochs,
        logger=logger or False,
        callbacks=callbacks,
        enable_checkpointing=False,  # the checkpoints are SaveCheckpoints'
        fast_dev_run=args.fast_dev_run,
        enable_model_summary=False,
        enable_progress_bar=show_bar,
        log_every_n_steps=1,  # the curves are written by mlp_digits.chunked, at SGD steps
        num_sanity_val_steps=0,
        deterministic=True,
    )
    return Run(trainer, model, datamodule, logger, checkpoints, stopper, ckpt_path)


def train(args: Namespace) -> int:
    """Train, test the best-validation checkpoint, print where everything is; the exit status."""
    run = build_run(args)
    trainer, model, datamodule = run.trainer, run.model, run.datamodule
    if run.logger is not None and run.ckpt_path is None:
        write_hparams(
            run.logger,
            {**model.hparams, **datamodule.hparams, "precision": str(args.precision)},
            ["val/accuracy", "val/cost", "test/accuracy", "test/cost"],
        )
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=run.ckpt_path, weights_only=True)
    except Interrupted as stop:
        if trainer.is_global_zero:
            where = f"saved {stop.saved}; " if stop.saved else ""
            print(
                f"Stopped at step {model.sgd_steps} (epoch {trainer.current_epoch}): "
                f"{where}to go on: {resume_command(args)}",
                file=sys.stderr,
                flush=True,
            )
        return 128 + stop.signum
    except NonFiniteCost as e:
        print(f"error: {e} (the last good checkpoint is kept)", file=sys.stderr, flush=True)
        return 1
    ckpt_path = run.checkpoints.best_model_path or None  # the best epoch by validation accuracy
    trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    if not trainer.is_global_zero:
        return 0
    print(count_line("Test", trainer.callback_metrics, "test"), flush=True)
    if run.logger is None:
        return 0
    if args.images_every and "val" in datamodule.splits:
        write_projector(run.logger.experiment, model, *datamodule.splits["val"], model.sgd_steps)
    run_dir = Path(run.logger.log_dir)
    print(
        f"Run: {run_dir} (best: {Path(run.checkpoints.best_model_path).name}, last: last.ckpt in "
        f"{run_dir / 'checkpoints'})"
    )
    print(f"View it: tensorboard --logdir {args.logdir}")
    return 0


def evaluate(args: Namespace) -> int:
    """Test a saved model again: the count line and a per-digit table."""
    quiet_lightning()
    checkpoint = read_checkpoint(args.checkpoint)
    model = model_from_checkpoint(checkpoint, args.checkpoint)
    settings = run_settings(checkpoint)
    use_runs_data(args, checkpoint)
    datamodule = MNISTDataModule(
        data_dir=args.data_dir,
        val_size=settings.get("val_size", 10_000),
        seed=settings.get("seed", 0),
        split=settings["split"],
        download=not args.no_download,
    )
    trainer = L.Trainer(
        accelerator=args.accelerator,
        precision=PRECISIONS[settings["precision"]],
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    stage = "test" if args.split == "test" else "val"
    if stage == "test":
        trainer.test(model, datamodule=datamodule, verbose=False)
    else:
        trainer.validate(model, datamodule=datamodule, verbose=False)
    label = "Test" if stage == "test" else "Validation"
    print(count_line(label, trainer.callback_metrics, stage))
    print(per_digit_table(model.confusion_matrix))
    if args.projector:
        print(write_evaluation_projector(args.checkpoint, model, *datamodule.splits[stage], stage))
    return 0


def per_digit_table(confusion: torch.Tensor) -> str:
    """Rows of ``digit  correct / total  accuracy`` from a confusion matrix (true x predicted)."""
    lines = ["digit  correct /  total  accuracy"]
    for digit, row in enumerate(confusion.tolist()):
        correct, total = row[digit], sum(row)
        accuracy = f"{100 * correct / total:6.2f}%" if total else "     -"
        lines.append(f"{digit:>5}  {correct:>7} / {total:>6}  {accuracy:>8}")
    return "\n".join(lines)

"""The run's checkpoints: read safely in one place for every script, and written after
every validation (``SaveCheckpoints``).

A checkpoint is a pickle, and unpickling may call any function the file names. Every load
here passes ``weights_only=True`` explicitly (an environment variable can flip torch's
default): torch's restricted unpickler accepts tensors and plain containers only, so a
hostile file is refused with one line, and nothing in it runs.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from mlp_digits import book_format
from mlp_digits.data import DataError
from mlp_digits.lightning.model import DigitsMLP


def one_line(error: BaseException, limit: int = 160) -> str:
    """An exception as one short line: a message may span lines or run on for a screen."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unsafe_globals(path: Path) -> list[str]:
    """The functions and classes a checkpoint names outside torch's safe set (read, not run)."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a torch file at all: nothing to name
        return []


def zip_header(path: Path) -> bool:
    """Whether the file starts as torch.save's files do (a zip archive's first record)."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def stack_message(path: Path, hparams: dict[str, Any]) -> str:
    """What to say of a sweep's stack checkpoint (many networks at once), and what to do."""
    sweep = next((p for p in path.resolve().parents if (p / "sweep.json").is_file()), None)
    resume = shlex.quote(str(sweep)) if sweep else "SWEEP_FOLDER"
    return (
        f"checkpoint {path} is a sweep's stack of {len(hparams.get('lrs', []))} networks, not "
        f"one DigitsMLP; export network K (results.csv's first column) as one: "
        f"python scripts/sweep.py --resume {resume} --export K"
    )


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's contents, loaded safely: plain tensors and containers, never code.

    Any problem is a one-line ``DataError``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"checkpoint {path}: no such file")
    if not path.is_file():
        raise DataError(f"checkpoint {path} is not a file")
    if book_format.is_network2_file(path):  # the book's JSON: a network, no run behind it
        return book_format.checkpoint_of(book_format.read(path))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError, EOFError, ...: not safe, or not ours
        unsafe = unsafe_globals(path)
        if unsafe:
            raise DataError(
                f"checkpoint {path} refers to {', '.join(unsafe)}, outside torch's safe set of "
                "types: refused without loading it (a pickle can run code); use one written by "
                "scripts/train.py"
            ) from None
        if zip_header(path):  # torch's own format, cut short or corrupted on the way
            raise DataError(
                f"checkpoint {path} is damaged or incomplete (a torch file that does not read "
                f"to its end: {one_line(e, 80)}); copy it again, or use another checkpoint"
            ) from e
        raise DataError(f"checkpoint {path} is not a DigitsMLP checkpoint ({one_line(e)})") from e
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise DataError(f"checkpoint {path} is not a DigitsMLP checkpoint (it has no state_dict)")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> DigitsMLP:
    """The DigitsMLP of a checkpoint read by ``read_checkpoint``, on the CPU."""
    hparams = checkpoint.get("hyper_parameters", {})
    if "lrs" in hparams and "seeds" in hparams:  # StackedMLP's, see mlp_digits.sweep.stack
        raise DataError(stack_message(Path(path), hparams))
    try:
        model = DigitsMLP(**hparams)
        weight = checkpoint["state_dict"].get("layers.0.weight")
        if isinstance(weight, torch.Tensor):  # float64 weights (--precision 64, JSON) stay so
            model.to(weight.dtype)
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as e:  # a key, shape or type error: all say "not ours"
        message = f"checkpoint {path} is not a DigitsMLP checkpoint ({one_line(e)})"
        raise DataError(message) from e
    model.on_load_checkpoint(checkpoint)
    return model


def load_checkpoint(path: str | os.PathLike) -> DigitsMLP:
    """A DigitsMLP from a checkpoint file, on the CPU; any problem is a one-line DataError."""
    return model_from_checkpoint(read_checkpoint(path), path)


# --- writing: the run's checkpoints --------------------------------------------------------


class SaveCheckpoints(Callback):
    """After every validation: ``last.ckpt``, and ``best-epoch=E-val_accuracy=A.ckpt`` when the
    epoch's validation accuracy beats every earlier epoch's (the earlier best file goes).

    The project's own, rather than Lightning's ``ModelCheckpoint``: that one advances on
    optimizer steps, and here the SGD steps are ``sgd.sgd_step``'s (``lightning.chunked``).
    ``monitor=None`` writes ``last.ckpt`` only. The best so far travels in the checkpoints,
    so a resumed run keeps it.
    """

    def __init__(self, dirpath: Path | None = None, monitor: str | None = "val/accuracy") -> None:
        self.dirpath, self.monitor = dirpath, monitor
        self.best_score: float | None = None
        self.best_model_path = ""
        self.best_epoch: int | None = None

    @property
    def last_path(self) -> Path | None:
        return self.dirpath / "last.ckpt" if self.dirpath else None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:  # beside the logger's run, as Lightning's own: version_N/
            root = trainer.log_dir if trainer.logger is not None else trainer.default_root_dir
            self.dirpath = Path(trainer.strategy.broadcast(str(root))) / "checkpoints"

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or trainer.state.fn != "fit":
            return
        if self.monitor is not None:
            score = float(trainer.callback_metrics[self.monitor])
            if self.best_score is None or score > self.best_score:
                previous, self.best_score = self.best_model_path, score
                self.best_epoch = trainer.current_epoch
                name = f"best-epoch={trainer.current_epoch}-val_accuracy={score:.4f}.ckpt"
                self.best_model_path = str(self.dirpath / name)
                trainer.save_checkpoint(self.best_model_path)
                if previous and previous != self.best_model_path and trainer.is_global_zero:
                    Path(previous).unlink(missing_ok=True)
        trainer.save_checkpoint(self.last_path)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_model_path": self.best_model_path,
            "best_epoch": self.best_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = state["best_score"]
        self.best_model_path = state["best_model_path"]
        self.best_epoch = state["best_epoch"]

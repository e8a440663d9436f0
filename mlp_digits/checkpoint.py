"""Reading checkpoints safely: one place for every script that opens a .ckpt file.

A checkpoint is a pickle, and unpickling may call any function the file names. Every load
here passes ``weights_only=True`` explicitly (an environment variable can flip torch's
default): torch's restricted unpickler accepts tensors and plain containers only, so a
hostile file is refused with one line, and nothing in it runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mlp_digits.data import DataError
from mlp_digits.model import DigitsMLP


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


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's contents, loaded safely: plain tensors and containers, never code.

    Any problem is a one-line ``DataError``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"checkpoint {path}: no such file")
    if not path.is_file():
        raise DataError(f"checkpoint {path} is not a file")
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
        raise DataError(f"checkpoint {path} is not a DigitsMLP checkpoint ({one_line(e)})") from e
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise DataError(f"checkpoint {path} is not a DigitsMLP checkpoint (it has no state_dict)")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> DigitsMLP:
    """The DigitsMLP of a checkpoint read by ``read_checkpoint``, on the CPU."""
    try:
        model = DigitsMLP(**checkpoint.get("hyper_parameters", {}))
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as e:  # a key, shape or type error: all say "not ours"
        message = f"checkpoint {path} is not a DigitsMLP checkpoint ({one_line(e)})"
        raise DataError(message) from e
    model.on_load_checkpoint(checkpoint)
    return model


def load_checkpoint(path: str | os.PathLike) -> DigitsMLP:
    """A DigitsMLP from a checkpoint file, on the CPU; any problem is a one-line DataError."""
    return model_from_checkpoint(read_checkpoint(path), path)

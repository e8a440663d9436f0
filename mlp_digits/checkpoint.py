"""Reading checkpoints safely: one place for every script that opens a .ckpt file.

A checkpoint is a pickle, and unpickling may call any function the file names. Every load
here passes ``weights_only=True`` explicitly (an environment variable can flip torch's
default): torch's restricted unpickler accepts tensors and plain containers only, so a
hostile file is refused with one line, and nothing in it runs.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from mlp_digits.data import DataError
from mlp_digits.model import DigitsMLP


def one_line(error: BaseException, limit: int = 160) -> str:
    """An exception as one short line: a message may span lines or run on for a screen."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the checkpoint -----------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike) -> DigitsMLP:
    """A DigitsMLP from a Lightning checkpoint, on the CPU; any problem is a one-line DataError.

    ``weights_only=True``: a checkpoint is a pickle, and unpickling may call any function it
    names. Torch's restricted unpickler loads tensors and plain containers only and refuses
    anything else before calling it, so a hostile file is reported, never executed.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"checkpoint {path}: no such file")
    if not path.is_file():
        raise DataError(f"checkpoint {path} is not a file")
    try:
        # A file that is not a checkpoint can set off torch warnings on its way to an error;
        # kept back, so that the error is the one line the user sees.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = DigitsMLP.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle, key, shape, type or version error: all say "not ours"
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if not (isinstance(e, pickle.UnpicklingError) and unsafe):
            message = f"checkpoint {path} is not a DigitsMLP checkpoint ({one_line(e)})"
            raise DataError(message) from e
        raise DataError(
            f"checkpoint {path} refers to {unsafe.group(1)}, outside torch's safe set of types: "
            "refused without loading it (a pickle can run code); use one written by "
            "scripts/train.py"
        ) from None
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return model


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, loaded safely: plain tensors and containers, never code.

    ``weights_only=True`` is passed explicitly because an environment variable can flip
    torch's default; a file that needs anything else is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError, EOFError, ...: all "not safe/ours"
        raise DataError(
            f"{path} is not a checkpoint that can be loaded safely (weights only): refused "
            f"({type(e).__name__})"
        ) from e
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise DataError(f"{path} is not a DigitsMLP checkpoint (it has no state_dict)")
    return checkpoint

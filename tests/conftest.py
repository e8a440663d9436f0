"""Shared test helpers: small MNIST-format files written by the tests themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest

from mlp_digits.idx import separable_digits as separable_digits  # re-exported for the tests
from mlp_digits.idx import write_separable_mnist

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist-5k"


def write_mnist(root: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """A data dir in torchvision's layout (root/MNIST/raw/*-ubyte) with separable digits."""
    return write_separable_mnist(root, n_train, n_test, seed)


def quiet_trainer(**kwargs: Any) -> L.Trainer:
    """A CPU Trainer that logs, saves and prints nothing by itself."""
    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**(defaults | kwargs))


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    return write_mnist(tmp_path / "data")

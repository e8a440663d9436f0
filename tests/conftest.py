"""Shared test helpers: small MNIST-format files written by the tests themselves."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest

from mlp_digits.data import RAW_FILES

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist-5k"


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """IDX3: magic 2051, count, rows, cols (big-endian int32), then the uint8 pixels."""
    n, rows, cols = images.shape
    path.write_bytes(struct.pack(">iiii", 2051, n, rows, cols) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """IDX1: magic 2049, count (big-endian int32), then one uint8 per label."""
    path.write_bytes(struct.pack(">ii", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def separable_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 images in 10 easily separable classes: class k lights up row band k, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(n, 28, 28))
    for i, k in enumerate(labels):
        images[i, 2 * k + 4 : 2 * k + 7, 4:24] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_mnist(root: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """A data dir in torchvision's layout (root/MNIST/raw/*-ubyte) with separable digits."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = separable_digits(n, s)
        image_file, label_file = RAW_FILES[split]
        write_idx_images(raw / image_file, images)
        write_idx_labels(raw / label_file, labels)
    return root


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

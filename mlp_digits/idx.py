"""Writing MNIST-format (IDX) files: made-up digits for the tests and the benchmark.

The IDX format (LeCun's MNIST page): a big-endian int32 magic number, one int32 per
dimension, then the uint8 values row by row. ``mlp_digits.data`` reads these files back.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from mlp_digits.data import IDX_MAGIC, IMAGE_SIZE, RAW_FILES, raw_folder


def write_idx_images(path: str | os.PathLike, images: np.ndarray) -> None:
    """IDX3: magic 2051, count, rows, cols, then the uint8 pixels of the (n, rows, cols) images."""
    n, rows, cols = images.shape
    header = struct.pack(">iiii", IDX_MAGIC["images"], n, rows, cols)
    Path(path).write_bytes(header + images.astype(np.uint8).tobytes())


def write_idx_labels(path: str | os.PathLike, labels: np.ndarray) -> None:
    """IDX1: magic 2049, count, then one uint8 per label."""
    header = struct.pack(">ii", IDX_MAGIC["labels"], len(labels))
    Path(path).write_bytes(header + labels.astype(np.uint8).tobytes())


def write_mnist_files(
    root: str | os.PathLike, images: np.ndarray, labels: np.ndarray, split: str
) -> Path:
    """The ``"train"`` or ``"test"`` files of a data dir in torchvision's layout,
    ``root/MNIST/raw/*-ubyte``, as ``data.load_mnist(root, split)`` reads them. Returns root."""
    raw = raw_folder(root)
    raw.mkdir(parents=True, exist_ok=True)
    image_file, label_file = RAW_FILES[split]
    write_idx_images(raw / image_file, images)
    write_idx_labels(raw / label_file, labels)
    return Path(root)


def separable_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 images in 10 easily separable classes: class k lights up row band k, plus noise.

    Every class appears n // 10 or n // 10 + 1 times, in a seeded random order.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(n, IMAGE_SIZE, IMAGE_SIZE))
    for i, k in enumerate(labels):
        images[i, 2 * k + 4 : 2 * k + 7, 4:24] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_separable_mnist(
    root: str | os.PathLike, n_train: int = 600, n_test: int = 200, seed: int = 0
) -> Path:
    """A data dir of ``separable_digits``: n_train training and n_test test images."""
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        write_mnist_files(root, *separable_digits(n, s), split)
    return Path(root)

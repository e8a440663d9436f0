"""mlp_digits.idx: files it writes read back through data.load_mnist, value for value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mlp_digits.data import RAW_FILES, load_mnist
from mlp_digits.idx import separable_digits, write_mnist_files


def test_written_files_read_back_through_load_mnist(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    written = {
        "train": (rng.integers(0, 256, size=(7, 28, 28)), np.array([3, 0, 9, 1, 1, 7, 5])),
        "test": (rng.integers(0, 256, size=(2, 28, 28)), np.array([8, 2])),
    }
    for split, (images, labels) in written.items():
        root = write_mnist_files(tmp_path, images, labels, split)

    names = sorted(p.name for p in (root / "MNIST" / "raw").iterdir())
    assert names == sorted(RAW_FILES["train"] + RAW_FILES["test"])
    for split, (images, labels) in written.items():
        pixels, targets = load_mnist(root, split)
        assert pixels.shape == (len(images), 784) and pixels.dtype == torch.float32
        expected = torch.from_numpy(images.reshape(len(images), -1)).float() / 255
        assert torch.equal(pixels, expected)
        assert targets.tolist() == labels.tolist()


def test_idx_headers_are_big_endian_magic_count_and_shape(tmp_path: Path) -> None:
    images, labels = separable_digits(3, seed=0)
    raw = write_mnist_files(tmp_path, images, labels, "test") / "MNIST" / "raw"
    image_bytes = (raw / RAW_FILES["test"][0]).read_bytes()
    label_bytes = (raw / RAW_FILES["test"][1]).read_bytes()

    assert image_bytes[:16] == bytes.fromhex("00000803 00000003 0000001c 0000001c")
    assert len(image_bytes) == 16 + 3 * 28 * 28
    assert label_bytes[:8] == bytes.fromhex("00000801 00000003")
    assert list(label_bytes[8:]) == labels.tolist()


def test_separable_digits_light_the_band_of_their_label() -> None:
    images, labels = separable_digits(40, seed=1)

    assert np.bincount(labels, minlength=10).tolist() == [4] * 10
    for image, k in zip(images, labels, strict=True):
        assert (image[2 * k + 4 : 2 * k + 7, 4:24] == 255).all()
        assert image[:4].max() < 40  # no band above row 4: noise only

"""MNIST files -> checked tensors, and the book's split of the training file.

The four IDX files are checked before use (magic number, 28x28, size against the header,
image and label counts, labels 0-9) and a problem is one sentence naming the file
(``DataError``). Each split loads as the file's uint8 pixels (n, 784), and ``pixels`` turns
them into floats in [0, 1], k / 255 in float32, bit for bit the same on every device: the
whole of MNIST is 55 MB, so it is converted at once, never image by image. The training
file splits as the book's ``mnist.pkl.gz`` does: the first 50,000 train, the last 10,000
validate. Nothing here imports Lightning; ``mlp_digits.lightning.datamodule`` serves these
tensors to a Trainer.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import torch
from torch import Tensor
from torchvision.datasets import MNIST
from torchvision.datasets.utils import check_integrity, extract_archive

IMAGE_SIZE = 28
N_CLASSES = 10
RAW_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_MAGIC = {"images": 2051, "labels": 2049}  # 0x00000803 and 0x00000801


class DataError(RuntimeError):
    """A problem with the user's data files, stated as one sentence saying what to do."""


def raw_folder(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


def missing_files_message(data_dir: str | os.PathLike, reason: str) -> str:
    names = ", ".join(RAW_FILES["train"] + RAW_FILES["test"])
    return (
        f"MNIST is not in {raw_folder(data_dir)} and {reason}: put {names} there "
        "(or their official .gz files), or point --data-dir at a folder whose MNIST/raw has them"
    )


def check_idx(path: Path, kind: str) -> int:
    """Check an IDX file's header against its size; return the number of items.

    torchvision's parser checks with bare ``assert``s; a user with a truncated download
    deserves a sentence that names the file.
    """
    size = path.stat().st_size
    header_len = 16 if kind == "images" else 8
    if size < header_len:
        raise DataError(f"{path}: {size} bytes is too short for an IDX {kind} header")
    with open(path, "rb") as f:
        header = f.read(header_len)
    magic, n = struct.unpack(">ii", header[:8])
    if magic != IDX_MAGIC[kind]:
        raise DataError(
            f"{path}: magic number {magic} is not {IDX_MAGIC[kind]}, so this is not an IDX {kind} "
            "file; replace it with the official MNIST file"
        )
    item_size = 1
    if kind == "images":
        rows, cols = struct.unpack(">ii", header[8:16])
        if (rows, cols) != (IMAGE_SIZE, IMAGE_SIZE):
            raise DataError(f"{path}: images are {rows}x{cols}, MNIST images are 28x28")
        item_size = rows * cols
    expected = header_len + n * item_size
    if size != expected:
        what = "truncated" if size < expected else "longer than its header says"
        raise DataError(
            f"{path}: {size} bytes, but its header promises {n} {kind} ({expected} bytes): the "
            f"file is {what}; replace it with the official MNIST file"
        )
    return n


def prepare_mnist(data_dir: str | os.PathLike, download: bool = True) -> None:
    """Make sure the four raw IDX files are in ``<data_dir>/MNIST/raw``.

    Raw files already there are used as they are. An official ``.gz`` found there is checked
    against torchvision's MD5 sum and extracted (no network). Anything still missing is
    downloaded by torchvision when ``download`` is set.
    """
    raw = raw_folder(data_dir)
    for filename, md5 in MNIST.resources:
        gz = raw / filename
        if (raw / gz.stem).is_file() or not gz.is_file():
            continue
        if not check_integrity(str(gz), md5):
            raise DataError(
                f"{gz}: its MD5 sum differs from the official MNIST file's, so it is damaged or "
                "not MNIST; delete it (it will be downloaded again) or point --data-dir elsewhere"
            )
        extract_archive(str(gz), str(raw))
    missing = [
        name for name in RAW_FILES["train"] + RAW_FILES["test"] if not (raw / name).is_file()
    ]
    if not missing:
        return
    if not download:
        raise DataError(missing_files_message(data_dir, "downloading is switched off"))
    try:
        for train in (True, False):
            MNIST(str(data_dir), train=train, download=True)
    except Exception as e:  # torchvision raises RuntimeError, URLError, OSError, ... offline
        reason = f"could not be downloaded ({type(e).__name__}; no internet?)"
        raise DataError(missing_files_message(data_dir, reason)) from e


def load_mnist_uint8(data_dir: str | os.PathLike, split: str) -> tuple[Tensor, Tensor]:
    """The ``"train"`` (60,000) or ``"test"`` (10,000) images as the file's uint8 pixels,
    flattened to (n, 784), and their labels (n,) as class indices.

    The headers are checked first; torchvision then parses the files.
    """
    raw = raw_folder(data_dir)
    image_file, label_file = (raw / name for name in RAW_FILES[split])
    for path in (image_file, label_file):
        if not path.is_file():
            raise DataError(missing_files_message(data_dir, f"{path.name} is missing"))
    n_images = check_idx(image_file, "images")
    n_labels = check_idx(label_file, "labels")
    if n_images != n_labels:
        raise DataError(
            f"{image_file} has {n_images} images but {label_file} has {n_labels} labels; "
            "the two files must come from the same MNIST split"
        )
    mnist = MNIST(str(data_dir), train=split == "train", download=False)
    targets = mnist.targets.long()
    if len(targets) and int(targets.max()) >= N_CLASSES:
        raise DataError(f"{label_file}: labels must be digits 0-9, found {int(targets.max())}")
    return mnist.data.reshape(len(mnist.data), -1), targets


def load_mnist(data_dir: str | os.PathLike, split: str) -> tuple[Tensor, Tensor]:
    """The ``"train"`` or ``"test"`` images as float32 pixels in [0, 1], (n, 784), and their
    labels (n,): ``load_mnist_uint8`` converted by ``pixels``."""
    x, targets = load_mnist_uint8(data_dir, split)
    return pixels(x), targets


def pixel_values(device: torch.device | str = "cpu") -> Tensor:
    """What each byte k of a pixel stands for, k / 255 in float32: (256,), on ``device``.

    Divided on the CPU, whose float division is IEEE 754's (correctly rounded), then copied.
    """
    values = torch.arange(256, dtype=torch.float32, device="cpu").div_(255)
    return values.to(device, non_blocking=True)


def look_up(values: Tensor, x: Tensor) -> Tensor:
    """``values[x]`` for uint8 x of any shape: each byte replaced by its value, exactly."""
    return values.index_select(0, x.reshape(-1).int()).view(x.shape)


def pixels(x: Tensor, dtype: torch.dtype = torch.float32, values: Tensor | None = None) -> Tensor:
    """uint8 pixels x (any shape) as floats in [0, 1]: k / 255 in float32, then ``dtype``; bit
    for bit the same numbers on every device, for train.py and the sweep alike.

    On the CPU, x / 255 (its division is exact: IEEE's, correctly rounded). Elsewhere the
    bytes are looked up in ``values`` (``pixel_values`` on x's device; made here if not
    given): CUDA divides by a number as a multiplication by its reciprocal, which is one ulp
    off for some bytes. The CPU divides: a look-up there takes several times as long.
    """
    if x.device.type == "cpu":
        floats = x.float().div_(255)  # one conversion of the whole tensor, not image by image
    else:
        floats = look_up(pixel_values(x.device) if values is None else values, x)
    return floats.to(dtype)


def resolve_val_size(val_size: float, n: int) -> int:
    """``val_size`` as a count: an int is a count, a float below 1 a fraction of the n images."""
    count = round(val_size * n) if isinstance(val_size, float) and val_size < 1 else int(val_size)
    if count < 1 or count >= n:
        raise DataError(
            f"--val-size {val_size} leaves no images for validation or for training: the training "
            f"file has {n} images; give a count from 1 to {n - 1} or a fraction between 0 and 1"
        )
    return count


def split_indices(n: int, n_val: int) -> tuple[Tensor, Tensor]:
    """Which of the n training-file images train and which validate: ``(train, val)``.

    The book's split (``mnist.pkl.gz``): validation is the last ``n_val`` images of the file,
    training the rest, both in file order, whatever the seed.
    """
    cpu = torch.device("cpu")  # indices into the loaded tensors, which are on the CPU
    return torch.arange(n - n_val, device=cpu), torch.arange(n - n_val, n, device=cpu)

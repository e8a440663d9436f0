"""MNISTDataModule: MNIST files -> checked tensors on the training device -> batches.

The whole of MNIST is 55 MB as float32: it fits on any device at once. So each split is
converted from uint8 in one operation and moved to the training device once, and a
mini-batch is an index slice of a permutation drawn on that device. There is no per-sample
``__getitem__``, no worker process and no host-to-device copy per step; that path, the usual
one, costs more than the SGD step of this small network.

Training batches come in *chunks*: a stack of K mini-batches, shaped (K, B, 784), that
``DigitsMLP.training_step`` turns into K SGD updates (see ``mlp_digits.model``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torchvision.datasets import MNIST
from torchvision.datasets.utils import check_integrity, extract_archive

# A chunk of about this many samples amortises Lightning's per-step cost (see the module doc).
CHUNK_SAMPLES = 1000
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


def load_mnist(data_dir: str | os.PathLike, split: str) -> tuple[Tensor, Tensor]:
    """The ``"train"`` (60,000) or ``"test"`` (10,000) images as float32 pixels in [0, 1],
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
    # One conversion of the whole uint8 tensor: not ToTensor() image by image.
    pixels = mnist.data.reshape(len(mnist.data), -1).float().div_(255)
    return pixels, targets


def resolve_val_size(val_size: float, n: int) -> int:
    """``val_size`` as a count: an int is a count, a float below 1 a fraction of the n images."""
    count = round(val_size * n) if isinstance(val_size, float) and val_size < 1 else int(val_size)
    if count < 1 or count >= n:
        raise DataError(
            f"--val-size {val_size} leaves no images for validation or for training: the training "
            f"file has {n} images; give a count from 1 to {n - 1} or a fraction between 0 and 1"
        )
    return count


SPLITS = ("last", "seeded")


def split_indices(n: int, n_val: int, split: str, seed: int) -> tuple[Tensor, Tensor]:
    """Which of the n training-file images train and which validate: ``(train, val)``.

    ``"last"`` is the book's split (``mnist.pkl.gz``): validation is the last ``n_val`` images
    of the file, training the rest, both in file order, whatever the seed. ``"seeded"`` is
    the random split of this project's first checkpoints, kept so that they still evaluate
    on their own validation images.
    """
    if split == "last":
        return torch.arange(n - n_val), torch.arange(n - n_val, n)
    if split == "seeded":
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        return order[n_val:], order[:n_val]
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for the permutation of one epoch, derived from (seed, epoch).

    The permutation of any epoch can be drawn again from these two numbers alone, so
    resuming needs no stored random-number-generator state.
    """
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


class EpochPermutation:
    """The order of the training images for each epoch, drawn on the data's device.

    Lightning calls ``set_epoch`` at the start of every epoch (as for PyTorch's samplers).
    With several processes, rank r takes every ``world_size``-th index from position r: the
    ranks' shards partition the epoch's permutation.
    """

    def __init__(
        self, n: int, seed: int, device: torch.device, rank: int = 0, world_size: int = 1
    ) -> None:
        self.n, self.seed, self.device = n, seed, device
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self) -> Tensor:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.n, generator=generator, device=self.device)

    def indices(self) -> Tensor:
        """This rank's shard of this epoch's permutation.

        With several processes the permutation is first cut to a multiple of their number
        (at most ``world_size - 1`` images sit out an epoch, different ones each epoch), so
        that every rank takes as many mini-batches, of the same sizes: each SGD step waits
        for all of them.
        """
        return self.permutation()[: len(self) * self.world_size][self.rank :: self.world_size]

    def __len__(self) -> int:
        return self.n // self.world_size


class ChunkedBatches:
    """Training mini-batches in chunks of K, sliced from tensors already on the device.

    Yields ``(x, targets)`` shaped (K, B, 784) and (K, B). When B does not divide the
    epoch, the smaller last mini-batch comes as a chunk of its own, (1, r, 784), as the
    book's ``SGD`` keeps it too.

    ``state_dict``/``load_state_dict`` make it resumable mid-epoch: the state is the epoch and
    how many of its mini-batches were trained (``steps_done``, asked of the trainer), which
    with the seed is all it takes to draw the same permutation and go on where it stopped.
    """

    def __init__(
        self,
        x: Tensor,
        targets: Tensor,
        sampler: EpochPermutation,
        batch_size: int,
        steps: int,
        steps_done: Callable[[], int] = lambda: 0,
    ) -> None:
        self.x, self.targets, self.sampler = x, targets, sampler
        self.batch_size, self.steps_per_chunk = batch_size, steps
        self.steps_done = steps_done
        self.resume_at: dict[str, int] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "steps_done": self.steps_done()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.resume_at = state

    def steps_per_epoch(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __len__(self) -> int:
        n_full, rest = divmod(len(self.sampler), self.batch_size)
        return -(-n_full // self.steps_per_chunk) + (rest > 0)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        skip = 0
        if self.resume_at is not None and self.resume_at["epoch"] == self.sampler.epoch:
            skip = self.resume_at["steps_done"]
        self.resume_at = None
        order = self.sampler.indices()
        n_full = len(order) // self.batch_size
        batches = order[: n_full * self.batch_size].view(n_full, self.batch_size)
        for start in range(skip, n_full, self.steps_per_chunk):
            idx = batches[start : start + self.steps_per_chunk]
            yield self.x[idx], self.targets[idx]
        if len(order) > n_full * self.batch_size and skip <= n_full:
            idx = order[n_full * self.batch_size :].unsqueeze(0)
            yield self.x[idx], self.targets[idx]


class SlicedBatches:
    """Evaluation batches: consecutive slices, every image counted once, nothing dropped.

    With several processes, rank r evaluates every ``world_size``-th image from position r;
    the metrics add the ranks' counts up.
    """

    def __init__(
        self, x: Tensor, targets: Tensor, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.x, self.targets = x[rank::world_size], targets[rank::world_size]
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self.x), self.batch_size):
            stop = start + self.batch_size
            yield self.x[start:stop], self.targets[start:stop]


class MNISTDataModule(L.LightningDataModule):
    """MNIST as tensors on the training device.

    Args:
        data_dir: folder holding (or to receive) ``MNIST/raw``.
        batch_size: mini-batch size m of SGD.
        val_size: images held out of the 60,000 training images for validation: a count, or a
            fraction below 1. The book holds out 10,000.
        seed: seeds each epoch's order of the training images.
        split: ``"last"``: validate on the last ``val_size`` images of the training file,
            as the book does; ``"seeded"``: the old random split drawn from the seed.
        download: let torchvision download missing files.
        steps_per_chunk: mini-batches per Lightning step (K); ``None`` picks about
            ``CHUNK_SAMPLES`` samples per chunk.
        eval_batch_size: images per validation or test batch (any size gives the same result).
    """

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 10,
        val_size: float = 10_000,
        seed: int = 0,
        download: bool = True,
        steps_per_chunk: int | None = None,
        eval_batch_size: int = 10_000,
        split: str = "last",
    ) -> None:
        super().__init__()
        # In the checkpoint too, so that evaluate.py can rebuild the same validation split.
        self.save_hyperparameters()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.data_dir, self.batch_size, self.val_size = data_dir, batch_size, val_size
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.seed, self.download, self.eval_batch_size = seed, download, eval_batch_size
        self.split = split
        self.steps_per_chunk = steps_per_chunk or max(1, round(CHUNK_SAMPLES / batch_size))
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}

    def prepare_data(self) -> None:
        prepare_mnist(self.data_dir, self.download)

    def device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        device = self.device()
        if stage in ("fit", "validate", None) and "train" not in self.splits:
            x, targets = load_mnist(self.data_dir, "train")
            n_val = resolve_val_size(self.val_size, len(x))
            train, val = split_indices(len(x), n_val, self.split, self.seed)
            self.splits["train"] = (x[train].to(device), targets[train].to(device))
            self.splits["val"] = (x[val].to(device), targets[val].to(device))
        if stage in ("test", "predict", None) and "test" not in self.splits:
            x, targets = load_mnist(self.data_dir, "test")
            self.splits["test"] = (x.to(device), targets.to(device))

    def ranks(self) -> tuple[int, int]:
        """(this process's rank, number of processes)."""
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def train_dataloader(self) -> ChunkedBatches:
        x, targets = self.splits["train"]
        rank, world_size = self.ranks()
        sampler = EpochPermutation(len(x), self.seed, x.device, rank, world_size)
        batches = ChunkedBatches(x, targets, sampler, self.batch_size, self.steps_per_chunk)
        if self.trainer:
            # Every epoch has the same number of SGD steps, so the model's count of them says
            # where in the epoch we are (see mlp_digits.chunked).
            trainer = self.trainer
            batches.steps_done = lambda: (
                trainer.lightning_module.sgd_steps
                - trainer.current_epoch * batches.steps_per_epoch()
            )
        return batches

    def val_dataloader(self) -> SlicedBatches:
        return SlicedBatches(*self.splits["val"], self.eval_batch_size, *self.ranks())

    def test_dataloader(self) -> SlicedBatches:
        return SlicedBatches(*self.splits["test"], self.eval_batch_size, *self.ranks())

"""MNISTDataModule: MNIST tensors on the training device -> chunks of mini-batches.

The whole of MNIST is 55 MB as float32: it fits on any device at once. So each split is
moved to the training device once, and a mini-batch is an index slice of a permutation drawn
on that device. There is no per-sample ``__getitem__``, no worker process and no
host-to-device copy per step; that path, the usual one, costs more than the SGD step of this
small network.

Training batches come in *chunks*: a stack of K mini-batches, shaped (K, B, 784), that
``ChunkedSGD.training_step`` turns into K SGD updates (see ``mlp_digits.lightning.chunked``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import lightning as L
import torch
from torch import Tensor

from mlp_digits.config import DATA_DIR, DEFAULTS, Settings
from mlp_digits.data import load_mnist, prepare_mnist, resolve_val_size, split_indices
from mlp_digits.sgd import EpochPermutation

# A chunk of about this many samples amortises Lightning's per-step cost (see the module doc).
CHUNK_SAMPLES = 1000


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
            yield self.gather(idx)
        if len(order) > n_full * self.batch_size and skip <= n_full:
            yield self.gather(order[n_full * self.batch_size :].unsqueeze(0))

    def gather(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """The images and labels of indices ``idx`` (any shape): ``index_select`` of the flat
        indices, an order of magnitude faster than advanced indexing with ``idx`` itself."""
        flat = idx.flatten()
        x = self.x.index_select(0, flat).view(*idx.shape, self.x.shape[-1])
        return x, self.targets.index_select(0, flat).view(idx.shape)


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
        download: let torchvision download missing files.
        steps_per_chunk: mini-batches per Lightning step (K); ``None`` picks about
            ``CHUNK_SAMPLES`` samples per chunk.
        eval_batch_size: images per validation or test batch (any size gives the same result).
    """

    def __init__(
        self,
        data_dir: str = DATA_DIR,
        batch_size: int = DEFAULTS.batch_size,
        val_size: float = DEFAULTS.val_size,
        seed: int = DEFAULTS.seed,
        download: bool = True,
        steps_per_chunk: int | None = DEFAULTS.steps_per_chunk,
        eval_batch_size: int = 10_000,
    ) -> None:
        super().__init__()
        # In the checkpoint too, so that evaluate.py can rebuild the same validation split.
        self.save_hyperparameters()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.data_dir, self.batch_size, self.val_size = data_dir, batch_size, val_size
        self.seed, self.download, self.eval_batch_size = seed, download, eval_batch_size
        self.steps_per_chunk = steps_per_chunk or max(1, round(CHUNK_SAMPLES / batch_size))
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, data_dir: str = DATA_DIR, download: bool = True
    ) -> MNISTDataModule:
        """The data of a run's settings, from ``data_dir``."""
        return cls(data_dir=data_dir, download=download, **settings.arguments(cls))

    def prepare_data(self) -> None:
        prepare_mnist(self.data_dir, self.download)

    def device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        device = self.device()
        if stage in ("fit", "validate", None) and "train" not in self.splits:
            x, targets = load_mnist(self.data_dir, "train")
            n_val = resolve_val_size(self.val_size, len(x))
            train, val = split_indices(len(x), n_val)
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
            # where in the epoch we are (see mlp_digits.lightning.chunked).
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

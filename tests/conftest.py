"""Shared test helpers: small MNIST-format files written by the tests themselves."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import signal
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlp_digits.idx import separable_digits as separable_digits  # re-exported for the tests
from mlp_digits.idx import write_separable_mnist
from mlp_digits.lightning.model import DigitsMLP

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist-5k"


def require_shared_data(path: Path) -> None:
    """Skip when the shared data ``path`` is missing, with one line; under CI (the ``CI``
    environment variable set) fail instead, as a missing Chromium fails the page tests."""
    if path.exists():
        return
    message = f"{path} not present: the tests on the shared data need it"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set)", pytrace=False)
    pytest.skip(message)


def needs_shared_data(path: Path) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A test decorated so: ``require_shared_data(path)`` before it runs (skip, or fail under
    CI), rather than ``skipif``, which cannot fail."""

    def decorate(test: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(test)  # the same signature: pytest still passes its fixtures
        def checked(*args: Any, **kwargs: Any) -> Any:
            require_shared_data(path)
            return test(*args, **kwargs)

        return checked

    return decorate


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module, to call its parser and main in this process."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checked_args(script: ModuleType, *argv: str) -> argparse.Namespace:
    """A script's flags parsed and checked, as its ``__main__`` does (a mistake: SystemExit)."""
    parser = script.parser()
    args = parser.parse_args(argv)
    script.check_args(parser, args)
    return args


def write_mnist(root: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """A data dir in torchvision's layout (root/MNIST/raw/*-ubyte) with separable digits."""
    return write_separable_mnist(root, n_train, n_test, seed)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of an epoch's n training images, written here for the replays rather than
    taken from the code under test (``sgd.EpochPermutation``): ``torch.randperm(n)`` by a CPU
    generator seeded with the epoch's own seed, the 63 high bits of the first 64-bit word of
    NumPy's ``SeedSequence([seed, epoch])``."""
    epoch_seed = int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed))


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


def train_by_sgd(
    model: DigitsMLP, x: torch.Tensor, targets: torch.Tensor, epochs: int, batch_size: int = 10
) -> DigitsMLP:
    """A few epochs of the model's own SGD steps over random mini-batches, in eval mode after."""
    y = F.one_hot(targets, model.hparams.sizes[-1]).float()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of 10: a second thread only adds contention
    try:
        for _ in range(epochs):
            for idx in torch.randperm(len(x)).split(batch_size):
                model.sgd_step(x[idx], y[idx])
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def save_checkpoint(model: DigitsMLP, path: Path) -> Path:
    """Write ``model`` as Lightning's own ``Trainer.save_checkpoint`` does, as train.py's are."""
    trainer = quiet_trainer()
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    return write_mnist(tmp_path / "data")


class StopAfter(L.Callback):
    """Asks the run to stop once ``step`` SGD steps are done, as a Ctrl-C would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_) -> None:
        if pl_module.sgd_steps >= self.step:
            stopper = next(c for c in trainer.callbacks if hasattr(c, "signum"))
            stopper.signum = signal.SIGINT

"""The usual ways, as a tutorial writes them: torchvision's MNIST and ``ToTensor`` in a
shuffling DataLoader, then a LightningModule with automatic optimization or a plain PyTorch
loop; and the book's own ``network.py`` (``mlp_digits.book``) on the project's epoch order."""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torchvision import transforms
from torchvision.datasets import MNIST

from mlp_digits import backprop as bp
from mlp_digits import book
from mlp_digits.bench.timing import Epoch, EpochTimer, Settings, initial_params
from mlp_digits.sgd import EpochPermutation


def sigmoid_mlp(weights: list[Tensor], biases: list[Tensor]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w, b in zip(weights, biases):
        layers += [nn.Linear(w.shape[1], w.shape[0]), nn.Sigmoid()]
        with torch.no_grad():
            layers[-2].weight.copy_(w), layers[-2].bias.copy_(b)
    return nn.Sequential(*layers)


def mnist_loader(s: Settings, train: Tensor) -> DataLoader:
    """The usual input pipeline: PIL images, ToTensor per image, a shuffling DataLoader."""
    to_vector = transforms.Compose([transforms.ToTensor(), transforms.Lambda(torch.flatten)])
    dataset = MNIST(str(s.data_dir), train=True, transform=to_vector)
    return DataLoader(Subset(dataset, train.tolist()), s.batch_size, shuffle=True)


class IdiomaticMLP(L.LightningModule):
    def __init__(self, s: Settings) -> None:
        super().__init__()
        self.net, self.lr = sigmoid_mlp(*initial_params(s)), s.lr
        self.deadline = math.inf

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        cost = bp.cost(self.net(images), F.one_hot(labels, 10).float())
        self.log("train_cost", cost)
        return cost

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        return -1 if time.perf_counter() > self.deadline else None  # the benchmark's limit


def idiomatic_lightning(s: Settings, train: Tensor) -> list[Epoch]:
    timer = EpochTimer(s.device, s.max_seconds)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(
            accelerator=s.accelerator,
            devices=1,
            max_epochs=s.epochs + 1,
            default_root_dir=root,  # the default logger, writing to a temporary folder
            callbacks=[timer],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(IdiomaticMLP(s), train_dataloaders=mnist_loader(s, train))
    return timer.timed()


class PyTorchLoop:
    """The usual PyTorch loop: a DataLoader of PIL images, backward, step, zero_grad."""

    def __init__(self, s: Settings, train: Tensor) -> None:
        self.device = s.device
        self.model = sigmoid_mlp(*initial_params(s)).to(s.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=s.lr)
        self.loader = mnist_loader(s, train)

    def epoch(self, deadline: float = math.inf) -> tuple[int, int, dict[str, float]]:
        steps = samples = 0
        loading, batches = 0.0, iter(self.loader)
        while True:
            t0 = time.perf_counter()
            images, labels = next(batches, (None, None))
            loading += time.perf_counter() - t0
            if images is None:
                break
            images, labels = images.to(self.device), labels.to(self.device)
            cost = bp.cost(self.model(images), F.one_hot(labels, 10).float())
            cost.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
            steps, samples = steps + 1, samples + len(labels)
            if time.perf_counter() > deadline:
                break
        return steps, samples, {"DataLoader": loading}


class BookLoop:
    """network.py's SGD: ``update_mini_batch`` on the project's epoch order."""

    def __init__(
        self,
        x: Tensor,
        targets: Tensor,
        net: book.Network,
        lr: float,
        batch_size: int,
        seed: int = 0,
    ) -> None:
        self.xs, self.labels = x.double().numpy(), targets.numpy()
        self.net, self.lr, self.batch_size = net, lr, batch_size
        self.sampler = EpochPermutation(len(x), seed, torch.device("cpu"))

    def epoch(self, deadline: float = math.inf) -> tuple[int, int, dict[str, float]]:
        order = self.sampler.permutation().numpy()
        self.sampler.set_epoch(self.sampler.epoch + 1)
        steps = samples = 0
        for k in range(0, len(order), self.batch_size):
            mini_batch = order[k : k + self.batch_size]
            self.net.update_mini_batch(
                book.examples(self.xs[mini_batch], self.labels[mini_batch]), self.lr
            )
            steps, samples = steps + 1, samples + len(mini_batch)
            if time.perf_counter() > deadline:
                break
        return steps, samples, {}

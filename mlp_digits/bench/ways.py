"""The ways to train this network, each timed on the same images from the same start.

Samples/s and µs per SGD step, with ``scripts/train.py``'s hyperparameters (its defaults:
784-16-16-10, sigmoid, quadratic cost, η = 3.0, N(0, 1) init), of:

    project           scripts/train.py's path: build_run(args), then Trainer.fit; whole epochs,
                      validation, checkpoints and pictures included (autograd, manual backprop)
    Lightning         torchvision MNIST + ToTensor in a DataLoader, a LightningModule with
                      automatic optimization, self.log every step, torch.optim.SGD
    PyTorch           the same DataLoader; backward, step, zero_grad in a plain loop
    NumPy, book       mlp_digits.book, network.py: column vectors, one example at a time, float64
    tight loop        the fastest plain eager PyTorch, independent of the project's code: the
                      data in one tensor, a permutation + slices; autograd + optim.SGD, or
                      BP1-BP4 by hand with addmm, σ' = a(1 - a) and no per-step cost

Every way trains on the training images of the project's own split (the first
``len - val_size`` of the file: ``data.split_indices``) from the weights
``DigitsMLP`` draws from the seed, and the plain loops take the project's epoch order
(``sgd.EpochPermutation``). Each is warmed up first; all but the project stop a timed epoch
after ``max_seconds``, and samples/s comes from the steps done.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import math
import pstats
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torchvision import transforms
from torchvision.datasets import MNIST

from mlp_digits import backprop as bp
from mlp_digits import book, cli
from mlp_digits.config import DEFAULTS
from mlp_digits.data import load_mnist, resolve_val_size, split_indices
from mlp_digits.lightning.training import build_run
from mlp_digits.network import initial_parameters
from mlp_digits.sgd import EpochPermutation

WAYS = {
    "project_autograd": "project, autograd",
    "project_manual": "project, manual backprop",
    "lightning": "Lightning, idiomatic (DataLoader)",
    "pytorch": "PyTorch, idiomatic (DataLoader)",
    "numpy": "NumPy, book's network.py",
    "tight_autograd": "tight loop, autograd + SGD",
    "tight_manual": "tight loop, BP1-BP4 by hand",
}
PROJECT_WAYS = ("project_autograd", "project_manual")


@dataclass
class Settings:
    data_dir: Path
    val_size: int
    batch_size: int = 10
    epochs: int = 3  # timed epochs per way
    max_seconds: float = 2.0  # per timed epoch, for all ways but the project
    warmup_seconds: float = 1.0
    num_threads: int = 1
    accelerator: str = "cpu"
    images_every: int = 1  # the project's pictures, as train.py's --images-every
    seed: int = 0
    lr: float = DEFAULTS.lr
    sizes: tuple[int, ...] = DEFAULTS.sizes

    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if self.accelerator == "gpu" else "cpu")


@dataclass
class Epoch:
    steps: int
    samples: int
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)  # seconds spent in each part


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_set(s: Settings) -> tuple[Tensor, Tensor, Tensor]:
    """The project's training images, their labels, and their indices in the training file."""
    x, targets = load_mnist(s.data_dir, "train")
    train, _ = split_indices(len(x), resolve_val_size(s.val_size, len(x)))
    return x[train], targets[train], train


def initial_params(s: Settings) -> tuple[list[Tensor], list[Tensor]]:
    """The weights and biases that ``build_run`` starts the project from (seeded N(0, 1))."""
    return initial_parameters(s.sizes, "gaussian", s.seed)


# --- the project and idiomatic Lightning: timed by a callback --------------------------------


class EpochTimer(Callback):
    """Times each epoch from its ``on_train_epoch_start`` to the next one's (or
    ``on_train_end``), so everything an epoch costs counts: the Lightning loop, validation,
    pictures, checkpoints. Phases, by hooks: inside ``training_step`` (a chunk of SGD steps,
    or one step), the rest of training, validation, and what comes after it. On a GPU the
    first two split launch time: a sync per batch would change what is measured."""

    def __init__(self, device: torch.device, max_seconds: float = math.inf) -> None:
        self.device, self.max_seconds = device, max_seconds
        self.epochs: list[dict[str, float]] = []

    def now(self) -> float:
        sync(self.device)
        return time.perf_counter()

    def mark(self, name: str) -> None:
        self.epochs[-1][name] = self.now()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epochs:
            self.mark("end")
        self.epochs.append({"start": self.now(), "in_steps": 0.0, "steps": 0, "samples": 0})
        if isinstance(pl_module, IdiomaticMLP):
            pl_module.deadline = self.epochs[-1]["start"] + self.max_seconds

    def on_train_batch_start(self, *args: Any) -> None:
        self.batch_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, out: Any, batch: Any, i: int
    ) -> None:
        epoch = self.epochs[-1]
        epoch["in_steps"] += time.perf_counter() - self.batch_start
        epoch["steps"], epoch["samples"] = epoch["steps"] + 1, epoch["samples"] + len(batch[1])

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.mark("validation_start")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.mark("validation_end")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.mark("end")

    def timed(self) -> list[Epoch]:
        """Each epoch but the first, a warm-up; its steps and samples as Lightning batches."""
        result = []
        for t in self.epochs[1:]:
            train_end = t.get("validation_start", t["end"])
            phases = {"SGD steps": t["in_steps"], "loop": train_end - t["start"] - t["in_steps"]}
            if "validation_start" in t:
                phases["validation"] = t["validation_end"] - t["validation_start"]
                phases["pictures + checkpoints"] = t["end"] - t["validation_end"]
            result.append(Epoch(int(t["steps"]), int(t["samples"]), t["end"] - t["start"], phases))
        return result


def project_args(s: Settings, backprop: str, logdir: str, epochs: int) -> Any:
    """``scripts/train.py``'s flags for this benchmark, parsed by its own parser."""
    flags = {"data-dir": s.data_dir, "val-size": s.val_size, "batch-size": s.batch_size}
    flags |= {"max-epochs": epochs, "accelerator": s.accelerator, "devices": 1}
    flags |= {"backprop": backprop, "logdir": logdir, "num-threads": s.num_threads}
    flags |= {"images-every": s.images_every, "seed": s.seed, "lr": s.lr}
    argv = [arg for k, v in flags.items() for arg in (f"--{k}", str(v))]
    return cli.parse_train_args([*argv, "--sizes", *map(str, s.sizes), "--no-download"])


def fit_project(s: Settings, backprop: str, epochs: int, callback: Callback) -> None:
    """Train as ``scripts/train.py`` does, its printed lines swallowed."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    with contextlib.redirect_stdout(io.StringIO()), tempfile.TemporaryDirectory() as logdir:
        run = build_run(project_args(s, backprop, logdir, epochs), [callback])
        run.trainer.fit(run.model, datamodule=run.datamodule)
    torch.use_deterministic_algorithms(deterministic)  # its Trainer sets it for everyone


def project(s: Settings, backprop: str, n_train: int) -> list[Epoch]:
    """Whole epochs of all ``n_train`` images (one process), after one untimed epoch.

    Steps and samples are counted from the epoch, not from Lightning's batches (a batch of
    the project is a chunk of K mini-batches)."""
    timer = EpochTimer(s.device)
    fit_project(s, backprop, s.epochs + 1, timer)
    steps = -(-n_train // s.batch_size)
    return [Epoch(steps, n_train, e.seconds, e.phases) for e in timer.timed()]


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


# --- the plain loops: an epoch until a deadline ---------------------------------------------


class Loop(Protocol):
    def epoch(self, deadline: float = math.inf) -> tuple[int, int, dict[str, float]]:
        """Train one epoch, or until ``time.perf_counter()`` passes ``deadline``: returns
        (SGD steps, samples, seconds spent in each phase that is cheap to tell apart)."""
        ...


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


class TightLoop:
    """The fastest plain eager PyTorch for this network, written for speed, not for reading,
    and sharing no code with the project but the epoch order (``EpochPermutation``).

    The data sits in one tensor on its device, permuted once an epoch and sliced into
    mini-batches (views). ``manual``: BP1–BP4 by hand with σ'(z) = a(1 − a) from the
    activations, ``addmm`` everywhere, BP3/BP4 fused into the in-place update
    (``w.addmm_(δᵀ, a, alpha=−η/m)``), and no per-step cost. Else: autograd from a scalar
    cost and ``torch.optim.SGD``, the usual way.
    """

    def __init__(
        self,
        x: Tensor,
        targets: Tensor,
        weights: list[Tensor],
        biases: list[Tensor],
        lr: float,
        batch_size: int,
        manual: bool,
        seed: int = 0,
    ) -> None:
        self.x, self.y = x, F.one_hot(targets, weights[-1].shape[0]).to(x.dtype)
        self.weights = [w.detach().clone().to(x.device, x.dtype) for w in weights]
        self.biases = [b.detach().clone().to(x.device, x.dtype) for b in biases]
        self.lr, self.batch_size, self.manual = lr, batch_size, manual
        self.sampler = EpochPermutation(len(x), seed, x.device)
        if not manual:
            params = [p.requires_grad_() for p in self.weights + self.biases]
            self.optimizer = torch.optim.SGD(params, lr=lr)

    def forward(self, x: Tensor) -> list[Tensor]:
        activations = [x]
        for w, b in zip(self.weights, self.biases):
            activations.append(torch.addmm(b, activations[-1], w.t()).sigmoid_())
        return activations

    @torch.no_grad()
    def manual_step(self, x: Tensor, y: Tensor) -> None:
        activations = self.forward(x)
        a = activations[-1]
        delta = (a - y).mul_(a).mul_(1 - a)
        scale = -self.lr / len(x)
        for l in range(len(self.weights) - 1, -1, -1):
            a_in = activations[l]
            if l:  # the next δ needs this layer's weights before they move
                next_delta = (delta @ self.weights[l]).mul_(a_in).mul_(1 - a_in)
            self.weights[l].addmm_(delta.t(), a_in, alpha=scale)
            self.biases[l].add_(delta.sum(0), alpha=scale)
            if l:
                delta = next_delta

    def step(self, x: Tensor, y: Tensor) -> None:
        if self.manual:
            self.manual_step(x, y)
            return
        self.optimizer.zero_grad()
        a = self.forward(x)[-1]
        (a - y).square().sum().div(2 * len(x)).backward()
        self.optimizer.step()

    def epoch(self, deadline: float = math.inf) -> tuple[int, int, dict[str, float]]:
        t0 = time.perf_counter()
        order = self.sampler.permutation()
        self.sampler.set_epoch(self.sampler.epoch + 1)
        x, y = self.x[order], self.y[order]
        sync(x.device)
        permuting = time.perf_counter() - t0
        steps = samples = 0
        for start in range(0, len(x), self.batch_size):
            self.step(x[start : start + self.batch_size], y[start : start + self.batch_size])
            steps, samples = steps + 1, samples + min(self.batch_size, len(x) - start)
            if time.perf_counter() > deadline:
                break
        return steps, samples, {"permutation + gather": permuting}


def make_loop(s: Settings, way: str, x: Tensor, targets: Tensor, train: Tensor) -> Loop:
    weights, biases = initial_params(s)
    if way == "pytorch":
        return PyTorchLoop(s, train)
    if way == "numpy":
        net = book.Network([w.numpy() for w in weights], [b.numpy() for b in biases])
        return BookLoop(x, targets, net, s.lr, s.batch_size, s.seed)
    manual = way == "tight_manual"
    x, targets = x.to(s.device), targets.to(s.device)
    return TightLoop(x, targets, weights, biases, s.lr, s.batch_size, manual, s.seed)


def warm_up(loop: Loop, seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        loop.epoch(until)


def time_epochs(s: Settings, loop: Loop) -> list[Epoch]:
    warm_up(loop, s.warmup_seconds)
    timed = []
    for _ in range(s.epochs):
        sync(s.device)
        start = time.perf_counter()
        steps, samples, phases = loop.epoch(start + s.max_seconds)
        sync(s.device)
        seconds = time.perf_counter() - start
        if phases:  # the rest of the epoch: the SGD steps themselves
            phases["SGD steps"] = seconds - sum(phases.values())
        timed.append(Epoch(steps, samples, seconds, phases))
    return timed


def measure(s: Settings, way: str, x: Tensor, targets: Tensor, train: Tensor) -> list[Epoch]:
    if way in PROJECT_WAYS:
        return project(s, way.removeprefix("project_"), len(x))
    if way == "lightning":
        return idiomatic_lightning(s, train)
    return time_epochs(s, make_loop(s, way, x, targets, train))


# --- where the project's time goes ------------------------------------------------------------


class Profile(Callback):
    """Profiles the second epoch (the first warms up) to the end of training: its steps,
    validation, pictures and checkpoints. ``kind``: ``"python"`` (cProfile: where Python spends
    its time, Lightning's loop included) or ``"torch"`` (torch.profiler: operator by operator)."""

    def __init__(self, kind: str, device: torch.device) -> None:
        self.kind, self.device = kind, device
        self.profiler: Any = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch != 1:
            return
        if self.kind == "python":
            self.profiler = cProfile.Profile()
            self.profiler.enable()
        else:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.start()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sync(self.device)
        if self.kind == "python":
            self.profiler.disable()
        else:
            self.profiler.stop()

    def top(self, n: int) -> str:
        if self.kind == "torch":
            key = "self_cuda_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
            return self.profiler.key_averages().table(sort_by=key, row_limit=n)
        out = io.StringIO()
        for key in ("tottime", "cumulative"):
            pstats.Stats(self.profiler, stream=out).sort_stats(key).print_stats(n)
        return out.getvalue()


def profile_project(s: Settings, backprop: str, kind: str, top: int = 25) -> str:
    """The ``top`` entries of a profile of one epoch of the project's path (after a warm-up
    epoch), as text."""
    profile = Profile(kind, s.device)
    fit_project(s, backprop, 2, profile)
    return profile.top(top)

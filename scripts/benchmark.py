"""Benchmark: the project's training path next to the usual ways of training the same network.

Samples/s and µs per SGD step, on the same data and hyperparameters (784-16-16-10, sigmoid,
quadratic cost, η = 3.0, N(0, 1) init), of:

    project           scripts/train.py's path: build_run(args), then Trainer.fit; whole epochs,
                      validation and checkpointing included (autograd and manual backprop)
    Lightning         torchvision MNIST + ToTensor in a DataLoader, a LightningModule with
                      automatic optimization, self.log every step, torch.optim.SGD
    PyTorch           the same DataLoader; backward, step, zero_grad in a plain loop
    NumPy, book       network.py's update_mini_batch/backprop: column vectors, one example at a
                      time, float64
    tight loop        the data in one tensor on the device, randperm + slices; a functional
                      forward, autograd + optim.SGD, or mlp_digits.backprop + in-place updates

Every way is warmed up first; all but the project stop a timed epoch after --max-seconds, and
samples/s comes from the steps done. Numbers are medians over --epochs timed epochs (times
--rounds: on a shared machine, several rounds in rotating order even out changes of load).

    python scripts/benchmark.py                                 # synthetic data, batch 10
    python scripts/benchmark.py --data-dir data --batch-sizes 10 100 1000 --json bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import platform
import statistics
import struct
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torchvision import transforms
from torchvision.datasets import MNIST

from mlp_digits import backprop as bp
from mlp_digits import cli
from mlp_digits.data import load_mnist
from mlp_digits.training import build_run

SIZES, LR = (784, 16, 16, 10), 3.0
WAYS = {
    "project_autograd": "project, autograd",
    "project_manual": "project, manual backprop",
    "lightning": "Lightning, idiomatic (DataLoader)",
    "pytorch": "PyTorch, idiomatic (DataLoader)",
    "numpy": "NumPy, book's network.py",
    "tight_autograd": "tight loop, autograd + SGD",
    "tight_manual": "tight loop, mlp_digits.backprop",
}
# (batch size, way, reference, factor): the way's samples/s should be >= factor x reference's.
TARGETS = [
    (10, "project_autograd", "numpy", 1.6),
    (10, "project_autograd", "lightning", 5.0),
    (10, "project_autograd", "tight_autograd", 0.8),
    (10, "project_manual", "numpy", 4.0),
    (10, "project_manual", "tight_manual", 0.7),
    (1000, "project_autograd", "tight_autograd", 0.7),
    (1000, "project_manual", "tight_manual", 0.7),
]
Params = list[tuple[Tensor, Tensor]]


@dataclass
class Config:
    data_dir: Path
    val_size: int
    x: Tensor  # the first n_train images of the training file (the project splits at random)
    targets: Tensor
    batch_size: int
    epochs: int
    max_seconds: float  # per timed epoch, for all ways but the project
    warmup_seconds: float
    num_threads: int
    accelerator: str
    images_every: int  # the project's pictures, as train.py's --images-every

    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if self.accelerator == "gpu" else "cpu")


@dataclass
class Epoch:
    steps: int
    samples: int
    seconds: float
    train_seconds: float | None = None  # the project's epoch without validation and checkpoint


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_synthetic_mnist(root: Path, n_train: int, n_test: int = 100) -> Path:
    """IDX files in torchvision's layout: noise plus a bright row band that encodes the digit."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    bands = np.zeros((10, 28, 28), np.uint8)
    for k in range(10):
        bands[k, 2 * k + 4 : 2 * k + 7, 4:24] = 255
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.maximum(rng.integers(0, 40, (n, 28, 28), np.uint8), bands[labels])
        header = struct.pack(">iiii", 2051, n, 28, 28)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        header = struct.pack(">ii", 2049, n)
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(header + labels.tobytes())
    return root


def initial_params() -> Params:
    """One N(0, 1) draw of weights and biases, the starting point of every way but the project."""
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(o, i, generator=g), torch.randn(o, generator=g))
        for i, o in zip(SIZES, SIZES[1:])
    ]


def sigmoid_mlp(params: Params) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w, b in params:
        layers += [nn.Linear(w.shape[1], w.shape[0]), nn.Sigmoid()]
        with torch.no_grad():
            layers[-2].weight.copy_(w), layers[-2].bias.copy_(b)
    return nn.Sequential(*layers)


def mnist_loader(cfg: Config) -> DataLoader:
    """The usual input pipeline: PIL images, ToTensor per image, a shuffling DataLoader."""
    to_vector = transforms.Compose([transforms.ToTensor(), transforms.Lambda(torch.flatten)])
    dataset = MNIST(str(cfg.data_dir), train=True, transform=to_vector)
    return DataLoader(Subset(dataset, range(len(cfg.x))), cfg.batch_size, shuffle=True)


# --- the ways on a Lightning Trainer --------------------------------------------------------


class EpochTimer(Callback):
    """Times whole epochs: on_train_epoch_start to the later of on_validation_end and
    on_train_epoch_end. Sets the deadline of a module that can end its epoch early."""

    def __init__(self, device: torch.device, max_seconds: float = math.inf) -> None:
        self.device, self.max_seconds = device, max_seconds
        self.by_epoch: dict[int, Epoch] = {}

    def now(self) -> float:
        sync(self.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = self.now()
        self.step0, self.samples, self.train_end = trainer.global_step, 0, None
        if hasattr(pl_module, "deadline"):
            pl_module.deadline = self.start + self.max_seconds

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.samples += args[2][1].numel()  # the batch's targets: (B,), or (K, B) for a chunk

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_end = self.now()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end_epoch(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end_epoch(trainer)

    def end_epoch(self, trainer: L.Trainer) -> None:
        """Called by both hooks in an epoch with validation: the later call stays."""
        steps, seconds = trainer.global_step - self.step0, self.now() - self.start
        train = None if self.train_end is None else self.train_end - self.start
        self.by_epoch[trainer.current_epoch] = Epoch(steps, self.samples, seconds, train)


def project(cfg: Config, backprop: str) -> list[Epoch]:
    """scripts/train.py's path, one untimed epoch first."""
    with tempfile.TemporaryDirectory() as logdir:
        flags = {"data-dir": cfg.data_dir, "val-size": cfg.val_size, "batch-size": cfg.batch_size}
        flags |= {"max-epochs": cfg.epochs + 1, "accelerator": cfg.accelerator, "devices": 1}
        flags |= {"backprop": backprop, "logdir": logdir, "num-threads": cfg.num_threads}
        flags |= {"images-every": cfg.images_every}
        argv = [s for k, v in flags.items() for s in (f"--{k}", str(v))]
        args = cli.train_parser().parse_args([*argv, "--no-download"])
        timer = EpochTimer(cfg.device)
        deterministic = torch.are_deterministic_algorithms_enabled()
        with contextlib.redirect_stdout(io.StringIO()):  # no epoch lines, no progress bar
            run = build_run(args, extra_callbacks=[timer])
            run.trainer.fit(run.model, datamodule=run.datamodule)
        torch.use_deterministic_algorithms(deterministic)  # its Trainer sets it for everyone
    return list(timer.by_epoch.values())[1:]


class IdiomaticMLP(L.LightningModule):
    def __init__(self, params: Params) -> None:
        super().__init__()
        self.net = sigmoid_mlp(params)
        self.deadline = math.inf

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        cost = bp.cost(self.net(images), F.one_hot(labels, 10).float())
        self.log("train_cost", cost)
        return cost

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=LR)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        return -1 if time.perf_counter() > self.deadline else None  # the benchmark's limit


def idiomatic_lightning(cfg: Config) -> list[Epoch]:
    timer = EpochTimer(cfg.device, cfg.max_seconds)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(
            accelerator=cfg.accelerator,
            devices=1,
            max_epochs=cfg.epochs + 1,
            default_root_dir=root,  # the default logger, writing to a temporary folder
            callbacks=[timer],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(IdiomaticMLP(initial_params()), train_dataloaders=mnist_loader(cfg))
    return list(timer.by_epoch.values())[1:]


# --- the plain loops ------------------------------------------------------------------------

EpochFn = Callable[[float], tuple[int, int]]  # deadline -> (SGD steps, samples) of one epoch


def warm_up(epoch: EpochFn, seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        epoch(until)


def time_epochs(cfg: Config, epoch: EpochFn) -> list[Epoch]:
    warm_up(epoch, cfg.warmup_seconds)
    timed = []
    for _ in range(cfg.epochs):
        sync(cfg.device)
        start = time.perf_counter()
        steps, samples = epoch(start + cfg.max_seconds)
        sync(cfg.device)
        timed.append(Epoch(steps, samples, time.perf_counter() - start))
    return timed


def idiomatic_pytorch(cfg: Config) -> EpochFn:
    model = sigmoid_mlp(initial_params()).to(cfg.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loader = mnist_loader(cfg)

    def epoch(deadline: float) -> tuple[int, int]:
        steps = samples = 0
        for images, labels in loader:
            images, labels = images.to(cfg.device), labels.to(cfg.device)
            cost = bp.cost(model(images), F.one_hot(labels, 10).float())
            cost.backward()
            optimizer.step()
            optimizer.zero_grad()
            steps, samples = steps + 1, samples + len(labels)
            if time.perf_counter() > deadline:
                break
        return steps, samples

    return epoch


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z: np.ndarray) -> np.ndarray:
    return sigmoid(z) * (1 - sigmoid(z))


class BookNetwork:
    """network.py's training core: column vectors, backprop one example at a time, float64."""

    def __init__(self, params: Params) -> None:
        self.weights = [w.double().numpy() for w, _ in params]
        self.biases = [b.double().numpy().reshape(-1, 1) for _, b in params]

    def update_mini_batch(
        self, mini_batch: list[tuple[np.ndarray, np.ndarray]], eta: float
    ) -> None:
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        for x, y in mini_batch:
            delta_nabla_b, delta_nabla_w = self.backprop(x, y)
            nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b)]
            nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_nabla_w)]
        self.weights = [w - (eta / len(mini_batch)) * nw for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b - (eta / len(mini_batch)) * nb for b, nb in zip(self.biases, nabla_b)]

    def backprop(self, x: np.ndarray, y: np.ndarray) -> tuple[list, list]:
        nabla_b: list = [None] * len(self.biases)
        nabla_w: list = [None] * len(self.weights)
        activation, activations, zs = x, [x], []
        for b, w in zip(self.biases, self.weights):
            zs.append(np.dot(w, activation) + b)
            activation = sigmoid(zs[-1])
            activations.append(activation)
        delta = (activations[-1] - y) * sigmoid_prime(zs[-1])  # BP1
        nabla_b[-1], nabla_w[-1] = delta, np.dot(delta, activations[-2].T)  # BP3, BP4
        for l in range(2, len(SIZES)):
            delta = np.dot(self.weights[-l + 1].T, delta) * sigmoid_prime(zs[-l])  # BP2
            nabla_b[-l], nabla_w[-l] = delta, np.dot(delta, activations[-l - 1].T)
        return nabla_b, nabla_w


def numpy_book(cfg: Config) -> EpochFn:
    net, rng = BookNetwork(initial_params()), np.random.default_rng(0)
    xs = cfg.x.double().numpy().reshape(-1, 784, 1)
    ys = np.eye(10)[cfg.targets.numpy()].reshape(-1, 10, 1)

    def epoch(deadline: float) -> tuple[int, int]:
        order, steps, samples = rng.permutation(len(xs)), 0, 0
        for k in range(0, len(xs), cfg.batch_size):
            mini_batch = [(xs[i], ys[i]) for i in order[k : k + cfg.batch_size]]
            with np.errstate(over="ignore"):  # exp overflows to inf: σ is still 0
                net.update_mini_batch(mini_batch, LR)
            steps, samples = steps + 1, samples + len(mini_batch)
            if time.perf_counter() > deadline:
                break
        return steps, samples

    return epoch


def tight_loop(cfg: Config, manual: bool) -> EpochFn:
    """No framework: parameters as plain tensors, the data permuted once per epoch on the device
    and sliced into mini-batches (views, no copies)."""
    x, y = cfg.x.to(cfg.device), F.one_hot(cfg.targets, 10).float().to(cfg.device)
    params = [(w.to(cfg.device), b.to(cfg.device)) for w, b in initial_params()]
    weights, biases = [w for w, _ in params], [b for _, b in params]
    if not manual:
        optimizer = torch.optim.SGD([p.requires_grad_() for p in weights + biases], lr=LR)

    def step(xb: Tensor, yb: Tensor) -> None:
        if manual:
            nabla_w, nabla_b = bp.backprop(weights, biases, xb, yb)
            for p, grad in zip(weights + biases, nabla_w + nabla_b):
                p.sub_(grad, alpha=LR)  # w ← w − η ∂C/∂w, in place
            return
        a = xb
        for w, b in zip(weights, biases):
            a = torch.sigmoid(F.linear(a, w, b))
        for p in weights + biases:
            p.grad = None
        bp.cost(a, yb).backward()
        optimizer.step()

    def epoch(deadline: float) -> tuple[int, int]:
        perm = torch.randperm(len(x), device=x.device)
        xp, yp, steps, samples = x[perm], y[perm], 0, 0
        for start in range(0, len(x), cfg.batch_size):
            step(xp[start : start + cfg.batch_size], yp[start : start + cfg.batch_size])
            steps, samples = steps + 1, samples + min(cfg.batch_size, len(x) - start)
            if time.perf_counter() > deadline:
                break
        return steps, samples

    return epoch


def measure(cfg: Config, way: str) -> list[Epoch]:
    if way.startswith("project"):
        return project(cfg, way.removeprefix("project_"))
    if way == "lightning":
        return idiomatic_lightning(cfg)
    loops = {"pytorch": idiomatic_pytorch, "numpy": numpy_book}
    loop = loops[way](cfg) if way in loops else tight_loop(cfg, manual=way == "tight_manual")
    return time_epochs(cfg, loop)


# --- the report -----------------------------------------------------------------------------


def hardware(cfg: Config) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, IndexError):
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(ln for ln in cpuinfo if ln.startswith("model name")).split(":", 1)[1].strip()
    info = {"cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    info |= {"torch": torch.__version__, "lightning": L.__version__, "numpy": np.__version__}
    if cfg.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(cfg.device)
    return info


def table(rows: dict[str, dict[str, Any]]) -> str:
    head = ["way", "samples/s", "µs/step", "× project autograd", "× project manual"]
    lines = ["{:<34} {:>10} {:>10} {:>19} {:>17}".format(*head)]
    refs = [
        rows.get(way, {}).get("samples_per_s") for way in ("project_autograd", "project_manual")
    ]
    for way, row in rows.items():
        speed = row["samples_per_s"]
        a, m = (f"{speed / ref:.2f}" if ref else "-" for ref in refs)
        lines.append(
            f"{WAYS[way]:<34} {speed:>10,.0f} {row['us_per_step']:>10,.1f} {a:>19} {m:>17}"
        )
    return "\n".join(lines)


def check_targets(results: dict[int, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    checks = []
    for batch, way, ref, factor in TARGETS:
        rows = results.get(batch, {})
        if way in rows and ref in rows:
            speeds = rows[way]["samples_per_s"], rows[ref]["samples_per_s"]
            ratio = speeds[0] / speeds[1]
            checks.append(
                dict(
                    batch_size=batch,
                    way=way,
                    reference=ref,
                    target=factor,
                    samples_per_s=speeds,
                    ratio=ratio,
                    met=ratio >= factor,
                )
            )
    return checks


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, help="folder with MNIST/raw (default: synthetic data)")
    p.add_argument("--synthetic-size", type=int, default=50_000, help="synthetic training images")
    p.add_argument("--val-size", type=int, help="validation images (default 10,000; quick: 200)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[10])
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per way")
    p.add_argument("--max-seconds", type=float, default=2.0, help="limit per timed epoch")
    p.add_argument("--warmup-seconds", type=float, default=1.0)
    p.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument(
        "--images-every",
        type=int,
        default=1,
        help="the project's TensorBoard pictures every N epochs, as train.py (0: off)",
    )
    p.add_argument("--rounds", type=int, default=1, help="measure every way this many times")
    p.add_argument("--ways", nargs="+", choices=list(WAYS), default=list(WAYS))
    p.add_argument("--json", type=Path, help="write every number to this file")
    p.add_argument("--quick", action="store_true", help="smoke test: 2,000 images, 1 epoch")
    args = p.parse_args()
    if args.quick:
        args.synthetic_size, args.epochs, args.max_seconds, args.warmup_seconds = 2000, 1, 0.5, 0.2
    args.val_size = args.val_size or (200 if args.quick else 10_000)
    return args


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.num_threads)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", r".*(does not have many workers|log_every_n_steps)")
    results: dict[int, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, source = args.data_dir, f"MNIST files in {args.data_dir}"
        if data_dir is None:
            n = args.synthetic_size + args.val_size
            data_dir, source = write_synthetic_mnist(Path(tmp), n), f"synthetic, {n:,} images"
        pixels, labels = load_mnist(data_dir, "train")
        n_train = len(pixels) - args.val_size
        cfg = Config(
            data_dir,
            args.val_size,
            pixels[:n_train],
            labels[:n_train],
            0,
            args.epochs,
            args.max_seconds,
            args.warmup_seconds,
            args.num_threads,
            args.accelerator,
            args.images_every,
        )
        info = hardware(cfg)
        label = (
            f"{info.get('gpu', info['cpu'])}, {args.num_threads} thread(s), torch "
            f"{info['torch']}; data: {source}, {n_train:,} train + {args.val_size:,} val; "
            f"project pictures every {args.images_every or 'no'} epoch(s)"
        )
        cfg.batch_size = args.batch_sizes[0]
        warm_up(tight_loop(cfg, manual=False), cfg.warmup_seconds)  # a new process starts slow
        for cfg.batch_size in args.batch_sizes:
            timed: dict[str, list[Epoch]] = {way: [] for way in args.ways}
            for r in range(args.rounds):  # each round in another order: load shifts over time
                for way in args.ways[r % len(args.ways) :] + args.ways[: r % len(args.ways)]:
                    timed[way] += measure(cfg, way)
            rows = results[cfg.batch_size] = {}
            for way, epochs in timed.items():
                rows[way] = {
                    "label": WAYS[way],
                    "samples_per_s": statistics.median(e.samples / e.seconds for e in epochs),
                    "us_per_step": statistics.median(1e6 * e.seconds / e.steps for e in epochs),
                    "epochs": [asdict(e) for e in epochs],
                }
            print(f"\nBatch size {cfg.batch_size} on {args.accelerator}: {label}")
            print(table(rows))
            for way in ("project_autograd", "project_manual"):
                if way in rows:
                    e = rows[way]["epochs"]
                    share = statistics.median(1 - d["train_seconds"] / d["seconds"] for d in e)
                    print(f"  {WAYS[way]}: whole epochs, {share:.0%} in validation + checkpoint")
    checks = check_targets(results)
    if checks:
        print(f"\nTargets, set for the CPU (this run: {args.accelerator}); a report, not a test:")
    for c in checks:
        print(
            f"  batch {c['batch_size']}: {WAYS[c['way']]} >= {c['target']:g} × "
            f"{WAYS[c['reference']]}: {c['ratio']:.2f}× ({c['samples_per_s'][0]:,.0f} vs "
            f"{c['samples_per_s'][1]:,.0f} samples/s): {'met' if c['met'] else 'not met'}"
        )
    if args.json:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        data = {"source": source, "n_train": n_train, "val_size": args.val_size}
        report = {"hardware": info, "data": data, "settings": settings, "results": results}
        args.json.write_text(json.dumps(report | {"checks": checks}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

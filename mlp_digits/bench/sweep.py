"""How fast a sweep trains many networks, as ratios (for scripts/benchmark.py).

784-16-16-10, batch 10, η 3, on the training images of ``--data-dir``; samples/s count every
network's samples (N networks x 10 images per SGD step). Three references:

    one train.py run     its own path (``build_run`` + ``Trainer.fit``), the training part of
                         an epoch (validation excluded, as for the sweep)
    N train.py runs      one after another: N x the wall time of one whole one-epoch run
                         (start, data, training, validation, test), measured once
    vmap                 the usual way to train many small models at once in PyTorch:
                         ``torch.func.stack_module_state`` + ``vmap(grad(...))`` over
                         ``functional_call``, in a plain loop (no Lightning), float pixels

The sweep is timed through its own Trainer (``StackedMLP`` + ``StackData``), after one
warm-up chunk, for about ``--seconds``; its epoch time (for the N-runs ratio) is that rate
over the epoch plus one measured evaluation of every network on validation and test.

On a GPU every clock reading waits for the device's queued work first
(``torch.cuda.synchronize``), and the memory is the device's: the most the sweep's tensors
took (``torch.cuda.max_memory_allocated``), beside the host's peak resident set.
"""

from __future__ import annotations

import argparse
import copy
import resource
import time
from argparse import Namespace

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from mlp_digits import cli
from mlp_digits.config import DEFAULTS, LOGDIR, layers
from mlp_digits.data import pixels
from mlp_digits.lightning.training import build_run, quiet_lightning
from mlp_digits.sgd import EpochPermutation
from mlp_digits.sweep import run as sweep
from mlp_digits.sweep.stack import StackData, StackedMLP

SIZES, LR, BATCH = DEFAULTS.sizes, DEFAULTS.lr, DEFAULTS.batch_size  # the book's run
GPU_NOTE = (
    " GPU MB: the most the sweep of N networks allocated on the GPU, training and evaluation"
    " (torch.cuda.max_memory_allocated)."
)
VMAP_STEPS_PER_READING = 10  # vmap's steps between clock readings: each waits for the GPU


def device_of(args: Namespace) -> torch.device:
    return torch.device("cuda" if args.accelerator == "gpu" else "cpu")


def clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the device has done all it was given: CUDA runs
    asynchronously, so a bare reading would time the launches, not the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sweep-networks", type=int, nargs="+", default=[1, 10, 100, 1000], help="sweep sizes N"
    )
    parser.add_argument("--sweep-seconds", type=float, default=5.0, help="timed seconds per way")
    parser.add_argument(
        "--sweep-backprop", choices=["autograd", "manual"], default="manual", help="both ways"
    )


class TrainTimer(Callback):
    """Training seconds and samples; with ``warm_up`` from the end of the first chunk. Stops
    the fit after ``seconds``."""

    def __init__(self, seconds: float, samples_per_step: int, warm_up: bool = True) -> None:
        self.seconds, self.samples_per_step, self.warm_up = seconds, samples_per_step, warm_up
        self.start: float | None = None
        self.steps, self.elapsed = 0, 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, model) -> None:
        if self.start is None and not self.warm_up:
            self.start = clock(model.device)

    def on_train_batch_end(self, trainer: L.Trainer, model, outputs, chunk, chunk_idx) -> None:
        if self.start is None:
            self.start = clock(model.device)  # the first chunk warms up
            return
        self.steps += chunk[0].shape[0]
        self.elapsed = clock(model.device) - self.start
        if self.elapsed >= self.seconds:
            trainer.should_stop = True

    @property
    def rate(self) -> float:
        return self.steps * self.samples_per_step / self.elapsed


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator=kwargs.pop("accelerator"), devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, **kwargs,
    )  # fmt: skip


def train_py(args: Namespace) -> tuple[float, float]:
    """One train.py run, one epoch: (training samples/s, whole run's wall seconds)."""
    start = time.perf_counter()
    flags = ["--data-dir", str(args.data_dir), "--no-download", "--max-epochs", "1"]
    flags += ["--lr", str(LR), "--accelerator", args.accelerator, "--backprop"]
    flags += [args.sweep_backprop, "--images-every", "0", "--logdir", args.logdir]
    flags += ["--val-size", str(args.val_size)]
    run_args = cli.train_parser().parse_args(flags)
    timer = TrainTimer(float("inf"), BATCH, warm_up=False)
    run = build_run(run_args, extra_callbacks=[timer])
    run.trainer.fit(run.model, datamodule=run.datamodule)
    run.trainer.test(run.model, datamodule=run.datamodule, verbose=False)
    return timer.rate, time.perf_counter() - start


def sweep_rate(args: Namespace, n: int, splits: dict) -> tuple[float, float]:
    """A stack of n networks: (training samples/s, seconds to evaluate every network once)."""
    model = StackedMLP(SIZES, [LR] * n, list(range(n)), backprop=args.sweep_backprop)
    timer = TrainTimer(args.sweep_seconds, n * BATCH)
    trainer = quiet_trainer(
        accelerator=args.accelerator, max_epochs=10_000, limit_val_batches=0, callbacks=[timer]
    )
    data = StackData(splits, list(range(n)), BATCH)
    trainer.fit(model, datamodule=data)
    device = device_of(args)
    start = clock(device)
    evaluate = quiet_trainer(accelerator=args.accelerator)
    evaluate.validate(model, datamodule=data, verbose=False)
    return timer.rate, clock(device) - start


def vmap_rate(args: Namespace, n: int, splits: dict) -> float:
    """The same SGD with torch.func: stacked parameters, vmap of the gradient."""
    device = device_of(args)
    x_all, targets_all = (t.to(device) for t in splits["train"])
    x_all = pixels(x_all, torch.float32)

    def net() -> nn.Module:
        layers = []
        for n_in, n_out in zip(SIZES, SIZES[1:]):
            layers += [nn.Linear(n_in, n_out), nn.Sigmoid()]
        return nn.Sequential(*layers)

    models = [net().to(device) for _ in range(n)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def cost(p, b, x, y):
        a = functional_call(base, (p, b), (x,))
        return (a - y).square().sum() * (0.5 / len(x))

    gradients = vmap(grad(cost))
    lr = torch.full((n,), LR, device=device)
    orders = torch.stack([EpochPermutation(len(x_all), k, device).permutation() for k in range(n)])
    steps, start, step = 0, None, 0
    while True:
        idx = orders[:, step * BATCH : (step + 1) * BATCH]
        x = x_all[idx]
        y = torch.nn.functional.one_hot(targets_all[idx], 10).float()
        g = gradients(params, buffers, x, y)
        with torch.no_grad():
            for k, p in params.items():
                p.sub_(lr.view(-1, *[1] * (p.dim() - 1)) * g[k])
        step = (step + 1) % (len(x_all) // BATCH)
        if start is None:
            start = clock(device)  # the first step warms up
            continue
        steps += 1
        if steps % VMAP_STEPS_PER_READING == 0:
            elapsed = clock(device) - start
            if elapsed >= args.sweep_seconds:
                return steps * n * BATCH / elapsed


def run(args: Namespace) -> int:
    """Print the sweep's ratios for each N; returns 0."""
    quiet_lightning()
    threads = getattr(args, "num_threads", 1) or 1
    args.val_size = getattr(args, "val_size", DEFAULTS.val_size)
    args.no_download = True
    args.logdir = getattr(args, "logdir", f"{LOGDIR}/benchmark")
    splits = sweep.load_splits(args)
    n_train = len(splits["train"][0])
    one_rate, one_seconds = train_py(args)  # with train.py's own 1 thread
    torch.set_num_threads(threads)
    where = f"on {torch.cuda.get_device_name()}, " if device_of(args).type == "cuda" else ""
    print(
        f"Sweep, {layers(SIZES)}, batch {BATCH}, {args.sweep_backprop} backprop, "
        f"{n_train:,} training images, {where}{threads} thread(s); one train.py run "
        "(1 thread, its default): "
        f"{one_rate:,.0f} samples/s training, {one_seconds:.1f} s for a whole 1-epoch run"
    )
    gpu = device_of(args).type == "cuda"
    print(
        f"{'networks':>8} {'samples/s':>11} {'x one run':>9} {'x N runs*':>9} "
        f"{'vmap samples/s':>14} {'x vmap':>6} {'host RSS MB':>11}" + (" GPU MB" if gpu else "")
    )
    for n in args.sweep_networks:
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        rate, eval_seconds = sweep_rate(args, n, splits)
        gpu_mb = f" {torch.cuda.max_memory_allocated() / 2**20:>6,.0f}" if gpu else ""
        epoch_seconds = n * n_train / rate + eval_seconds
        versus_runs = n * one_seconds / epoch_seconds
        v_rate = vmap_rate(args, n, splits)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{n:>8} {rate:>11,.0f} {rate / one_rate:>9.2f} {versus_runs:>9.2f} "
            f"{v_rate:>14,.0f} {rate / v_rate:>6.2f} {rss_mb:>11,.0f}{gpu_mb}",
            flush=True,
        )
    print(
        "* N train.py runs one after another, estimated as N x one whole 1-epoch run's wall "
        "time (measured once), against the sweep's epoch (training rate over the epoch plus "
        "one evaluation of every network). Host RSS MB: this process's peak resident memory "
        "so far (the largest N last)." + (GPU_NOTE if gpu else "")
    )
    return 0

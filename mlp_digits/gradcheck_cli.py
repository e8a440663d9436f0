"""What ``scripts/compare_gradients.py`` checks: the network and the mini-batch its flags
name, the tolerances, and the report of ``mlp_digits.gradcheck``'s comparison.

The network is a checkpoint's (its sizes, weights and activation, and its run's data unless
``--data-dir`` is given) or a fresh one drawn by ``network.initial_parameters`` from
``--seed``, with ``--sizes``, ``--init`` and ``--activation``. The flags are parsed before
torch is imported (``--help`` answers at once); Lightning only to read a checkpoint.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlp_digits import cli
from mlp_digits.config import (
    ACTIVATIONS,
    DEFAULT_SIZES,
    DEFAULTS,
    INITS,
    LOGDIR,
    layers,
    mnist_problem,
)

if TYPE_CHECKING:
    import torch

DTYPES = ("float64", "float32")
# Rounding in float32 (ε ≈ 1e-7) leaves relative errors near 1e-6; in float64 near 1e-15.
DEFAULT_TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
DEVICES = {"cpu": "cpu", "gpu": "cuda"}  # --accelerator, as Lightning's, to torch's device


def non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, got {text}")
    return value


def parser() -> cli.Parser:
    """compare_gradients.py's flags: the network, then the check."""
    p = cli.Parser(
        description="Compare the gradients of BP1-BP4 with autograd and finite differences."
    )
    add_network_flags(p)
    add_check_flags(p)
    return p


def add_network_flags(p: argparse.ArgumentParser) -> None:
    """Which network: a checkpoint, or a fresh one and how it is drawn."""
    p.add_argument(
        "--checkpoint",
        default=None,
        help="check a trained network, with its activation: a .ckpt written by train.py, a "
        "run's folder (its last.ckpt), 'best' or 'last' (the newest run's under --logdir)",
    )
    p.add_argument(
        "--logdir",
        default=LOGDIR,
        help="where --checkpoint best or last finds the newest run (default: %(default)s)",
    )
    p.add_argument(
        "--sizes",
        type=cli.positive_int,
        nargs="+",
        default=None,
        help=f"neurons per layer, input first (default: {layers(DEFAULT_SIZES, ' ')}, or the "
        "checkpoint's)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS.seed,
        help="draws the fresh network's weights (network.initial_parameters), the random "
        "inputs and the sampled coordinates (default: %(default)s)",
    )
    p.add_argument(
        "--init",
        choices=INITS,
        default=DEFAULTS.init,
        help=f"the fresh network's start: {cli.INIT_HELP} (default: %(default)s)",
    )
    p.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        default=None,
        help=f"the fresh network's: {cli.ACTIVATION_HELP} (default: {DEFAULTS.activation}; a "
        "checkpoint's own)",
    )


def add_check_flags(p: argparse.ArgumentParser) -> None:
    """The mini-batch, the number type, the tolerances and where to compute."""
    p.add_argument(
        "--batch-size",
        type=cli.positive_int,
        default=10,
        help="mini-batch size m (default: %(default)s)",
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default=DTYPES[0],
        help="number type of the check (default: %(default)s)",
    )
    p.add_argument(
        "--tolerance",
        type=non_negative_float,
        default=None,
        help="largest relative error vs autograd (default: "
        + ", ".join(f"{t:g} {name}" for name, t in DEFAULT_TOLERANCE.items())
        + ")",
    )
    p.add_argument(
        "--fd-tolerance",
        type=non_negative_float,
        default=1e-5,
        help="largest relative error vs finite differences (default: %(default)s)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="use the first MNIST test images of DIR/MNIST/raw (default: a checkpoint's run's "
        "data, else random pixels)",
    )
    p.add_argument(
        "--accelerator",
        choices=DEVICES,
        default="cpu",
        help="where to compute (default: %(default)s)",
    )


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks that need more than one flag; each failure is p.error (exit 2)."""
    if args.sizes is not None and len(args.sizes) < 2:
        p.error("--sizes needs at least two layers, e.g. 784 10")
    problem = args.data_dir and args.sizes and mnist_problem(args.sizes)
    if problem:
        p.error(f"--sizes {layers(args.sizes, ' ')}: {problem}")
    cli.check_accelerator(p, args.accelerator)


@dataclass
class Subject:
    """The network to check: its parameters, its hidden layers' activation, a phrase saying
    where it came from, and its run's data folder (a checkpoint's; None for a fresh one)."""

    sizes: list[int]
    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    activation: str
    source: str
    run_data_dir: str | None = None


def fresh_network(args: argparse.Namespace) -> Subject:
    """``initial_parameters`` of ``--sizes``, ``--init`` and ``--seed``, with ``--activation``."""
    from mlp_digits.network import initial_parameters

    sizes = args.sizes or list(DEFAULT_SIZES)
    activation = args.activation or DEFAULTS.activation
    weights, biases = initial_parameters(sizes, args.init, args.seed)
    source = f"fresh {activation} network (init {args.init}, seed {args.seed})"
    return Subject(sizes, weights, biases, activation, source)


def checkpoint_network(args: argparse.Namespace) -> Subject:
    """The checkpoint's network; ``--sizes`` or ``--activation`` that differ are refused."""
    from mlp_digits.data import DataError
    from mlp_digits.lightning import checkpoint, runs  # Lightning: only for a checkpoint

    path = runs.checkpoint_path(args.checkpoint, args.logdir)
    contents = checkpoint.read_checkpoint(path)
    model = checkpoint.model_from_checkpoint(contents, path)
    sizes = list(model.hparams.sizes)
    if args.sizes is not None and args.sizes != sizes:
        raise DataError(f"--sizes {args.sizes} differs from the checkpoint's sizes {sizes}")
    if args.activation is not None and args.activation != model.activation:
        raise DataError(
            f"--activation {args.activation} differs from the checkpoint's {model.activation}"
        )
    data_dir = contents.get("datamodule_hyper_parameters", {}).get("data_dir")
    weights = [w.detach() for w in model.weights]
    biases = [b.detach() for b in model.biases]
    source = f"checkpoint {path} ({model.activation})"
    return Subject(sizes, weights, biases, model.activation, source, data_dir)


def load_batch(
    args: argparse.Namespace, subject: Subject
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Inputs x (m, n_in) in float64, labels (m,), and a phrase saying where they came from:
    the first m test images of ``--data-dir`` or of the checkpoint's run, else random pixels."""
    import torch

    from mlp_digits.data import DataError, load_mnist  # torchvision: only for MNIST files

    m, sizes = args.batch_size, subject.sizes
    data_dir = args.data_dir or subject.run_data_dir
    if data_dir is None:
        x = torch.rand(m, sizes[0], dtype=torch.float64)
        return x, torch.randint(sizes[-1], (m,)), "random pixels in [0, 1], random labels"
    problem = mnist_problem(sizes)
    if problem:
        raise DataError(f"sizes {layers(sizes)} do not fit MNIST: {problem}")
    whose = "" if args.data_dir else " (the checkpoint's run's data)"
    try:
        pixels, targets = load_mnist(data_dir, "test")
    except DataError as e:
        hint = "" if args.data_dir else " (the checkpoint's run's data; give --data-dir)"
        raise DataError(f"{e}{hint}") from None
    if len(pixels) < m:
        raise DataError(f"{data_dir}: the test file has {len(pixels)} images, fewer than {m}")
    return pixels[:m].double(), targets[:m], f"first {m} MNIST test images of {data_dir}{whose}"


def check(args: argparse.Namespace) -> int:
    """Compare the three gradients, print the table and PASS or FAIL; exit status 0 or 1."""
    import torch
    import torch.nn.functional as F

    from mlp_digits import gradcheck

    torch.manual_seed(args.seed)  # the random pixels, if no data
    subject = checkpoint_network(args) if args.checkpoint else fresh_network(args)
    x, targets, inputs = load_batch(args, subject)
    dtype, device = getattr(torch, args.dtype), torch.device(DEVICES[args.accelerator])
    weights = [w.to(device, dtype) for w in subject.weights]
    biases = [b.to(device, dtype) for b in subject.biases]
    x = x.to(device, dtype)
    y = F.one_hot(targets, subject.sizes[-1]).to(device, dtype)

    rows = gradcheck.compare_gradients(
        weights, biases, x, y, seed=args.seed, activation=subject.activation
    )
    tolerance = DEFAULT_TOLERANCE[args.dtype] if args.tolerance is None else args.tolerance
    print(
        f"Gradient check: {args.dtype}, sizes {layers(subject.sizes)}, {subject.activation}, "
        f"batch {len(x)}, accelerator {args.accelerator}"
    )
    print(f"inputs: {inputs}; network: {subject.source}")
    print(gradcheck.format_table(rows))
    failed = gradcheck.failures(rows, tolerance, args.fd_tolerance)
    limits = f"tolerance {tolerance:g} vs autograd, {args.fd_tolerance:g} vs finite differences"
    if failed:
        print(f"FAIL ({limits}): " + "; ".join(failed))
        return 1
    print(f"PASS: every relative error is below its {limits}")
    return 0

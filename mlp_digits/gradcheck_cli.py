"""What ``scripts/compare_gradients.py`` checks: the network and the mini-batch its flags
name, the tolerances, and the report of ``mlp_digits.gradcheck``'s comparison."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from mlp_digits import gradcheck
from mlp_digits.config import DEFAULT_SIZES, mnist_problem
from mlp_digits.data import DataError, load_mnist
from mlp_digits.lightning import checkpoint
from mlp_digits.lightning.model import DigitsMLP

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Rounding in float32 (ε ≈ 1e-7) leaves relative errors near 1e-6; in float64 near 1e-15.
DEFAULT_TOLERANCE = {"float32": 1e-5, "float64": 1e-10}


def non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, got {text}")
    return value


def load_network(args: argparse.Namespace) -> tuple[DigitsMLP, str]:
    """The network to check and a phrase saying where it came from."""
    if args.checkpoint is None:
        sizes = args.sizes or list(DEFAULT_SIZES)
        return DigitsMLP(sizes=sizes), f"fresh DigitsMLP (seed {args.seed})"
    path = Path(args.checkpoint)
    model = checkpoint.load_checkpoint(path)
    sizes = list(model.hparams.sizes)
    if args.sizes is not None and args.sizes != sizes:
        raise DataError(f"--sizes {args.sizes} differs from the checkpoint's sizes {sizes}")
    return model, f"checkpoint {path}"


def load_batch(
    args: argparse.Namespace, sizes: list[int]
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Inputs x (m, n_in) in float64, labels (m,), and a phrase saying where they came from."""
    m = args.batch_size
    if args.data_dir is None:
        x = torch.rand(m, sizes[0], dtype=torch.float64)
        return x, torch.randint(sizes[-1], (m,)), "random pixels in [0, 1], random labels"
    problem = mnist_problem(sizes)
    if problem:
        raise DataError(f"sizes {'-'.join(map(str, sizes))} do not fit MNIST: {problem}")
    pixels, targets = load_mnist(args.data_dir, "test")
    if len(pixels) < m:
        raise DataError(f"{args.data_dir}: the test file has {len(pixels)} images, fewer than {m}")
    return pixels[:m].double(), targets[:m], f"first {m} MNIST test images of {args.data_dir}"


def check(args: argparse.Namespace) -> int:
    """Compare the three gradients, print the table and PASS or FAIL; exit status 0 or 1."""
    torch.manual_seed(args.seed)
    model, network = load_network(args)
    sizes = list(model.hparams.sizes)
    x, targets, inputs = load_batch(args, sizes)
    dtype, device = DTYPES[args.dtype], torch.device(args.device)
    weights = [w.detach().to(device, dtype) for w in model.weights]
    biases = [b.detach().to(device, dtype) for b in model.biases]
    x, y = x.to(device, dtype), F.one_hot(targets, sizes[-1]).to(device, dtype)

    rows = gradcheck.compare_gradients(weights, biases, x, y, seed=args.seed)
    tolerance = DEFAULT_TOLERANCE[args.dtype] if args.tolerance is None else args.tolerance
    shape = "-".join(map(str, sizes))
    print(f"Gradient check: {args.dtype}, sizes {shape}, batch {len(x)}, device {args.device}")
    print(f"inputs: {inputs}; network: {network}")
    print(gradcheck.format_table(rows))
    failed = gradcheck.failures(rows, tolerance, args.fd_tolerance)
    limits = f"tolerance {tolerance:g} vs autograd, {args.fd_tolerance:g} vs finite differences"
    if failed:
        print(f"FAIL ({limits}): " + "; ".join(failed))
        return 1
    print(f"PASS: every relative error is below its {limits}")
    return 0

"""Check the hand-written backpropagation (BP1-BP4) against autograd and finite differences.

One mini-batch, one table: a row per parameter tensor, then PASS or FAIL (exit status 0 or 1).

To run:
    python scripts/compare_gradients.py                            # random batch, fresh network
    python scripts/compare_gradients.py --dtype float32            # the same in float32
    python scripts/compare_gradients.py --data-dir data            # the first 10 MNIST test images
    python scripts/compare_gradients.py --checkpoint model.ckpt    # a trained network
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from mlp_digits import checkpoint, cli, gradcheck
from mlp_digits.data import DataError, load_mnist
from mlp_digits.model import DigitsMLP

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEFAULT_TOLERANCE = {"float32": 1e-5, "float64": 1e-10}


def non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Compare the gradients of BP1-BP4 with autograd and finite differences.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--sizes",
        type=cli.positive_int,
        nargs="+",
        default=None,
        help="neurons per layer, input first (default: 784 16 16 10, or the checkpoint's)",
    )
    p.add_argument("--batch-size", type=cli.positive_int, default=10, help="mini-batch size m")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, inputs and sampling")
    p.add_argument(
        "--tolerance",
        type=non_negative_float,
        default=None,
        help="largest relative error vs autograd (default: 1e-10 float64, 1e-5 float32)",
    )
    p.add_argument(
        "--fd-tolerance",
        type=non_negative_float,
        default=1e-5,
        help="largest relative error vs finite differences",
    )
    p.add_argument("--data-dir", default=None, help="use MNIST test images from DIR/MNIST/raw")
    p.add_argument("--checkpoint", default=None, help="a DigitsMLP checkpoint (.ckpt) to check")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks that need more than one flag; each failure is p.error (exit 2)."""
    if args.sizes is not None and len(args.sizes) < 2:
        p.error("--sizes needs at least two layers, e.g. 784 10")
    if args.data_dir is not None and args.sizes is not None:
        cli.check_mnist_sizes(p, args.sizes)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")


def load_network(args: argparse.Namespace) -> tuple[DigitsMLP, str]:
    """The network to check and a phrase saying where it came from."""
    if args.checkpoint is None:
        sizes = args.sizes or [784, 16, 16, 10]
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
    if (sizes[0], sizes[-1]) != (784, 10):
        raise DataError(f"sizes {sizes} do not fit MNIST: they must start at 784 and end at 10")
    pixels, targets = load_mnist(args.data_dir, "test")
    if len(pixels) < m:
        raise DataError(f"{args.data_dir}: the test file has {len(pixels)} images, fewer than {m}")
    return pixels[:m].double(), targets[:m], f"first {m} MNIST test images of {args.data_dir}"


def main(args: argparse.Namespace) -> int:
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


if __name__ == "__main__":
    p = parser()
    args = p.parse_args()
    check_args(p, args)
    sys.exit(cli.run(main, args))

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
import sys

import torch

from mlp_digits import cli
from mlp_digits.config import DEFAULT_SIZES, mnist_problem
from mlp_digits.gradcheck_cli import DEFAULT_TOLERANCE, DTYPES, check, non_negative_float


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Compare the gradients of BP1-BP4 with autograd and finite differences."
    )
    p.add_argument(
        "--sizes",
        type=cli.positive_int,
        nargs="+",
        default=None,
        help=f"neurons per layer, input first (default: {' '.join(map(str, DEFAULT_SIZES))}, "
        "or the checkpoint's)",
    )
    p.add_argument(
        "--batch-size",
        type=cli.positive_int,
        default=10,
        help="mini-batch size m (default: %(default)s)",
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float64",
        help="number type of the check (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds weights, inputs and sampling (default: %(default)s)",
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
    p.add_argument("--data-dir", default=None, help="use MNIST test images from DIR/MNIST/raw")
    p.add_argument("--checkpoint", default=None, help="a DigitsMLP checkpoint (.ckpt) to check")
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="where to compute (default: %(default)s)",
    )
    return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks that need more than one flag; each failure is p.error (exit 2)."""
    if args.sizes is not None and len(args.sizes) < 2:
        p.error("--sizes needs at least two layers, e.g. 784 10")
    problem = args.data_dir and args.sizes and mnist_problem(args.sizes)
    if problem:
        p.error(f"--sizes {' '.join(map(str, args.sizes))}: {problem}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")


def main(args: argparse.Namespace) -> int:
    return check(args)


if __name__ == "__main__":
    p = parser()
    args = p.parse_args()
    check_args(p, args)
    sys.exit(cli.run(main, args))

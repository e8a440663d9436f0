"""Benchmark: the project's training path next to the usual ways of training the same network.

Samples/s and µs per SGD step of scripts/train.py's path (whole epochs, with validation,
checkpoints and pictures), idiomatic Lightning and PyTorch, the book's network.py in NumPy
and tight loops, on the same training images (see mlp_digits/bench/ways.py), with where each
spends its time. The default data is the full MNIST in ../shared/data/mnist when it exists:
the book's split, 50,000 images to train on and the last 10,000 to validate.

To run:
    python scripts/benchmark.py --batch-sizes 10 100 1000 --json bench.json
    python scripts/benchmark.py --data-dir data --accelerator gpu
    python scripts/benchmark.py --profile python --ways project_manual   # one epoch's profile
    python scripts/benchmark.py --quick                                  # smoke test
    python scripts/benchmark.py --sweep --sweep-networks 1 10 100 1000   # many networks at once
    python scripts/benchmark.py --accelerator gpu --batch-sizes 10 1000  # on a GPU (docs/gpu.md)
    python scripts/benchmark.py --accelerator gpu --sweep --sweep-networks 1 100 1000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from mlp_digits import cli
from mlp_digits.bench import report as benchmark_report
from mlp_digits.bench import sweep as sweep_bench
from mlp_digits.bench.ways import WAYS

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = p.add_argument
    add(
        "--data-dir",
        type=Path,
        help=f"folder with MNIST/raw (default: {SHARED_MNIST} if it exists)",
    )
    add("--synthetic", action="store_true", help="time on made-up digits, not on MNIST files")
    add("--synthetic-size", type=cli.positive_int, default=50_000, help="synthetic training images")
    add("--val-size", type=cli.positive_int, help="validation images (default: 10,000; quick: 200)")
    add("--batch-sizes", type=cli.positive_int, nargs="+", default=[10])
    add("--epochs", type=cli.positive_int, default=3, help="timed epochs per way (default: 3)")
    add("--max-seconds", type=cli.positive_float, default=2.0, help="limit per timed epoch")
    add("--warmup-seconds", type=float, default=1.0)
    add("--accelerator", choices=["cpu", "gpu"], default="cpu")
    add(
        "--num-threads",
        type=cli.positive_int,
        default=None,
        help="torch threads (default: each command's own: 1 as train.py, every core as a sweep)",
    )
    add(
        "--images-every",
        type=cli.non_negative_int,
        default=1,
        help="the project's TensorBoard pictures every N epochs, as train.py (0: off; default: 1)",
    )
    add("--seed", type=int, default=0, help="initial weights and epoch order of every way")
    add("--rounds", type=cli.positive_int, default=1, help="measure every way this many times")
    add("--ways", nargs="+", choices=list(WAYS), default=list(WAYS))
    add("--json", type=Path, help="write every number to this file")
    add("--profile", choices=["python", "torch"], help="profile one epoch of the project instead")
    add("--quick", action="store_true", help="smoke test: 2,000 synthetic images, 1 epoch")
    add("--sweep", action="store_true", help="time sweeps of many networks (scripts/sweep.py)")
    sweep_bench.add_flags(p)
    return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.quick:
        args.synthetic_size, args.epochs, args.max_seconds, args.warmup_seconds = 2000, 1, 0.5, 0.2
        args.synthetic = args.synthetic or args.data_dir is None
    args.val_size = args.val_size or (200 if args.quick else 10_000)
    if args.num_threads is None:  # what train.py, or a sweep, uses unless told otherwise
        defaults = cli.sweep_parser() if args.sweep else cli.train_parser()
        args.num_threads = defaults.get_default("num_threads")
    if args.data_dir is None and not args.synthetic and SHARED_MNIST.is_dir():
        args.data_dir = SHARED_MNIST
    if args.synthetic and args.data_dir is not None:
        p.error("--synthetic and --data-dir: give one or the other")
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        p.error("--accelerator gpu: this machine has no CUDA GPU; use --accelerator cpu")


if __name__ == "__main__":
    p = parser()
    args = p.parse_args()
    check_args(p, args)
    sys.exit(cli.run(sweep_bench.run if args.sweep else benchmark_report.main, args))

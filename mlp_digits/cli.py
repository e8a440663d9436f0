"""Command-line flags, defined once for every script, and their checks.

A user's mistake ends in one line on stderr and exit status 2 (argparse's convention), and a
problem with the data in one line and exit status 1 — never in a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

import torch
from lightning.fabric.plugins.environments import TorchElasticEnvironment
from lightning.pytorch.strategies import StrategyRegistry

from mlp_digits.backprop import ACTIVATIONS
from mlp_digits.data import DataError
from mlp_digits.network import DEFAULT_SIZES, INITS, check_mnist_sizes
from mlp_digits.sgd import BACKPROPS


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def count_or_fraction(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a count or a fraction above 0, got {text}")
    return int(value) if value >= 1 and value.is_integer() else value


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default="data",
        help="folder with MNIST/raw, downloaded there if missing (default: %(default)s)",
    )
    parser.add_argument(
        "--no-download", action="store_true", help="never download; fail if files are missing"
    )


def parse_sizes(tokens: list[str]) -> list[tuple[int, ...]]:
    """``--sizes`` in either form: ``784 16 16 10`` (one network) or ``784,16,16,10
    784,30,10`` (a network per token). ValueError with one sentence for a bad value."""
    if all("," not in t for t in tokens):
        tokens = [",".join(tokens)]
    networks = []
    for token in tokens:
        try:
            sizes = tuple(int(n) for n in token.replace(",", " ").split())
        except ValueError:
            raise ValueError(
                f"--sizes {token}: give whole numbers, e.g. 784 16 16 10 or 784,16,16,10"
            ) from None
        problem = check_mnist_sizes(sizes)
        if problem:
            raise ValueError(f"--sizes {token.replace(',', ' ')}: {problem}")
        networks.append(sizes)
    return networks


def add_sizes_flag(parser: argparse.ArgumentParser, many: bool) -> None:
    shown = " ".join(map(str, DEFAULT_SIZES))
    what = (
        "layer sizes of each network, input first: 784,16,16,10 784,30,10 (or 784 16 16 10 "
        f"for one; default: {shown})"
        if many
        else f"neurons per layer, input first: 784 16 16 10 or 784,16,16,10 (default: {shown})"
    )
    default = None if many else list(DEFAULT_SIZES)  # a sweep's default is its preset's, or this
    parser.add_argument("--sizes", nargs="+", default=default, help=what)


ACTIVATION_HELP = "the hidden layers' activation; the output layer is sigmoid either way"


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    add_sizes_flag(parser, many=False)
    add_gradient_flags(parser)
    parser.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        default="sigmoid",
        help=f"{ACTIVATION_HELP} (default: %(default)s)",
    )


def check_lr(lr: float, precision: str) -> None:
    """η must be a finite number above 0 that the run's float type can hold (ValueError)."""
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"--lr {lr:g}: η must be a finite number above 0")
    largest = torch.finfo(torch.float64 if str(precision) == "64" else torch.float32).max
    if lr > largest:
        raise ValueError(
            f"--lr {lr:g} is beyond the largest float{precision} number ({largest:.3g}); "
            "use a smaller --lr (or --precision 64)"
        )


def add_val_size_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--val-size",
        type=count_or_fraction,
        default=10_000,
        help="validation images: the last ones of the training file, a count or a fraction "
        "(default: 10000, the book's split)",
    )


def add_num_threads_flag(parser: argparse.ArgumentParser, default: int, why: str) -> None:
    parser.add_argument(
        "--num-threads",
        type=positive_int,
        default=default,
        help=f"CPU threads for torch; {why} (default: {default})",
    )


def add_resume_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--resume",
        default=None,
        help=f"'last' (the newest {what} under --logdir/--name) or its path",
    )


def add_gradient_flags(parser: argparse.ArgumentParser, many: bool = False) -> None:
    """--init and --backprop: shared by train.py and sweep.py (for which ``many``: --init is a
    grid axis, one value or several)."""
    parser.add_argument(
        "--init",
        choices=INITS,
        nargs="+" if many else None,
        default=None if many else "gaussian",
        help="gaussian: N(0,1) as network.py; scaled: N(0,1/n_in) as network2.py "
        "(default: gaussian)",
    )
    parser.add_argument(
        "--backprop",
        choices=BACKPROPS,
        default="autograd",
        help="gradients by autograd or by the hand-written BP1-BP4 (default: %(default)s)",
    )


def add_device_flags(parser: argparse.ArgumentParser, devices_help: str) -> None:
    """--accelerator, --devices, --num-nodes, --strategy, --precision, --max-epochs: shared by
    train.py and sweep.py."""
    parser.add_argument(
        "--accelerator", choices=["cpu", "gpu", "auto"], default="auto", help="(default: auto)"
    )
    parser.add_argument("--devices", default="auto", help=devices_help)
    parser.add_argument(
        "--num-nodes",
        type=positive_int,
        default=1,
        help="machines, each running --devices processes (under torchrun: its --nnodes; "
        "default: 1)",
    )
    parser.add_argument(
        "--strategy", default="auto", help="Lightning strategy, e.g. ddp (default: auto)"
    )
    parser.add_argument(
        "--precision",
        choices=["32", "64"],
        default="32",
        help="float bits; 64 reproduces the book's float64 arithmetic (default: 32)",
    )
    parser.add_argument(
        "--max-epochs",
        type=positive_int,
        default=30,
        help="epochs in all; a resumed run keeps its own unless this is given (default: 30)",
    )


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logdir", default="lightning_logs", help="TensorBoard folder (default: %(default)s)"
    )
    parser.add_argument("--name", default="", help="run name: runs go to LOGDIR/NAME/version_N")


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        usage="%(prog)s [options]  (see --help)",
        description="Train the 784-16-16-10 sigmoid network on MNIST by mini-batch SGD.",
    )
    add_device_flags(
        parser,
        devices_help="devices (processes) to use: a count or 'auto'; --batch-size is per "
        "device, so the global mini-batch is batch size x devices (default: auto)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=10, help="mini-batch size m (default: 10)"
    )
    parser.add_argument("--lr", type=float, default=3.0, help="learning rate η (default: 3.0)")
    add_model_flags(parser)
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="draws the initial weights and each epoch's order (default: 0)",
    )
    add_data_flags(parser)
    add_val_size_flag(parser)
    parser.add_argument(
        "--steps-per-chunk",
        type=positive_int,
        default=None,
        help="SGD steps per Lightning step (default: about 1,000 samples' worth)",
    )
    add_logging_flags(parser)
    add_num_threads_flag(parser, 1, "at batch 10 one is as fast as two")
    parser.add_argument(
        "--check-gradients-every",
        type=non_negative_int,
        default=0,
        help="every N SGD steps, log autograd vs manual gradients to TensorBoard "
        "(default: 0, never)",
    )
    parser.add_argument(
        "--images-every",
        type=non_negative_int,
        default=1,
        help="write weight pictures, mistakes, confusion matrix and histograms to TensorBoard "
        "every N epochs (default: 1; 0: never)",
    )
    add_resume_flag(parser, "run's last.ckpt; --max-epochs counts from the run's start")
    parser.add_argument(
        "--fast-dev-run",
        action="store_true",
        help="one chunk of training and one batch of evaluation, nothing saved",
    )
    return parser


def evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Test a saved DigitsMLP again: correct images and a per-digit table.",
    )
    parser.add_argument("--checkpoint", required=True, help="a .ckpt written by scripts/train.py")
    add_data_flags(parser)
    parser.add_argument(
        "--split",
        choices=["test", "val"],
        default="test",
        help="test (default) or val: the run's own validation images (its split comes from "
        "the checkpoint)",
    )
    parser.add_argument(
        "--accelerator", choices=["cpu", "gpu", "auto"], default="cpu", help="(default: cpu)"
    )
    parser.add_argument(
        "--projector",
        action="store_true",
        help="also write the hidden layers' activations of the split's images for "
        "TensorBoard's PROJECTOR tab (beside the run's logs)",
    )
    return parser


def check_train_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks of train.py's flags that need more than one flag, or the machine; each failure
    is parser.error (exit 2). ``args.sizes`` becomes one network's sizes."""
    try:
        networks = parse_sizes([str(t) for t in args.sizes])
        if len(networks) > 1:
            raise ValueError(
                f"--sizes {' '.join(map(str, args.sizes))}: train.py trains one network; "
                "scripts/sweep.py trains several"
            )
        check_lr(args.lr, args.precision)
    except ValueError as e:
        parser.error(str(e))
    args.sizes = list(networks[0])
    check_device_args(parser, args)


def check_device_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--accelerator, --strategy, --devices against this machine and Lightning (else exit 2)."""
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        parser.error("--accelerator gpu: this machine has no CUDA GPU; use --accelerator cpu")
    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if args.strategy not in strategies:
        parser.error(f"--strategy {args.strategy} is not one of: {', '.join(strategies)}")
    if args.devices != "auto" and not (args.devices.isdigit() and int(args.devices) >= 1):
        parser.error(f"--devices {args.devices}: give a number of devices (1, 2, ...) or auto")
    if TorchElasticEnvironment.detect():  # torchrun started this process, and the others
        started, per_node = int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_WORLD_SIZE"])
        if processes(args) != started:
            parser.error(
                f"--devices {args.devices} --num-nodes {args.num_nodes}: torchrun started "
                f"{started} processes, {per_node} per node; give --devices {per_node} "
                f"--num-nodes {started // per_node}"
            )


def processes(args: argparse.Namespace) -> int:
    """The run's processes: --devices on each of --num-nodes machines (Lightning's "auto"
    devices: every GPU, or one process on the CPU)."""
    if str(args.devices).isdigit():
        devices = int(args.devices)
    else:
        gpu = args.accelerator == "gpu" or (
            args.accelerator == "auto" and torch.cuda.is_available()
        )
        devices = torch.cuda.device_count() if gpu else 1
    return devices * args.num_nodes


def given_flags(
    make_parser: Callable[[], argparse.ArgumentParser], argv: list[str] | None = None
) -> set[str]:
    """The flags the command line sets (as ``dest`` names), whatever their values: parsed
    again with every default set to None."""
    probe = make_parser()
    probe.set_defaults(**dict.fromkeys(vars(probe.parse_args(argv)), None))
    return {k for k, v in vars(probe.parse_args(argv)).items() if v is not None}


def parse_train_args(argv: list[str] | None = None) -> argparse.Namespace:
    """train.py's flags, checked (a mistake is one line and exit 2), with ``args.given``."""
    parser = train_parser()
    args = parser.parse_args(argv)
    check_train_args(parser, args)
    args.given = given_flags(train_parser, argv)
    return args


def run(main: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Call ``main(args)``; a data problem becomes one line on stderr and exit status 1.

    A reader that stops early (``| head -2``) closes the pipe: that ends the output quietly,
    as it does for any command-line tool, not in a BrokenPipeError traceback.
    """
    try:
        status = main(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here at the latest
        return status
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # Python flushes stdout again at exit; pointing it at devnull keeps that quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, the status of a tool the pipe stopped

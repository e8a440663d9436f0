"""Command-line flags, defined once for every script, with their defaults from ``config``.

A user's mistake ends in one line on stderr and exit status 2 (argparse's convention), and a
problem with the data in one line and exit status 1 — never in a traceback. Flags are parsed
before torch or Lightning is imported, so ``--help`` and a typo answer at once; a flag must
be spelt out (no abbreviations), and a misspelt one gets the closest matches.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mlp_digits.config import (
    ACTIVATIONS,
    BACKPROPS,
    DATA_DIR,
    DEFAULTS,
    IMAGES_EVERY,
    INITS,
    LOGDIR,
    N_INPUTS,
    PRECISIONS,
    SWEEP_SEEDS,
    TRAIN_THREADS,
    layers,
    lr_problem,
    mnist_problem,
)

# --- the parser: given flags, no abbreviations, suggestions ------------------------------


class Formatter(argparse.HelpFormatter):
    """Defaults shown as they are typed: ``784-16-16-10``, ``0.1 0.3``, not Python's repr."""

    def _expand_help(self, action: argparse.Action) -> str:
        default = action.default
        if isinstance(default, tuple | list):
            shown = [layers(v) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float)
                     else str(v) for v in default]  # fmt: skip
            if default and all(isinstance(v, int) for v in default):  # one network's sizes
                shown = [layers(default)]
            action = copy.copy(action)
            action.default = " ".join(shown)
        return super()._expand_help(action)


class Given:
    """Mixed into every action of a ``Parser``: a flag's action runs only when it is given."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, *rest: Any) -> None:
        namespace.given.add(self.dest)  # type: ignore[attr-defined]
        super().__call__(parser, namespace, *rest)  # type: ignore[misc]


class Parser(argparse.ArgumentParser):
    """argparse, with ``args.given``: the flags the command line set (as ``dest`` names)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(allow_abbrev=False, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if not isinstance(action, Given | argparse._HelpAction):
            action.__class__ = type(f"Given{type(action).__name__}", (Given, type(action)), {})
        return action

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        namespace = namespace or argparse.Namespace()
        namespace.given = getattr(namespace, "given", set())
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        super().error(message + self.suggestion(message))

    def suggestion(self, message: str) -> str:
        """'; did you mean --max-epochs?' for a misspelt flag or choice, else ''."""
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            flags = [word for word in unknown[1].split() if word.startswith("--")]
            known = list(self._option_string_actions)
            for flag in flags:
                close = difflib.get_close_matches(flag.split("=")[0], known, n=2, cutoff=0.6)
                if close:
                    return f"; did you mean {' or '.join(close)}?"
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice[2])
            close = difflib.get_close_matches(choice[1], options, n=1, cutoff=0.5)
            if close:
                return f"; did you mean {close[0]}?"
        return ""


# --- value types --------------------------------------------------------------------------


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


def parse_sizes(tokens: Sequence[str]) -> list[tuple[int, ...]]:
    """``--sizes`` in any of its forms: ``784 16 16 10`` (one network), ``784,16,16,10
    784,30,10`` or ``784-16-16-10 784-30-10`` (a network per word). ValueError with one
    sentence for a bad value, or for plain numbers that look like several networks."""
    text = " ".join(tokens)
    if re.search(r",\s|\s,", text) or text.startswith(",") or text.endswith(","):
        joined = re.sub(r"\s*,\s*", ",", text.strip(" ,"))
        raise ValueError(
            f"--sizes {text}: no spaces around the commas; write one network as {joined}"
        )
    words = [w.replace("-", ",") for w in text.split()]
    if all("," not in w for w in words):
        starts = [i for i, w in enumerate(words) if i > 0 and w == str(N_INPUTS)]
        if starts:  # an input size after the output size: several networks run together
            parts = [words[a:b] for a, b in zip([0, *starts], [*starts, len(words)])]
            commas = " ".join(",".join(p) for p in parts)
            raise ValueError(
                f"--sizes {text}: this reads as one network of {len(words)} layers; for "
                f"several networks write each as one word: {commas}"
            )
        words = [",".join(words)]
    networks = []
    for word in words:
        try:
            sizes = tuple(int(n) for n in word.split(","))
        except ValueError:
            raise ValueError(
                f"--sizes {text}: give whole numbers, e.g. 784 16 16 10 or 784-16-16-10"
            ) from None
        problem = mnist_problem(sizes)
        if problem:
            raise ValueError(f"--sizes {layers(sizes, ' ')}: {problem}")
        networks.append(sizes)
    return networks


class SizesAction(argparse.Action):
    """``--sizes``, parsed as it is read: one network's tuple, or (``many``) a list of them."""

    def __init__(self, *args: Any, many: bool = False, **kwargs: Any) -> None:
        self.many = many
        super().__init__(*args, **kwargs)

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, *_: Any) -> None:
        try:
            networks = parse_sizes(values)
        except ValueError as e:
            parser.error(str(e))
        if not self.many and len(networks) > 1:
            parser.error(
                f"--sizes {' '.join(values)}: train.py trains one network; "
                "scripts/sweep.py trains several"
            )
        setattr(namespace, self.dest, networks if self.many else networks[0])


# --- the flags, each defined once ---------------------------------------------------------

ACTIVATION_HELP = "the hidden layers' activation; the output layer is sigmoid either way"
INIT_HELP = "gaussian: N(0, 1) as network.py; scaled: N(0, 1/n_in) as network2.py"


def add_sizes_flag(parser: Parser, many: bool) -> None:
    what = (
        "layer sizes of each network, input first: 784-16-16-10 784-30-10 (or 784 16 16 10 for one)"
        if many
        else "neurons per layer, input first: 784 16 16 10 or 784-16-16-10"
    )
    default = [DEFAULTS.sizes] if many else DEFAULTS.sizes
    parser.add_argument(
        "--sizes", nargs="+", action=SizesAction, many=many, default=default,
        help=f"{what} (default: %(default)s)",
    )  # fmt: skip


def add_model_flags(parser: Parser, many: bool = False) -> None:
    """--sizes, --init, --activation, --backprop: train.py's, and for the sweep (``many``)
    grid axes taking one value or several."""
    add_sizes_flag(parser, many)
    nargs = "+" if many else None

    def axis(value: Any) -> Any:
        return [value] if many else value

    parser.add_argument(
        "--init", choices=INITS, nargs=nargs, default=axis(DEFAULTS.init),
        help=f"{INIT_HELP} (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--activation", choices=ACTIVATIONS, nargs=nargs, default=axis(DEFAULTS.activation),
        help=f"{ACTIVATION_HELP} (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--backprop", choices=BACKPROPS, default=DEFAULTS.backprop,
        help="gradients by autograd or by the hand-written BP1-BP4 (default: %(default)s)",
    )  # fmt: skip


def add_data_flags(parser: Parser, from_run: bool = False) -> None:
    """--data-dir and --no-download; ``from_run``: the script reads a run, whose own data
    folder is the default."""
    where = "the run's own, else " if from_run else ""
    parser.add_argument(
        "--data-dir", default=DATA_DIR,
        help=f"folder with MNIST/raw, downloaded there if missing (default: {where}%(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--no-download", action="store_true", help="never download; fail if files are missing"
    )


def add_val_size_flag(parser: Parser) -> None:
    parser.add_argument(
        "--val-size", type=count_or_fraction, default=DEFAULTS.val_size,
        help="validation images: the last ones of the training file, a count or a fraction; "
        "the book's split holds out 10000 (default: %(default)s)",
    )  # fmt: skip


def add_num_threads_flag(parser: Parser, default: int, why: str) -> None:
    parser.add_argument(
        "--num-threads", type=positive_int, default=default,
        help=f"CPU threads for torch; {why} (default: %(default)s)",
    )  # fmt: skip


def add_logging_flags(parser: Parser, name_default: str = "") -> None:
    parser.add_argument(
        "--logdir", default=LOGDIR, help="TensorBoard folder (default: %(default)s)"
    )
    parser.add_argument("--name", default=name_default, help="runs go to LOGDIR/NAME/version_N")


def add_resume_flag(parser: Parser, what: str) -> None:
    parser.add_argument(
        "--resume", default=None,
        help=f"'last' (the newest {what} under --logdir/--name) or its folder",
    )  # fmt: skip


def add_accelerator_flag(parser: Parser, default: str = "auto") -> None:
    parser.add_argument(
        "--accelerator", choices=["cpu", "gpu", "auto"], default=default,
        help="where to compute; auto: a GPU if there is one (default: %(default)s)",
    )  # fmt: skip


def add_device_flags(parser: Parser, devices_default: str, devices_help: str) -> None:
    """--accelerator, --devices, --num-nodes, --strategy, --precision, --max-epochs: shared by
    train.py and sweep.py."""
    add_accelerator_flag(parser)
    parser.add_argument(
        "--devices", default=devices_default, help=f"{devices_help} (default: %(default)s)"
    )
    parser.add_argument(
        "--num-nodes", type=positive_int, default=1,
        help="machines, each running --devices processes (under torchrun: its --nnodes; "
        "default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--strategy", default="auto", help="Lightning strategy, e.g. ddp (default: %(default)s)"
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=DEFAULTS.precision,
        help="float bits; 64 reproduces the book's float64 arithmetic (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--max-epochs", type=positive_int, default=DEFAULTS.max_epochs,
        help="epochs in all; a resumed run keeps its own unless this is given "
        "(default: %(default)s)",
    )  # fmt: skip


def add_checkpoint_flag(parser: Parser) -> None:
    """--checkpoint (a file, a run's folder, or best / last of the newest run) and --logdir,
    where best and last are looked for."""
    parser.add_argument(
        "--checkpoint", required=True,
        help="a .ckpt written by train.py, a run's folder (its last.ckpt), 'best' or 'last' "
        "(the newest run's under --logdir), or a network saved in the book's network2 JSON",
    )  # fmt: skip
    parser.add_argument(
        "--logdir", default=LOGDIR,
        help="where --checkpoint best or last finds the newest run (default: %(default)s)",
    )  # fmt: skip


# --- the scripts' parsers -----------------------------------------------------------------


def train_parser() -> Parser:
    parser = Parser(
        usage="%(prog)s [options]  (see --help)",
        description="Train the 784-16-16-10 sigmoid network on MNIST by mini-batch SGD.",
    )
    add_device_flags(
        parser, "1",
        "processes, one device each: a count, or auto (every GPU); with several, --batch-size "
        "is per process and the global mini-batch is batch size x devices",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=positive_int, default=DEFAULTS.batch_size,
        help="mini-batch size m (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--lr", type=float, default=DEFAULTS.lr, help="learning rate η (default: %(default)s)"
    )
    add_model_flags(parser)
    parser.add_argument(
        "--seed", type=int, default=DEFAULTS.seed,
        help="draws the initial weights and each epoch's order (default: %(default)s)",
    )  # fmt: skip
    add_data_flags(parser)
    add_val_size_flag(parser)
    parser.add_argument(
        "--steps-per-chunk", type=positive_int, default=DEFAULTS.steps_per_chunk,
        help="SGD steps per Lightning step (default: about 1,000 samples' worth)",
    )  # fmt: skip
    add_logging_flags(parser)
    add_num_threads_flag(parser, TRAIN_THREADS, "at batch 10 one is as fast as two")
    parser.add_argument(
        "--check-gradients-every", type=non_negative_int,
        default=DEFAULTS.check_gradients_every,
        help="every N SGD steps, log autograd vs manual gradients to TensorBoard; 0: never "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--images-every", type=non_negative_int, default=IMAGES_EVERY,
        help="write weight pictures, mistakes, confusion matrix and histograms to TensorBoard "
        "every N epochs; 0: never (default: %(default)s)",
    )  # fmt: skip
    add_resume_flag(parser, "run; --max-epochs counts from the run's start")
    parser.add_argument(
        "--fast-dev-run", action="store_true",
        help="one chunk of training and one batch of evaluation, nothing saved",
    )  # fmt: skip
    return parser


def evaluate_parser() -> Parser:
    parser = Parser(
        description="Test a saved network again: correct images and a per-digit table.",
    )
    add_checkpoint_flag(parser)
    add_data_flags(parser, from_run=True)
    parser.add_argument(
        "--split", choices=["test", "val"], default="test",
        help="test, or val: the run's own validation images (default: %(default)s)",
    )  # fmt: skip
    add_accelerator_flag(parser, default="cpu")
    parser.add_argument(
        "--projector", action="store_true",
        help="also write the hidden layers' activations of the split's images for "
        "TensorBoard's PROJECTOR tab (beside the run's logs)",
    )  # fmt: skip
    return parser


def sweep_parser() -> Parser:
    """sweep.py's flags: the grid's axes take one value or several; the rest are train.py's."""
    from mlp_digits.sweep.grid import PRESETS  # plain data: no torch

    parser = Parser(
        usage="%(prog)s [options]  (see --help)",
        description="Train every combination of the listed values at once, stack by stack.",
    )
    parser.add_argument(
        "--seeds", nargs="+", default=[SWEEP_SEEDS],
        help="seeds and ranges, e.g. 0-19 25 (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--lr", type=float, nargs="+", default=[DEFAULTS.lr],
        help="learning rates η (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=positive_int, nargs="+", default=[DEFAULTS.batch_size],
        help="mini-batch sizes m (default: %(default)s)",
    )  # fmt: skip
    add_model_flags(parser, many=True)
    parser.add_argument(
        "--preset", choices=list(PRESETS), default=None,
        help="a ready-made grid, in place of --sizes, --lr, --activation and --init",
    )  # fmt: skip
    add_device_flags(
        parser, "auto",
        "processes: each trains its share of the networks; auto: one per GPU, or one on the "
        "CPU using every core",
    )  # fmt: skip
    add_data_flags(parser)
    add_val_size_flag(parser)
    add_logging_flags(parser, name_default="sweep")
    add_num_threads_flag(parser, os.cpu_count() or 1, "a stack of networks uses them all")
    parser.add_argument(
        "--export", type=int, default=None,
        help="network K (the first column of results.csv) to write as a DigitsMLP checkpoint "
        "(default: the best by validation)",
    )  # fmt: skip
    add_resume_flag(parser, "sweep")
    return parser


# --- checks that need more than one flag, or the machine ----------------------------------


def check_accelerator(parser: argparse.ArgumentParser, accelerator: str) -> None:
    """--accelerator gpu on a machine without one: one line, exit 2 (in every script)."""
    if accelerator != "gpu":
        return
    import torch

    if not torch.cuda.is_available():
        parser.error("--accelerator gpu: this machine has no CUDA GPU; use --accelerator cpu")


def check_train_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks of train.py's flags that need more than one flag, or the machine; each failure
    is parser.error (exit 2)."""
    problem = lr_problem(args.lr, args.precision)
    if problem:
        parser.error(problem)
    check_device_args(parser, args)


def check_device_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--accelerator, --strategy, --devices against this machine and Lightning (else exit 2)."""
    check_accelerator(parser, args.accelerator)
    if args.devices != "auto" and not (args.devices.isdigit() and int(args.devices) >= 1):
        parser.error(f"--devices {args.devices}: give a number of devices (1, 2, ...) or auto")
    import torch
    from lightning.fabric.plugins.environments import TorchElasticEnvironment
    from lightning.pytorch.strategies import StrategyRegistry

    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if args.strategy not in strategies:
        parser.error(f"--strategy {args.strategy} is not one of: {', '.join(strategies)}")
    gpus = torch.cuda.device_count() if uses_gpu(args.accelerator) else None
    if gpus is not None and args.devices.isdigit() and int(args.devices) > gpus:
        parser.error(
            f"--devices {args.devices}: this machine has {gpus} GPU{'s' * (gpus != 1)}; "
            f"give --devices {gpus} or fewer"
        )
    if TorchElasticEnvironment.detect():  # torchrun started this process, and the others
        started, per_node = int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_WORLD_SIZE"])
        if processes(args) != started:
            parser.error(
                f"--devices {args.devices} --num-nodes {args.num_nodes}: torchrun started "
                f"{started} processes, {per_node} per node; give --devices {per_node} "
                f"--num-nodes {started // per_node}"
            )


def uses_gpu(accelerator: str) -> bool:
    """Whether ``--accelerator`` means the GPU on this machine (auto: if there is one)."""
    import torch

    return accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())


def processes(args: argparse.Namespace) -> int:
    """The run's processes: --devices on each of --num-nodes machines (Lightning's "auto"
    devices: every GPU, or one process on the CPU)."""
    if str(args.devices).isdigit():
        devices = int(args.devices)
    else:
        import torch

        devices = torch.cuda.device_count() if uses_gpu(args.accelerator) else 1
    return devices * args.num_nodes


def parse_train_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """train.py's flags, checked (a mistake is one line and exit 2), with ``args.given``."""
    parser = train_parser()
    args = parser.parse_args(argv)
    check_train_args(parser, args)
    return args


def parse_evaluate_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = evaluate_parser()
    args = parser.parse_args(argv)
    check_accelerator(parser, args.accelerator)
    return args


def run(main: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Call ``main(args)``; a data problem becomes one line on stderr and exit status 1.

    A reader that stops early (``| head -2``) closes the pipe: that ends the output quietly,
    as it does for any command-line tool, not in a BrokenPipeError traceback.
    """
    from mlp_digits.data import DataError

    try:
        status = main(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here at the latest
        return status
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_status", 1)  # 2 for a flag's file of the wrong kind
    except BrokenPipeError:
        # Python flushes stdout again at exit; pointing it at devnull keeps that quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, the status of a tool the pipe stopped

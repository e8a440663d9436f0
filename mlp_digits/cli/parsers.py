"""Each script's parser, and the parse that checks what needs more than one flag."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from mlp_digits.cli.checks import check_accelerator, check_train_args
from mlp_digits.cli.flags import (
    add_accelerator_flag,
    add_checkpoint_flag,
    add_data_flags,
    add_device_flags,
    add_logging_flags,
    add_model_flags,
    add_num_threads_flag,
    add_resume_flag,
    add_val_size_flag,
)
from mlp_digits.cli.parser import Parser, non_negative_int, positive_float, positive_int
from mlp_digits.config import (
    CHECK_TIMEOUT,
    DATA_DIR,
    DEFAULTS,
    IMAGES_EVERY,
    PAGE_TEST_DIGITS,
    PAGE_TRAIN_DIGITS,
    SWEEP_SEEDS,
    TRAIN_THREADS,
)


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


def predict_parser() -> Parser:
    parser = Parser(
        description="Predict the digit in each image file; show the ten output activations."
    )
    add_checkpoint_flag(parser)
    parser.add_argument(
        "--json", action="store_true",
        help="print a JSON list of {file, prediction, activations} instead of the charts",
    )  # fmt: skip
    parser.add_argument("images", nargs="+", help="image files, each with one digit")
    return parser


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, got {text}")
    return value


def draw_parser() -> Parser:
    parser = Parser(description="Write a web page to draw digits and watch the network read them.")
    add_checkpoint_flag(parser)
    parser.add_argument("--output", help="the HTML file (default: beside the checkpoint, .html)")
    parser.add_argument(
        "--data-dir",
        help="folder with MNIST/raw, for the page's real test digits (default: the run's own, "
        f"else {DATA_DIR})",
    )
    parser.add_argument(
        "--train-digits", type=non_negative_int, metavar="N",
        help="training digits in the page for Train it here: the first N of the book's 50,000; "
        f"0: no Train it here (default: {PAGE_TRAIN_DIGITS}, or all the data has if fewer)",
    )  # fmt: skip
    parser.add_argument(
        "--test-digits", type=non_negative_int, metavar="N",
        help="test digits the page measures its accuracy on "
        f"(default: {PAGE_TEST_DIGITS}, or all the data has if fewer)",
    )  # fmt: skip
    parser.add_argument(
        "--serve", type=port, metavar="PORT",
        help="serve the page on http://127.0.0.1:PORT/ until Ctrl-C (for a remote machine)",
    )  # fmt: skip
    parser.add_argument("--no-open", action="store_true", help="do not open a browser")
    return parser


def export_parser() -> Parser:
    parser = Parser(description="Write a trained network as the book's network2.py saves one.")
    add_checkpoint_flag(parser)
    parser.add_argument(
        "--format", choices=["network2"], default="network2",
        help="network2: the JSON of network2.py's save() and load() (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--output", required=True, help="the JSON file to write, e.g. net.json")
    return parser


def check_backprop_parser() -> Parser:
    parser = Parser(
        description="Check a learner's Network class (feedforward, BP1-BP4, update_mini_batch)."
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="learners' Python files to check")
    parser.add_argument(
        "--json", action="store_true",
        help='one line per file: {"passed": ..., "checks": [...]}, in the order given',
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=positive_float, default=CHECK_TIMEOUT,
        help="seconds for each file before it is stopped (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--template", metavar="FILE", default=None,
        help="write a starter file (the equations left as TODOs) to FILE, then check any FILEs",
    )  # fmt: skip
    return parser

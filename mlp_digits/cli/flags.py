"""The flags that several scripts share, each defined once, with its default from
``config``."""

from __future__ import annotations

from typing import Any

from mlp_digits.cli.parser import Parser, SizesAction, count_or_fraction, positive_int
from mlp_digits.config import (
    ACTIVATIONS,
    BACKPROPS,
    DATA_DIR,
    DEFAULTS,
    INITS,
    LOGDIR,
    PRECISIONS,
)

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

"""Watch it think, and learn: draw a digit in the browser and see every layer of a trained
network light up; then watch backpropagation's errors, take gradient-descent steps, and train
the network in the page with the book's equations.

Writes one self-contained HTML page (weights, digits, script and style inline; it fetches
nothing) and opens it in the default browser when there is a display.

To run:
    python scripts/draw.py --checkpoint lightning_logs/version_0/checkpoints/last.ckpt
    python scripts/draw.py --checkpoint model.ckpt --output digits.html --no-open
    python scripts/draw.py --checkpoint model.ckpt --serve 8000   # then ssh -L 8000:127.0.0.1:8000
    python scripts/draw.py --checkpoint model.ckpt --train-digits 10000 --test-digits 1000
"""

from __future__ import annotations

import argparse
import sys

from mlp_digits import cli
from mlp_digits.page.draw import N_TEST, N_TRAIN, show, write_page


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Write a web page to draw digits and watch the network read them.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a .ckpt written by scripts/train.py, or a network in the book's network2 JSON",
    )
    p.add_argument("--output", help="the HTML file (default: beside the checkpoint, .html)")
    p.add_argument(
        "--data-dir",
        help="folder with MNIST/raw, for the page's real test digits (default: the run's own)",
    )
    p.add_argument(
        "--train-digits",
        type=cli.non_negative_int,
        metavar="N",
        help="training digits in the page for Train it here: the first N of the book's 50,000 "
        f"(default: {N_TRAIN}, or all the data has if fewer; 0: no Train it here)",
    )
    p.add_argument(
        "--test-digits",
        type=cli.non_negative_int,
        metavar="N",
        help="test digits the page measures its accuracy on "
        f"(default: {N_TEST}, or all the data has if fewer)",
    )
    p.add_argument(
        "--serve",
        type=port,
        metavar="PORT",
        help="serve the page on http://127.0.0.1:PORT/ until Ctrl-C (for a remote machine)",
    )
    p.add_argument("--no-open", action="store_true", help="do not open a browser")
    return p


def main(args: argparse.Namespace) -> int:
    """Write the page (a digit count the data lacks: exit 2), print its path, show it."""
    path = write_page(
        args.checkpoint,
        args.output,
        args.data_dir,
        warn=lambda line: print(line, file=sys.stderr, flush=True),
        n_train=args.train_digits,
        n_test=args.test_digits,
    )
    print(path, flush=True)
    show(path, args.serve, open_browser=not args.no_open)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, parser().parse_args()))

"""Watch it think, and learn: draw a digit in the browser and see every layer of a trained
network light up; then watch backpropagation's errors, take gradient-descent steps, and train
the network in the page with the book's equations.

Writes one self-contained HTML page (weights, digits, script and style inline; it fetches
nothing) and opens it in the default browser when there is a display.

To run:
    python scripts/draw.py --checkpoint best      # the newest run's best epoch
    python scripts/draw.py --checkpoint model.ckpt --output digits.html --no-open
    python scripts/draw.py --checkpoint model.ckpt --serve 8000   # then ssh -L 8000:127.0.0.1:8000
    python scripts/draw.py --checkpoint net.json --train-digits 10000 --test-digits 1000
"""

import argparse
import sys

from mlp_digits import cli


def main(args: argparse.Namespace) -> int:
    """Write the page (a digit count the data lacks: exit 2), print its path, show it."""
    from mlp_digits.lightning.runs import checkpoint_path
    from mlp_digits.page.draw import show, write_page

    path = write_page(
        checkpoint_path(args.checkpoint, args.logdir),
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
    args = cli.draw_parser().parse_args()  # before torch loads: --help answers at once
    sys.exit(cli.run(main, args))

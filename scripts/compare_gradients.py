"""Check the hand-written backpropagation (BP1-BP4) against autograd and finite differences.

One mini-batch, one table: a row per parameter tensor, then PASS or FAIL (exit status 0 or 1).

To run:
    python scripts/compare_gradients.py                            # random batch, fresh network
    python scripts/compare_gradients.py --dtype float32            # the same in float32
    python scripts/compare_gradients.py --activation relu --seed 1 # another network, ReLU
    python scripts/compare_gradients.py --data-dir data            # the first 10 MNIST test images
    python scripts/compare_gradients.py --checkpoint best          # a trained network, its data
"""

from __future__ import annotations

import argparse
import sys

from mlp_digits import cli
from mlp_digits.gradcheck_cli import check, check_args, parser


def main(args: argparse.Namespace) -> int:
    return check(args)


if __name__ == "__main__":
    p = parser()
    args = p.parse_args()  # before torch loads: --help answers at once
    check_args(p, args)
    sys.exit(cli.run(main, args))

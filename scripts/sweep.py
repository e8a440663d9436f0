"""Train many networks at once: every combination of the listed values, each network the
scripts/train.py run with the same flags (up to rounding).

To run:
    python scripts/sweep.py --seeds 0-19 --lr 0.1 0.3 1 3 10 --sizes 784-16-16-10 784-30-10
    python scripts/sweep.py --preset chapter1      # the book's chapter-1 table, 5 seeds each
    python scripts/sweep.py --resume last          # go on after Ctrl-C
    tensorboard --logdir lightning_logs/sweep/version_0/tensorboard
"""

import sys

from mlp_digits import cli

if __name__ == "__main__":
    parser = cli.sweep_parser()  # before Lightning loads: --help and typos answer at once
    args = parser.parse_args()
    from mlp_digits.sweep import run as sweep

    sweep.check_args(parser, args)
    sys.exit(cli.run(sweep.run, args))

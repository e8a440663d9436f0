"""Test a saved model again: the test line of train.py and the accuracy of every digit.

To run:
    python scripts/evaluate.py --checkpoint lightning_logs/version_0/checkpoints/last.ckpt
"""

import sys

from mlp_digits import cli
from mlp_digits.lightning.training import evaluate

if __name__ == "__main__":
    args = cli.evaluate_parser().parse_args()
    args.given = cli.given_flags(cli.evaluate_parser)  # else the run's own data folder
    sys.exit(cli.run(evaluate, args))

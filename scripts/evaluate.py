"""Test a saved model again: the test line of train.py and the accuracy of every digit.

To run:
    python scripts/evaluate.py --checkpoint best       # the newest run's best epoch
    python scripts/evaluate.py --checkpoint lightning_logs/version_0/checkpoints/last.ckpt
"""

import sys

from mlp_digits import cli

if __name__ == "__main__":
    args = cli.parse_evaluate_args()  # before Lightning loads: --help answers at once
    from mlp_digits.lightning.evaluation import evaluate

    sys.exit(cli.run(evaluate, args))

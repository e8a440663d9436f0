"""Train the 784-16-16-10 network on MNIST, test it, and log everything to TensorBoard.

To run:
    python scripts/train.py                      # 30 epochs, eta 3.0, batch 10: the book's run
    python scripts/train.py --accelerator gpu    # the same on a GPU
    tensorboard --logdir lightning_logs
"""

import sys

from mlp_digits import cli

if __name__ == "__main__":
    args = cli.parse_train_args()  # before Lightning loads: --help and typos answer at once
    from mlp_digits.lightning.training import train

    sys.exit(cli.run(train, args))

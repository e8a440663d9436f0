"""Write a trained network in the book's format, for network2.py's load() (and back here).

network2.py's save() JSON: {"sizes", "weights" (n_out rows of n_in), "biases" (columns),
"cost": "QuadraticCost"}. A ReLU network, or one whose weights are no longer numbers, is
refused: the format's neurons are all σ, and JSON has no NaN.

To run:
    python scripts/export.py --checkpoint best --output net.json
    python scripts/export.py --checkpoint lightning_logs/version_0/checkpoints/last.ckpt \\
        --format network2 --output net.json
    # then, in the book's code: net = network2.load("net.json")
"""

from __future__ import annotations

import argparse
import sys

from mlp_digits import cli


def main(args: argparse.Namespace) -> int:
    from mlp_digits.book_format import save_model  # torch loads after the flags are parsed
    from mlp_digits.config import layers
    from mlp_digits.lightning import runs
    from mlp_digits.page.predict import load_model

    model = load_model(runs.checkpoint_path(args.checkpoint, args.logdir))
    save_model(model, args.output)
    print(f"{args.output}: {layers(model.hparams.sizes)}, the book's {args.format} format")
    return 0


if __name__ == "__main__":
    args = cli.export_parser().parse_args()  # before torch loads: --help answers at once
    sys.exit(cli.run(main, args))

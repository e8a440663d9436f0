"""Read handwritten digits from image files with a trained network, and show its output layer.

Any picture will do (PNG, JPEG, ...; any size; dark ink on light paper or light on dark): it is
converted as MNIST's images were (see mlp_digits.page.predict), upright as the photo's
EXIF orientation says, before the network sees it.

To run:
    python scripts/predict.py --checkpoint lightning_logs/version_0/checkpoints/last.ckpt seven.png
    python scripts/predict.py --checkpoint model.ckpt --json *.png     # for other programs
"""

from __future__ import annotations

import argparse
import json
import sys

from mlp_digits import cli
from mlp_digits.page.predict import format_results, load_model, predict_files


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Predict the digit in each image file; show the ten output activations.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a .ckpt written by scripts/train.py, or a network in the book's network2 JSON",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of {file, prediction, activations} instead of the charts",
    )
    p.add_argument("images", nargs="+", help="image files, each with one digit")
    return p


def main(args: argparse.Namespace) -> int:
    results = predict_files(load_model(args.checkpoint), args.images)
    print(json.dumps(results, indent=2) if args.json else format_results(results))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, parser().parse_args()))

"""Read handwritten digits from image files with a trained network, and show its output layer.

Any picture will do (PNG, JPEG, ...; any size; dark ink on light paper or light on dark): it is
converted as MNIST's images were (see mlp_digits.page.predict), upright as the photo's
EXIF orientation says, before the network sees it.

To run:
    python scripts/predict.py --checkpoint best seven.png        # the newest run's best epoch
    python scripts/predict.py --checkpoint model.ckpt --json *.png     # for other programs
    python scripts/predict.py --checkpoint net.json seven.png    # a network in the book's JSON
"""

import argparse
import json
import sys

from mlp_digits import cli


def main(args: argparse.Namespace) -> int:
    from mlp_digits.lightning.runs import checkpoint_path
    from mlp_digits.page.predict import format_results, load_model, predict_files

    model = load_model(checkpoint_path(args.checkpoint, args.logdir))
    results = predict_files(model, args.images)
    print(json.dumps(results, indent=2) if args.json else format_results(results))
    return 0


if __name__ == "__main__":
    args = cli.predict_parser().parse_args()  # before torch loads: --help answers at once
    sys.exit(cli.run(main, args))

"""Check a learner's own backprop, equation by equation: which of BP1-BP4 is wrong, and how.

FILE is a Python file with the book's class Network(sizes): weights and biases lists of
NumPy arrays, feedforward(a), backprop(x, y) returning (nabla_b, nabla_w), and
update_mini_batch(mini_batch, eta). Exit status 0 when every check passes, 1 when one fails,
2 when a file cannot be checked; with several files, the worst of theirs.

To run:
    python scripts/check_backprop.py network.py              # one file, a report to read
    python scripts/check_backprop.py submissions/*.py --json # one JSON object a line, in order
    python scripts/check_backprop.py --template exercise.py  # a starter file to hand out
"""

from __future__ import annotations

import argparse
import sys

from mlp_digits import cli


def main(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    from mlp_digits import exercise

    if not args.files and args.template is None:
        p.error("give a learner's file to check, or --template FILE for a starter file")
    if args.template is not None:
        try:
            path = exercise.write_template(args.template)
        except FileExistsError:
            p.error(f"--template {args.template}: the file exists; give a new name")
        except OSError as e:
            p.error(f"--template {args.template}: {e.strerror}")
        print(f"wrote {path}: fill in its TODOs, then: python {sys.argv[0]} {path}")
    if not args.files:
        return 0
    from mlp_digits.exercise.files import check_files

    return check_files(args.files, args.json, args.timeout)


if __name__ == "__main__":
    p = cli.check_backprop_parser()
    args = p.parse_args()  # before torch loads: --help answers at once
    sys.exit(cli.run(lambda a: main(a, p), args))

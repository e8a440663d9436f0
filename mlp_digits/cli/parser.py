"""The parser every script uses: flags spelt out, a near miss suggested, ``args.given``
known from the one parse, and the values that need more than a type (``--sizes``)."""

from __future__ import annotations

import argparse
import copy
import difflib
import math
import re
from collections.abc import Sequence
from typing import Any

from mlp_digits.config import (
    N_INPUTS,
    layers,
    mnist_problem,
)


class Formatter(argparse.HelpFormatter):
    """Defaults shown as they are typed: ``784-16-16-10``, ``0.1 0.3``, not Python's repr."""

    def _expand_help(self, action: argparse.Action) -> str:
        default = action.default
        if isinstance(default, tuple | list):
            shown = [layers(v) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float)
                     else str(v) for v in default]  # fmt: skip
            if default and all(isinstance(v, int) for v in default):  # one network's sizes
                shown = [layers(default)]
            action = copy.copy(action)
            action.default = " ".join(shown)
        return super()._expand_help(action)


class Given:
    """Mixed into every action of a ``Parser``: a flag's action runs only when it is given."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, *rest: Any) -> None:
        namespace.given.add(self.dest)  # type: ignore[attr-defined]
        super().__call__(parser, namespace, *rest)  # type: ignore[misc]


class Parser(argparse.ArgumentParser):
    """argparse, with ``args.given``: the flags the command line set (as ``dest`` names)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(allow_abbrev=False, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if not isinstance(action, Given | argparse._HelpAction):
            action.__class__ = type(f"Given{type(action).__name__}", (Given, type(action)), {})
        return action

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        namespace = namespace or argparse.Namespace()
        namespace.given = getattr(namespace, "given", set())
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        super().error(message + self.suggestion(message))

    def suggestion(self, message: str) -> str:
        """'; did you mean --max-epochs?' for a misspelt flag or choice, else ''."""
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            flags = [word for word in unknown[1].split() if word.startswith("--")]
            known = list(self._option_string_actions)
            for flag in flags:
                close = difflib.get_close_matches(flag.split("=")[0], known, n=2, cutoff=0.6)
                if close:
                    return f"; did you mean {' or '.join(close)}?"
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice[2])
            close = difflib.get_close_matches(choice[1], options, n=1, cutoff=0.5)
            if close:
                return f"; did you mean {close[0]}?"
        return ""


# --- value types --------------------------------------------------------------------------


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def count_or_fraction(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a count or a fraction above 0, got {text}")
    return int(value) if value >= 1 and value.is_integer() else value


def parse_sizes(tokens: Sequence[str]) -> list[tuple[int, ...]]:
    """``--sizes`` in any of its forms: ``784 16 16 10`` (one network), ``784,16,16,10
    784,30,10`` or ``784-16-16-10 784-30-10`` (a network per word). ValueError with one
    sentence for a bad value, or for plain numbers that look like several networks."""
    text = " ".join(tokens)
    if re.search(r",\s|\s,", text) or text.startswith(",") or text.endswith(","):
        joined = re.sub(r"\s*,\s*", ",", text.strip(" ,"))
        raise ValueError(
            f"--sizes {text}: no spaces around the commas; write one network as {joined}"
        )
    words = [w.replace("-", ",") for w in text.split()]
    if all("," not in w for w in words):
        starts = [i for i, w in enumerate(words) if i > 0 and w == str(N_INPUTS)]
        if starts:  # an input size after the output size: several networks run together
            parts = [words[a:b] for a, b in zip([0, *starts], [*starts, len(words)])]
            commas = " ".join(",".join(p) for p in parts)
            raise ValueError(
                f"--sizes {text}: this reads as one network of {len(words)} layers; for "
                f"several networks write each as one word: {commas}"
            )
        words = [",".join(words)]
    networks = []
    for word in words:
        try:
            sizes = tuple(int(n) for n in word.split(","))
        except ValueError:
            raise ValueError(
                f"--sizes {text}: give whole numbers, e.g. 784 16 16 10 or 784-16-16-10"
            ) from None
        problem = mnist_problem(sizes)
        if problem:
            raise ValueError(f"--sizes {layers(sizes, ' ')}: {problem}")
        networks.append(sizes)
    return networks


class SizesAction(argparse.Action):
    """``--sizes``, parsed as it is read: one network's tuple, or (``many``) a list of them."""

    def __init__(self, *args: Any, many: bool = False, **kwargs: Any) -> None:
        self.many = many
        super().__init__(*args, **kwargs)

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, *_: Any) -> None:
        try:
            networks = parse_sizes(values)
        except ValueError as e:
            parser.error(str(e))
        if not self.many and len(networks) > 1:
            parser.error(
                f"--sizes {' '.join(values)}: train.py trains one network; "
                "scripts/sweep.py trains several"
            )
        setattr(namespace, self.dest, networks if self.many else networks[0])

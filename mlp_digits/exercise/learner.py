"""Calling a learner's ``Network``: their instance built and set to the checker's weights, each
call's result or the line of their file that raised, and the shapes checked.

An exception of theirs is one line, ``file:line: the source line — ExceptionType: message``,
from the innermost frame of their file in its traceback: never a traceback of ours. A
``SystemExit`` in their code is an exception like any other here; ``KeyboardInterrupt``
still stops the checker.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("feedforward", "backprop", "update_mini_batch")
LINE_LIMIT = 100  # characters of a source line or a message shown


class Uncheckable(Exception):
    """The file cannot be checked at all (no class, a method missing, weights of another
    shape); the message is one sentence saying what was found."""


@dataclass(frozen=True)
class Outcome:
    """What one call of the learner's code gave: its value, or ``error`` (one line), and the
    learner's functions the exception passed through (innermost last)."""

    value: Any = None
    error: str | None = None
    through: tuple[str, ...] = ()


def shortened(text: str, limit: int = LINE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shape_of(value: Any) -> str:
    """A value's shape as the learner would print it, or its type if it has none."""
    try:
        return str(np.shape(value))
    except Exception:  # ragged lists, objects NumPy cannot look at
        return type(value).__name__


def describe(
    error: BaseException, filename: str, display: str, call: str
) -> tuple[str, tuple[str, ...]]:
    """One line for an exception raised by the learner's code in ``filename`` (shown as
    ``display``), and the functions of theirs it passed through, innermost last."""
    ours = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if os.path.realpath(frame.filename) == os.path.realpath(filename)
    ]
    message = shortened(str(error).splitlines()[0] if str(error).strip() else "")
    what = f"{type(error).__name__}: {message}" if message else type(error).__name__
    if not ours:  # raised by the call itself, e.g. a wrong number of arguments
        return f"{call}: {what}", ()
    frame, line = ours[-1], (ours[-1].line or "").strip()
    place = f"{display}:{frame.lineno}"
    through = tuple(f.name for f in ours)
    if message and message in line:  # raise NotImplementedError("TODO ..."): said once
        return f"{place}: {what}", through
    return f"{place}: {shortened(line)} — {what}", through


class Learner:
    """A learner's ``Network`` class, the file it is written in, and how to call it.

    ``display`` names the file in messages (the path as given); ``progress``, if given, hears
    each call before it is made (a child process writes it down, so that a call that never
    returns can be named).
    """

    def __init__(
        self,
        cls: type,
        filename: str,
        display: str,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.cls, self.display = cls, display
        self.filename = os.path.realpath(filename)
        self.progress = progress or (lambda call: None)
        missing = [name for name in METHODS if not callable(getattr(cls, name, None))]
        if missing:
            raise Uncheckable(
                f"class Network has no {' or '.join(missing)} method; the checker calls "
                f"{', '.join(METHODS)}"
            )

    def describe(self, error: BaseException, call: str) -> tuple[str, tuple[str, ...]]:
        return describe(error, self.filename, self.display, call)

    def call(self, call: str, method: Callable[..., Any], *args: Any) -> Outcome:
        """``method(*args)``, its value or the line that raised."""
        self.progress(call)
        try:
            return Outcome(method(*args))
        except (Exception, SystemExit) as e:
            error, through = self.describe(e, call)
            return Outcome(error=error, through=through)

    def build(self, sizes: Sequence[int]) -> Any:
        """``Network(sizes)``, its weights and biases checked to be the book's shapes."""
        outcome = self.call(f"Network({list(sizes)})", self.cls, list(sizes))
        if outcome.error:
            raise Uncheckable(f"Network({list(sizes)}) raises: {outcome.error}")
        net = outcome.value
        for name, shapes in (
            ("weights", [(n_out, n_in) for n_in, n_out in zip(sizes[:-1], sizes[1:])]),
            ("biases", [(n_out, 1) for n_out in sizes[1:]]),
        ):
            check_shapes(net, name, shapes, sizes)
        return net

    def set_parameters(
        self, net: Any, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]
    ) -> None:
        """The checker's weights and biases on the learner's instance, fresh copies."""
        net.weights = [w.copy() for w in weights]
        net.biases = [b.copy() for b in biases]


def check_shapes(net: Any, name: str, shapes: list[tuple[int, int]], sizes: Sequence[int]) -> None:
    """Uncheckable unless ``net.<name>`` is a list of arrays of the book's ``shapes``."""
    built = f"Network({list(sizes)})"
    value = getattr(net, name, None)
    if value is None:
        raise Uncheckable(f"{built} has no {name}: the book's network keeps a list of them")
    try:
        found = [np.shape(v) for v in value]
    except Exception:
        raise Uncheckable(f"{built}.{name} is not a list of NumPy arrays") from None
    if len(found) != len(shapes):
        raise Uncheckable(
            f"{built}.{name} has {len(found)} entries; {len(sizes)} layers need {len(shapes)}"
        )
    for k, (got, want) in enumerate(zip(found, shapes)):
        if got != want:
            what = "(n_out, n_in)" if name == "weights" else "a column (n_out, 1)"
            hint = " (transposed)" if got == want[::-1] and name == "weights" else ""
            raise Uncheckable(
                f"{built}.{name}[{k}] has shape {got}{hint}; the book's is {what} = {want}"
            )

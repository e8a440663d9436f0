"""A learner's own ``Network`` graded equation by equation: which of BP1–BP4 is wrong.

    from mlp_digits import exercise
    exercise.check(Network)            # a class, in this process (a notebook, a course's test)
    exercise.check("network.py")       # a file, in a child process with a time limit
    exercise.save(net, "net.json")     # a trained network, for the page and evaluate.py

The learner's class is the book's: ``Network(sizes)`` with ``weights`` (n_out, n_in) and
``biases`` (n_out, 1) lists of NumPy arrays, ``feedforward(a)``, ``backprop(x, y)`` returning
``(nabla_b, nabla_w)`` for one example given as columns (or, the chapter-2 exercise, for a
mini-batch X (784, m), Y (10, m), summed), and ``update_mini_batch(mini_batch, eta)``. The
checker sets the weights itself, calls each method, and compares with the project's BP1–BP4
in float64 (``mlp_digits.backprop``, refereed by finite differences). The report's checks
are feedforward, BP1, BP2, BP3, BP4 and update_mini_batch, each with the first layer that
fails, the mistake's id when it is a known one (``MISTAKES``), and whether it fails only as
a consequence of an earlier one.

Modules: ``problem`` (the checker's networks and the right answers' shapes), ``reference``
(the right answers, the one module that imports torch), ``variants`` (the known mistakes),
``learner`` (calling the learner's code), ``layers`` (BP1–BP4 layer by layer), ``grading``
(every check, and the square network), ``report``, ``child`` (a file in a child process),
``files`` (several files, as ``scripts/check_backprop.py`` prints them), ``template``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlp_digits.config import CHECK_TIMEOUT
from mlp_digits.exercise.report import CHECKS, Check, Report
from mlp_digits.exercise.template import write_template
from mlp_digits.exercise.variants import MISTAKES

__all__ = ["CHECKS", "MISTAKES", "Check", "Report", "check", "save", "write_template"]


def save(net: object, path: str | os.PathLike) -> None:
    """Write ``net`` (any object with the book's ``weights`` and ``biases`` lists of NumPy
    arrays, a learner's own ``Network`` say) as network2.py's ``save()`` does: then
    ``evaluate.py``, ``predict.py`` and ``draw.py`` open it with ``--checkpoint FILE.json``."""
    from mlp_digits.book_format import save as save_network2

    save_network2(net, path)


def check(network: type | str | os.PathLike, timeout: float | None = None) -> Report:
    """The report of a learner's ``Network`` class, or of the file that defines it.

    A class is checked in this process (an endless loop of theirs is yours to interrupt); a
    file in a child process, stopped after ``timeout`` seconds (default ``config.CHECK_TIMEOUT``).
    """
    from mlp_digits.exercise import child, grading
    from mlp_digits.exercise.reference import references

    if isinstance(network, str | os.PathLike):
        return child.run_file(network, references(), timeout or CHECK_TIMEOUT)
    method = getattr(network, "backprop", None)
    filename = getattr(getattr(method, "__code__", None), "co_filename", "<unknown>")
    return grading.grade_class(network, references(), filename, Path(filename).name)

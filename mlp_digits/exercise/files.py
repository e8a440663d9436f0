"""Learners' files checked one after another, as ``scripts/check_backprop.py`` prints them:
each report as text, or (``as_json``) one JSON object per line, in the order of the files."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from mlp_digits.config import CHECK_TIMEOUT
from mlp_digits.exercise.child import run_file
from mlp_digits.exercise.report import Report


def check_files(
    paths: Sequence[str | os.PathLike], as_json: bool = False, timeout: float = CHECK_TIMEOUT
) -> int:
    """Check and print each file; the exit status is the worst of theirs: 0 every check of
    every file passed, 1 a check failed, 2 a file cannot be checked."""
    from mlp_digits.exercise.reference import references  # torch: once, for every file

    refs = references()
    status = 0
    for i, path in enumerate(paths):
        report: Report = run_file(path, refs, timeout)
        if as_json:
            print(json.dumps(report.to_json(), ensure_ascii=False), flush=True)
        else:
            print(("\n" if i and report.error is None else "") + str(report), flush=True)
        status = max(status, report.status)
    return status

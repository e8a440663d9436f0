"""Where runs are, and which run or checkpoint a flag names.

A run lives in ``LOGDIR/NAME/version_N`` with its checkpoints in ``checkpoints/``:
``last.ckpt`` and ``best-epoch=E-val_accuracy=A.ckpt``. The flags that name one:

    --resume last | RUN_FOLDER | FILE.ckpt                 the run to go on with
    --checkpoint best | last | RUN_FOLDER | FILE           what a script reads

``last`` and ``best`` are the newest run's (the highest N under the folder).
"""

from __future__ import annotations

import os
from pathlib import Path

from mlp_digits.data import DataError


def versions(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """The ``version_N`` folders under ``root``, by N."""
    found = []
    for path in Path(root).glob("version_*"):
        number = path.name.removeprefix("version_")
        if number.isdigit() and path.is_dir():
            found.append((int(number), path))
    return sorted(found)


def newest_run(root: str | os.PathLike, flag: str) -> Path:
    """The newest run folder under ``root`` that has a ``checkpoints/last.ckpt``; else a
    one-line DataError that names ``flag``."""
    runs = [path for _, path in versions(root) if (path / "checkpoints" / "last.ckpt").is_file()]
    if not runs:
        raise DataError(
            f"{flag}: no run with checkpoints/last.ckpt under {root}; train one first "
            "(scripts/train.py), or give a checkpoint's path"
        )
    return runs[-1]


def best_checkpoint(run: Path, flag: str) -> Path:
    """The run's ``best-*.ckpt``: the first epoch of its highest validation accuracy."""
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))
    if len(best) != 1:
        raise DataError(
            f"{flag}: {run / 'checkpoints'} holds {len(best)} best-*.ckpt files, not one; "
            "give the checkpoint's path"
        )
    return best[0]


def checkpoint_path(text: str, logdir: str | os.PathLike, flag: str = "--checkpoint") -> Path:
    """The file that ``--checkpoint TEXT`` names: ``best`` or ``last`` of the newest run under
    ``logdir``, a run's folder (its last.ckpt), or a file."""
    if text in ("best", "last"):
        run = newest_run(logdir, f"{flag} {text}")
        return best_checkpoint(run, f"{flag} {text}") if text == "best" else last_of(run)
    path = Path(text)
    if path.is_dir():
        if not last_of(path).is_file():
            raise DataError(f"{flag} {text}: a folder without checkpoints/last.ckpt")
        return last_of(path)
    return path


def last_of(run: Path) -> Path:
    return run / "checkpoints" / "last.ckpt"


def run_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint belongs to (``version_N/checkpoints/x.ckpt``), if any."""
    folder = checkpoint.parent.parent
    in_run = checkpoint.parent.name == "checkpoints" and folder.name.startswith("version_")
    return folder if in_run else None


def next_version(root: str | os.PathLike) -> int:
    """The N of a new ``version_N`` under ``root``."""
    found = versions(root)
    return found[-1][0] + 1 if found else 0

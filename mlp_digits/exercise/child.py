"""A learner's file checked in a child process, so that an endless loop, a crash or a
``sys.exit`` of theirs ends in one line, and the checker goes on to the next file.

The parent (``run_file``) computes the right answers once, with torch, and hands them over in
a folder; the child (``python -m mlp_digits.exercise.child FILE FOLDER``) needs NumPy only.
It writes down each call of the learner's code before making it (``progress``), so that a
call that never returns can be named, and its report as JSON (``report.json``).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import types
from pathlib import Path

from mlp_digits.config import CHECK_TIMEOUT
from mlp_digits.exercise.grading import grade_class
from mlp_digits.exercise.learner import Uncheckable, describe
from mlp_digits.exercise.problem import Reference
from mlp_digits.exercise.report import Report

LOADING = "loading the file"


def load_network_class(path: Path, display: str) -> type:
    """The class ``Network`` of the learner's file, run as a module named ``learner`` (its
    ``if __name__ == "__main__":`` part does not run); Uncheckable with one line if not."""
    try:
        source = path.read_text(encoding="utf-8")
        code = compile(source, str(path), "exec")
    except UnicodeDecodeError:
        raise Uncheckable("not a Python file (it is not UTF-8 text)") from None
    except SyntaxError as e:
        line = (e.text or "").strip()
        raise Uncheckable(f"{display}:{e.lineno}: SyntaxError: {e.msg}: {line}") from None
    module = types.ModuleType("learner")
    module.__file__ = str(path)
    sys.modules["learner"] = module
    sys.path.append(str(path.parent))  # their own helpers, after ours
    try:
        exec(code, module.__dict__)
    except (Exception, SystemExit) as e:
        error, _ = describe(e, str(path), display, LOADING)
        does = "exits" if isinstance(e, SystemExit) else "raises"
        raise Uncheckable(
            f"the file {does} while it is loaded: {error} (put what runs the network under "
            'if __name__ == "__main__":)'
        ) from None
    cls = module.__dict__.get("Network")
    if not isinstance(cls, type):
        classes = [
            n
            for n, v in module.__dict__.items()
            if isinstance(v, type) and v.__module__ == "learner"
        ]
        found = f" (it defines {', '.join(classes)})" if classes else ""
        raise Uncheckable(
            f"no class Network in it{found}; the checker needs the book's Network(sizes)"
        )
    return cls


def check_in_child(path: Path, display: str, folder: Path) -> Report:
    """What the child does: load the file, grade its class, each call written down first."""
    progress_file = folder / "progress"

    def progress(call: str) -> None:
        progress_file.write_text(call, encoding="utf-8")

    refs: dict[str, Reference] = pickle.loads((folder / "reference.pkl").read_bytes())
    progress(LOADING)
    try:
        cls = load_network_class(path, display)
    except Uncheckable as e:
        return Report(display, error=str(e))
    return grade_class(cls, refs, str(path), display, progress)


def ended(folder: Path, returncode: int, timeout: float | None) -> str:
    """Why a child gave no report, as one line."""
    progress = folder / "progress"
    call = progress.read_text(encoding="utf-8") if progress.exists() else LOADING
    where = "while it was being loaded" if call == LOADING else f"in {call}"
    if timeout is not None:
        return f"stopped after {timeout:g} s {where}, which had not returned (an endless loop?)"
    if returncode < 0:
        what = f"killed by {signal.Signals(-returncode).name}"
    else:
        what = f"ended with exit status {returncode}"
    stderr = (folder / "stderr").read_text(encoding="utf-8", errors="replace").strip()
    last = f": {stderr.splitlines()[-1]}" if stderr else ""
    return f"the process {what} {where}{last}"


def run_file(
    path: str | os.PathLike, refs: dict[str, Reference], timeout: float = CHECK_TIMEOUT
) -> Report:
    """The report of a learner's file, checked in a child process within ``timeout`` s."""
    display, path = str(path), Path(path)
    if not path.is_file():
        return Report(display, error="no such file" if not path.exists() else "not a file")
    package_root = str(Path(__file__).resolve().parents[2])
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    }
    with tempfile.TemporaryDirectory(prefix="check_backprop_") as tmp:
        folder = Path(tmp)
        (folder / "reference.pkl").write_bytes(pickle.dumps(refs))
        command = [
            sys.executable,
            "-m",
            "mlp_digits.exercise.child",
            str(path.resolve()),
            display,
            tmp,
        ]
        with open(folder / "stderr", "wb") as stderr:
            child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env
            )
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                return Report(display, error=ended(folder, child.returncode, timeout))
        report = folder / "report.json"
        if not report.exists():
            return Report(display, error=ended(folder, child.returncode, None))
        return Report.from_dict(json.loads(report.read_text(encoding="utf-8")))


def main(argv: list[str]) -> None:
    path, display, folder = Path(argv[0]), argv[1], Path(argv[2])
    report = check_in_child(path, display, folder)
    (folder / "report.json").write_text(json.dumps(report.to_dict()), encoding="utf-8")
    sys.stdout.flush()
    os._exit(0)  # a thread the learner's file started must not keep the child alive


if __name__ == "__main__":
    main(sys.argv[1:])

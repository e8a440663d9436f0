"""Plant each mutant in a copy of the repository, one at a time, and run its tests: a bug the
tests miss "survived".

The copy's ``../shared`` links to the repository's, so the tests find the shared data as they
would here. The browser mutants (``page/draw_page.js``) need Chromium.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mutation.mutants import MUTANTS

REPO = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    "logs",
    "lightning_logs",
    "runs",
    "*.ckpt",
)


def run_tests(copy: Path, tests: tuple[str, ...], timeout: int) -> tuple[int, float]:
    """pytest on ``tests`` in the copy, its package first on the path: (exit status, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(copy)}
    start = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=copy, env=env, capture_output=True, timeout=timeout,
        )  # fmt: skip
        rc = done.returncode
    except subprocess.TimeoutExpired:
        rc = -1
    return rc, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Plant known bugs one at a time and run the tests that claim each."
    )
    parser.add_argument("-k", default="", help="only the mutants whose name contains this")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="first run each mutant's tests unmutated (they must pass)",
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per test run")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if args.k.lower() in m.name.lower()]

    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(REPO, copy, ignore=IGNORE)
        if (REPO.parent / "shared").exists():
            (Path(tmp) / "shared").symlink_to(REPO.parent / "shared")
        counts = {"planted": 0, "caught": 0, "survived": 0, "could not plant": 0}
        for mutant in mutants:
            path = copy / mutant.file
            original = path.read_text()
            if original.count(mutant.old) != 1:
                counts["could not plant"] += 1
                print(f"could not plant  {mutant.name}: the snippet is in {mutant.file} "
                      f"{original.count(mutant.old)} times", flush=True)  # fmt: skip
                continue
            if args.baseline:
                rc, _ = run_tests(copy, mutant.tests, args.timeout)
                if rc != 0:
                    counts["could not plant"] += 1
                    print(f"could not plant  {mutant.name}: its tests fail unmutated (exit {rc})")
                    continue
            path.write_text(original.replace(mutant.old, mutant.new))
            try:
                rc, seconds = run_tests(copy, mutant.tests, args.timeout)
            finally:
                path.write_text(original)
            counts["planted"] += 1
            # 1: a test failed; -1: timed out; 2-4: an error in the run (a crash is caught too).
            # 5: no test collected, which catches nothing.
            outcome = "caught" if rc not in (0, 5) else "survived"
            counts[outcome] += 1
            print(f"{outcome:<16} {mutant.name} (exit {rc}, {seconds:.0f} s)", flush=True)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 1 if counts["survived"] or counts["could not plant"] else 0

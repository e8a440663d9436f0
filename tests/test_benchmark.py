"""scripts/benchmark.py runs end to end: a quick smoke run, no timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO

WAYS = {
    "project_autograd",
    "project_manual",
    "lightning",
    "pytorch",
    "numpy",
    "tight_autograd",
    "tight_manual",
}


def test_quick_benchmark_lists_every_way_and_writes_positive_speeds(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "scripts/benchmark.py", "--quick", "--json", str(report)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(report.read_text())
    rows = data["results"]["10"]
    assert set(rows) == WAYS
    table = result.stdout
    assert "Batch size 10" in table and "samples/s" in table and "µs/step" in table
    for way, row in rows.items():
        assert row["label"] in table, f"{way} is not in the table"
        assert row["samples_per_s"] > 0 and row["us_per_step"] > 0, way
    assert data["hardware"]["torch"] and data["hardware"]["cpu"]
    assert data["checks"] and all(c["ratio"] > 0 for c in data["checks"])

"""Running ``mlp_digits.bench.ways``: rounds, batch sizes, the table, targets and JSON.

Numbers are medians over the timed epochs of every round; rounds run the ways in rotating
order, so that a change of load on a shared machine falls on all of them alike.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import statistics
import tempfile
import warnings
from argparse import Namespace
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from mlp_digits.bench.project import profile_project
from mlp_digits.bench.tight import TightLoop
from mlp_digits.bench.timing import Epoch, Settings, initial_params, training_set, warm_up
from mlp_digits.bench.ways import PROJECT_WAYS, WAYS, measure
from mlp_digits.idx import write_separable_mnist

# (batch size, way, reference, factor): the way's samples/s should be >= factor x reference's.
TARGETS = [
    (10, "project_autograd", "tight_autograd", 1.0),
    (10, "project_manual", "tight_manual", 0.8),
    (10, "project_manual", "project_autograd", 1.0),
    (10, "project_autograd", "numpy", 1.6),
    (10, "project_autograd", "lightning", 5.0),
    (10, "project_manual", "numpy", 4.0),
    (1000, "project_autograd", "tight_autograd", 0.7),
    (1000, "project_manual", "tight_manual", 0.7),
]
Results = dict[int, dict[str, dict[str, Any]]]  # batch size -> way -> numbers


def hardware(s: Settings) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(ln for ln in cpuinfo if ln.startswith("model name")).split(":", 1)[1].strip()
    info = {"cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    info |= {"torch": torch.__version__, "lightning": L.__version__, "numpy": np.__version__}
    if s.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(s.device)
    return info


def summarise(way: str, epochs: list[Epoch]) -> dict[str, Any]:
    """Medians over the epochs: samples/s, µs per SGD step, and each phase's share of time."""
    shares = {
        name: statistics.median(e.phases[name] / e.seconds for e in epochs)
        for name in epochs[0].phases
    }
    return {
        "label": WAYS[way],
        "samples_per_s": statistics.median(e.samples / e.seconds for e in epochs),
        "us_per_step": statistics.median(1e6 * e.seconds / e.steps for e in epochs),
        "phase_shares": shares,
        "epochs": [asdict(e) for e in epochs],
    }


def table(rows: dict[str, dict[str, Any]]) -> str:
    head = ["way", "samples/s", "µs/step", "× project autograd", "× project manual"]
    lines = ["{:<34} {:>10} {:>10} {:>19} {:>17}".format(*head)]
    refs = [rows.get(way, {}).get("samples_per_s") for way in PROJECT_WAYS]
    for row in rows.values():
        speed = row["samples_per_s"]
        a, m = (f"{speed / ref:.2f}" if ref else "-" for ref in refs)
        lines.append(
            f"{row['label']:<34} {speed:>10,.0f} {row['us_per_step']:>10,.1f} {a:>19} {m:>17}"
        )
    for row in rows.values():
        if row["phase_shares"]:
            shares = ", ".join(f"{share:.0%} {name}" for name, share in row["phase_shares"].items())
            lines.append(f"  {row['label']}: {shares}")
    return "\n".join(lines)


def check_targets(results: Results) -> list[dict[str, Any]]:
    checks = []
    for batch, way, ref, factor in TARGETS:
        rows = results.get(batch, {})
        if way in rows and ref in rows:
            speeds = rows[way]["samples_per_s"], rows[ref]["samples_per_s"]
            ratio = speeds[0] / speeds[1]
            checks.append(
                dict(batch_size=batch, way=way, reference=ref, target=factor)
                | dict(samples_per_s=speeds, ratio=ratio, met=ratio >= factor)
            )
    return checks


def target_line(c: dict[str, Any]) -> str:
    return (
        f"  batch {c['batch_size']}: {WAYS[c['way']]} >= {c['target']:g} × {WAYS[c['reference']]}: "
        f"{c['ratio']:.2f}× ({c['samples_per_s'][0]:,.0f} vs {c['samples_per_s'][1]:,.0f} "
        f"samples/s): {'met' if c['met'] else 'not met'}"
    )


def quiet() -> None:
    """No Lightning banners or DataLoader advice in the middle of the table."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", r".*(does not have many workers|log_every_n_steps)")


def settings(args: Namespace, data_dir: Path) -> Settings:
    return Settings(
        data_dir,
        args.val_size,
        args.batch_sizes[0],
        args.epochs,
        args.max_seconds,
        args.warmup_seconds,
        args.num_threads,
        args.accelerator,
        args.images_every,
        args.seed,
    )


def benchmark(args: Namespace, data_dir: Path, source: str) -> dict[str, Any]:
    """Every way of ``args.ways`` at every batch size: prints the tables, returns the report."""
    s = settings(args, data_dir)
    x, targets, train = training_set(s)
    info = hardware(s)
    label = (
        f"{info.get('gpu', info['cpu'])}, {s.num_threads} thread(s), torch {info['torch']}; "
        f"data: {source}, {len(x):,} train + {s.val_size:,} val (the last of the file); "
        f"project pictures every {s.images_every or 'no'} epoch(s)"
    )
    loop = TightLoop(x.to(s.device), targets.to(s.device), *initial_params(s), s.lr, 10, False)
    warm_up(loop, s.warmup_seconds)  # a new process starts slow
    results: Results = {}
    for s.batch_size in args.batch_sizes:
        timed: dict[str, list[Epoch]] = {way: [] for way in args.ways}
        for r in range(args.rounds):  # each round in another order: load shifts over time
            for way in args.ways[r % len(args.ways) :] + args.ways[: r % len(args.ways)]:
                timed[way] += measure(s, way, x, targets, train)
        rows = results[s.batch_size] = {way: summarise(way, e) for way, e in timed.items()}
        print(f"\nBatch size {s.batch_size} on {s.accelerator}: {label}")
        print(table(rows), flush=True)
    checks = check_targets(results)
    if checks:
        print(f"\nTargets, set for the CPU (this run: {s.accelerator}); a report, not a test:")
        print("\n".join(map(target_line, checks)))
    settings_ = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    data = {"source": source, "n_train": len(x), "val_size": s.val_size}
    return {"hardware": info, "data": data, "settings": settings_, "results": results} | {
        "checks": checks
    }


def profile(args: Namespace, data_dir: Path) -> None:
    """Print the top of a profile of one epoch of each project way of ``args.ways``."""
    s = settings(args, data_dir)
    for s.batch_size in args.batch_sizes:
        for way in (w for w in args.ways if w in PROJECT_WAYS):
            print(f"\n{WAYS[way]}, batch size {s.batch_size}: {args.profile} profile of one epoch")
            print(profile_project(s, way.removeprefix("project_"), args.profile), flush=True)


def main(args: Namespace) -> int:
    """The benchmark as ``scripts/benchmark.py`` runs it; writes ``args.json`` if given.

    ``args.data_dir`` None: made-up digits (``idx.separable_digits``), said in the output."""
    torch.set_num_threads(args.num_threads)
    quiet()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, source = args.data_dir, f"MNIST files in {args.data_dir}"
        if data_dir is None:
            n = args.synthetic_size + args.val_size
            data_dir, source = write_separable_mnist(tmp, n, 100), f"synthetic, {n:,} images"
            print(f"No MNIST folder given or found: timing on {source} (--data-dir DIR for MNIST)")
        if args.profile:
            profile(args, Path(data_dir))
            return 0
        report = benchmark(args, Path(data_dir), source)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0

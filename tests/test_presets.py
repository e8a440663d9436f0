"""The sweep's presets for what the videos claim: their grids, and tables computed from the
networks' own results (results.csv), never typed in."""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SHARED_MNIST, require_shared_data

from mlp_digits import cli
from mlp_digits.sweep import grid

SWEEP = [sys.executable, str(REPO / "scripts" / "sweep.py")]


def preset_grid(name: str) -> list[grid.Network]:
    return grid.build_grid(cli.sweep_parser().parse_args(["--preset", name]))


def test_the_relu_preset_trains_sigmoid_and_relu_over_several_eta_five_seeds_each() -> None:
    networks = preset_grid("relu")
    configs = {n.config for n in networks}
    assert {c.activation for c in configs} == {"sigmoid", "relu"}
    assert all(c.sizes == (784, 16, 16, 10) and c.batch_size == 10 for c in configs)
    for activation in ("sigmoid", "relu"):
        assert len({c.lr for c in configs if c.activation == activation}) >= 3
        assert {c.init for c in configs if c.activation == activation} == {"gaussian", "scaled"}
    relu_lrs = {c.lr for c in configs if c.activation == "relu"}
    assert min(relu_lrs) < min(c.lr for c in configs if c.activation == "sigmoid")
    assert all(sum(n.config == c for n in networks) == 5 for c in configs)


def test_the_video_preset_sets_the_books_defaults_beside_the_chosen_recipe() -> None:
    configs = {n.config for n in preset_grid("video")}

    def recipe(c: grid.Config) -> tuple:
        return c.sizes, c.lr, c.batch_size, c.activation, c.init

    assert ((784, 16, 16, 10), 3.0, 10, "sigmoid", "gaussian") in {recipe(c) for c in configs}
    assert len(configs) == 2 and all(c.sizes == (784, 16, 16, 10) for c in configs)
    assert grid.PRESET_EPOCHS["video"] == 60


@pytest.mark.parametrize("flag", [["--lr", "1"], ["--activation", "relu"], ["--init", "scaled"]])
def test_a_preset_with_a_flag_it_sets_says_which_wins(flag: list[str], capsys) -> None:
    parser = cli.sweep_parser()
    args = parser.parse_args(["--preset", "relu", *flag])
    with pytest.raises(ValueError, match="the preset wins: leave out " + flag[0]):
        grid.build_grid(args)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_relu_presets_tables_come_from_results_csv(tmp_path: Path) -> None:
    """One epoch on the shared 5,000 images, two seeds: every row of the ease table is its
    configuration's networks from results.csv."""
    require_shared_data(SHARED_MNIST)
    run = subprocess.run(
        [*SWEEP, "--preset", "relu", "--seeds", "0-1", "--max-epochs", "1", "--data-dir",
         str(SHARED_MNIST), "--no-download", "--val-size", "500", "--accelerator", "cpu",
         "--logdir", str(tmp_path), "--backprop", "manual"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    folder = tmp_path / "sweep" / "version_0"
    rows = read_csv(folder / "results.csv")
    text = (folder / "table.txt").read_text()
    assert text.strip() in run.stdout
    main, ease = text.split("\n\n")
    header, *lines = ease.splitlines()
    for column in ("epochs to 90%", "best val %", "test % at it", "diverged/stalled", "dead ReLU"):
        assert column in header
    configs = {(r["activation"], r["init"], float(r["lr"])) for r in rows}
    assert len(lines) == len(configs) == 14 and len(main.splitlines()) == 2 + 14

    for line in lines:
        activation = "relu" if " relu " in line else "sigmoid"
        init = "scaled" if " scaled " in line else "gaussian"
        lr = float(line.split("η=")[1].split()[0])
        group = [
            r
            for r in rows
            if (r["activation"], r["init"], float(r["lr"])) == (activation, init, lr)
        ]
        assert len(group) == 2
        fields = line.split()
        ok = [r for r in group if r["diverged"] == "False"]
        best_val = statistics.mean(float(r["val_accuracy"]) for r in ok)
        test = statistics.mean(float(r["test_accuracy"]) for r in ok)
        stalled = sum(r["diverged"] == "True" or float(r["val_accuracy"]) < 20 for r in group)
        at = fields.index("±")  # ... best val %, test mean, ±, sd, stalled, dead
        assert abs(float(fields[at - 2]) - best_val) < 0.01  # the CSV rounds to 0.01
        assert abs(float(fields[at - 1]) - test) < 0.01
        assert f"{stalled}/2" in fields
        reached = sum(float(r["val_accuracy"]) >= 90 for r in ok)
        assert f"({reached}/2)" in line
        assert (activation == "relu") == (fields[-1] != "-")  # dead ReLUs: ReLU rows only

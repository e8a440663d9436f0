"""mlp_digits.cli: the flags every script shares, defined once, in the same forms everywhere."""

from __future__ import annotations

import os

import pytest

from mlp_digits import cli
from mlp_digits.sweep import grid


@pytest.mark.parametrize("tokens", [["784", "30", "10"], ["784,30,10"]])
def test_train_takes_sizes_in_either_form(tokens: list[str]) -> None:
    args = cli.parse_train_args(["--sizes", *tokens, "--accelerator", "cpu"])
    assert args.sizes == [784, 30, 10]


@pytest.mark.parametrize("tokens", [["784", "30", "10"], ["784,30,10"]])
def test_the_sweep_takes_one_networks_sizes_in_either_form(tokens: list[str]) -> None:
    args = grid.parser().parse_args(["--sizes", *tokens, "--seeds", "0"])
    assert [n.config.sizes for n in grid.build_grid(args)] == [(784, 30, 10)]


def test_several_networks_are_comma_tokens() -> None:
    assert cli.parse_sizes(["784,30,10", "784,10"]) == [(784, 30, 10), (784, 10)]


def test_train_refuses_several_networks_in_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit:
        cli.parse_train_args(["--sizes", "784,30,10", "784,10"])
    assert exit.value.code == 2
    assert "train.py trains one network; scripts/sweep.py trains several" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("lr", "says"),
    [(0.0, "above 0"), (-1.0, "above 0"), (float("nan"), "finite"), (1e39, "float32")],
)
def test_one_check_of_eta_for_every_script(lr: float, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        cli.check_lr(lr, "32")
    cli.check_lr(1e39, "64")  # float64 holds it


def test_the_sweep_uses_every_core_by_default_and_train_py_one() -> None:
    """At batch 10 one network's matrices are too small for a second thread; a stack's are not."""
    assert grid.parser().get_default("num_threads") == os.cpu_count()
    assert cli.train_parser().get_default("num_threads") == 1

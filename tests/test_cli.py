"""mlp_digits.cli: the flags every script shares, defined once, in the same forms everywhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO

from mlp_digits import cli
from mlp_digits.sweep import grid


def refused(parse, argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """The one error line of a refused command line (after argparse's usage line)."""
    with pytest.raises(SystemExit) as exit:
        parse(argv)
    assert exit.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("usage:") and len(lines) == 2
    return lines[1]


@pytest.mark.parametrize("tokens", [["784", "30", "10"], ["784,30,10"], ["784-30-10"]])
def test_train_takes_sizes_in_every_form(tokens: list[str]) -> None:
    args = cli.parse_train_args(["--sizes", *tokens, "--accelerator", "cpu"])
    assert args.sizes == (784, 30, 10)


@pytest.mark.parametrize("tokens", [["784", "30", "10"], ["784,30,10"], ["784-30-10"]])
def test_the_sweep_takes_one_networks_sizes_in_every_form(tokens: list[str]) -> None:
    args = cli.sweep_parser().parse_args(["--sizes", *tokens, "--seeds", "0"])
    assert [n.config.sizes for n in grid.build_grid(args)] == [(784, 30, 10)]


def test_several_networks_are_one_word_each() -> None:
    assert cli.parse_sizes(["784,30,10", "784,10"]) == [(784, 30, 10), (784, 10)]
    assert cli.parse_sizes(["784-30-10", "784-10"]) == [(784, 30, 10), (784, 10)]


def test_plain_numbers_that_look_like_several_networks_are_refused_with_the_comma_form(
    capsys: pytest.CaptureFixture,
) -> None:
    sizes = ["784", "16", "10", "784", "30", "10"]
    line = refused(cli.sweep_parser().parse_args, ["--sizes", *sizes], capsys)
    assert "reads as one network of 6 layers" in line and "784,16,10 784,30,10" in line


def test_spaces_after_commas_get_a_line_about_the_commas(capsys: pytest.CaptureFixture) -> None:
    line = refused(cli.parse_train_args, ["--sizes", "784,", "16,", "10"], capsys)
    assert "no spaces around the commas" in line and "784,16,10" in line


def test_train_refuses_several_networks_in_one_line(capsys: pytest.CaptureFixture) -> None:
    line = refused(cli.parse_train_args, ["--sizes", "784,30,10", "784,10"], capsys)
    assert "train.py trains one network; scripts/sweep.py trains several" in line


def test_given_flags_are_known_from_the_one_parse() -> None:
    """A flag given with its default's value is still given; a flag left out is not."""
    args = cli.parse_train_args(["--lr", "3.0", "--no-download", "--accelerator", "cpu"])
    assert {"lr", "no_download", "accelerator"} <= args.given
    assert "batch_size" not in args.given and args.batch_size == 10


def test_a_flag_must_be_spelt_out_and_a_near_miss_is_suggested(
    capsys: pytest.CaptureFixture,
) -> None:
    line = refused(cli.parse_train_args, ["--max-epoch", "3"], capsys)
    assert "unrecognized arguments: --max-epoch 3; did you mean --max-epochs?" in line


def test_a_misspelt_choice_is_suggested(capsys: pytest.CaptureFixture) -> None:
    line = refused(cli.parse_train_args, ["--backprop", "manul"], capsys)
    assert line.endswith("did you mean manual?")


def test_the_help_shows_the_defaults_as_they_are_typed() -> None:
    text = cli.train_parser().format_help()
    assert "(default: 784-16-16-10)" in text and "(default: 3.0)" in text
    sweep = cli.sweep_parser().format_help()
    assert "(default: 0-4)" in sweep and "(default: 3)" in " ".join(sweep.split())


def test_train_py_uses_one_device_unless_told() -> None:
    """The book's run is one process: several devices would make the mini-batch 10 x N."""
    assert cli.parse_train_args(["--accelerator", "cpu"]).devices == "1"
    assert cli.sweep_parser().get_default("devices") == "auto"


def test_a_gpu_count_the_machine_lacks_is_one_line(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    line = refused(cli.parse_train_args, ["--accelerator", "gpu", "--devices", "2"], capsys)
    assert "this machine has 1 GPU; give --devices 1 or fewer" in line


def test_auto_devices_count_every_gpu_or_one_cpu_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    args = cli.sweep_parser().parse_args(["--accelerator", "auto"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.processes(args) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert cli.processes(args) == 4
    args.num_nodes = 2
    assert cli.processes(args) == 8


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "sweep.py"])
def test_a_gpu_on_a_machine_without_one_is_one_line_in_every_script(script: str) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    flags = ["--accelerator", "gpu"] + (["--checkpoint", "last"] if script == "evaluate.py" else [])
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *flags],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("--accelerator gpu: this machine has no CUDA GPU; use --accelerator cpu")
    )
    assert "Traceback" not in result.stderr


def test_the_sweep_uses_every_core_by_default_and_train_py_one() -> None:
    """At batch 10 one network's matrices are too small for a second thread; a stack's are not."""
    assert cli.sweep_parser().get_default("num_threads") == os.cpu_count()
    assert cli.train_parser().get_default("num_threads") == 1

"""End-to-end runs of scripts/train.py and scripts/evaluate.py, as a user runs them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, SHARED_MNIST, needs_shared_data
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mlp_digits import DigitsMLP, cli
from mlp_digits.data import load_mnist
from mlp_digits.lightning.training import train

SCALAR_TAGS = {
    "train/cost",
    "train/epoch_cost",
    "val/cost",
    "val/accuracy",
    "test/cost",
    "test/accuracy",
}
EPOCH_LINE = re.compile(
    r"^Epoch (\d+): (\d+) / (\d+) validation images correct \((\d+\.\d\d)%\), cost (\d\.\d{4})$",
    re.M,
)
TEST_LINE = re.compile(r"^Test: (\d+) / (\d+) correct \((\d+\.\d\d)%\)", re.M)


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), "--accelerator", "cpu", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def two_epoch_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess, Path, Path]:
    from conftest import write_mnist

    root = tmp_path_factory.mktemp("run")
    data_dir = write_mnist(root / "data")
    logdir = root / "logs"
    result = run_script(
        "train.py",
        *("--data-dir", str(data_dir), "--val-size", "100", "--max-epochs", "2"),
        *("--logdir", str(logdir), "--no-download", "--lr", "1.0"),
    )
    return result, data_dir, logdir


def test_train_exits_0_and_prints_a_line_per_epoch_and_the_test_line(two_epoch_run) -> None:
    result, _, _ = two_epoch_run
    assert result.returncode == 0, result.stderr[-2000:]
    epochs = EPOCH_LINE.findall(result.stdout)
    assert [int(e[0]) for e in epochs] == [0, 1]
    assert all(int(total) == 100 for _, _, total, _, _ in epochs)
    for _, correct, total, percent, _ in epochs:
        assert f"{100 * int(correct) / int(total):.2f}" == percent
    test = TEST_LINE.search(result.stdout)
    assert test and int(test.group(2)) == 200
    assert "tensorboard --logdir" in result.stdout


def test_the_test_line_names_the_epoch_it_tested(two_epoch_run) -> None:
    """The best epoch's checkpoint, which evaluate.py --checkpoint best reads too."""
    result, _, logdir = two_epoch_run
    (best,) = logdir.glob("version_*/checkpoints/best-*.ckpt")
    epoch = torch.load(best, weights_only=True)["epoch"]
    line = TEST_LINE.search(result.stdout)
    assert result.stdout[line.end() :].startswith(f", epoch {epoch} (the best on validation)\n")


def test_a_normal_run_prints_its_lines_and_no_framework_chatter(two_epoch_run) -> None:
    result, _, logdir = two_epoch_run
    lines = result.stdout.splitlines()
    assert [line.split(":")[0].split(",")[0] for line in lines] == [
        "Epoch 0",
        "Epoch 1",
        "Test",
        "Run",
        "View it",
    ]
    assert result.stderr == ""  # no "GPU available", "TPU available", tips or warnings


def test_event_file_holds_exactly_the_documented_scalar_tags(two_epoch_run) -> None:
    _, _, logdir = two_epoch_run
    (run_dir,) = logdir.glob("version_*")
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert set(events.Tags()["scalars"]) == SCALAR_TAGS
    # x-axis in SGD steps: 500 training images / batch 10 = 50 steps per epoch
    assert [e.step for e in events.Scalars("val/accuracy")] == [50, 100]
    assert max(e.step for e in events.Scalars("train/cost")) == 100


def test_best_checkpoint_reloads_to_the_printed_test_count(two_epoch_run) -> None:
    result, data_dir, logdir = two_epoch_run
    (best,) = logdir.glob("version_*/checkpoints/best-*.ckpt")
    assert (best.parent / "last.ckpt").is_file()
    model = DigitsMLP.load_from_checkpoint(best, map_location="cpu", weights_only=True)
    x, targets = load_mnist(data_dir, "test")
    with torch.no_grad():
        correct = int((model(x).argmax(1) == targets).sum())
    assert f"Test: {correct} / 200 correct" in result.stdout


def test_evaluate_prints_the_same_test_count_and_a_per_digit_table(two_epoch_run) -> None:
    result, data_dir, logdir = two_epoch_run
    (best,) = logdir.glob("version_*/checkpoints/best-*.ckpt")
    evaluated = run_script("evaluate.py", "--checkpoint", str(best), "--data-dir", str(data_dir))
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert TEST_LINE.search(evaluated.stdout).groups() == TEST_LINE.search(result.stdout).groups()
    assert f"Checkpoint: {best} (epoch " in evaluated.stdout
    rows = re.findall(r"^\s+(\d)\s+(\d+) /\s+(\d+)", evaluated.stdout, re.M)
    assert [int(r[0]) for r in rows] == list(range(10))
    assert sum(int(r[2]) for r in rows) == 200


def test_missing_data_is_one_line_and_exit_1(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    result = run_script(
        "train.py", "--data-dir", str(tmp_path), "--no-download", "--logdir", str(logdir)
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: MNIST is not in")
    assert not logdir.exists()  # a run that never started has no run folder


def run_in_process(capsys, *flags: str) -> str:
    args = cli.train_parser().parse_args(list(flags))
    assert train(args) == 0
    return capsys.readouterr().out


def test_learning_happens_on_separable_digits(tmp_path: Path, tiny_mnist: Path, capsys) -> None:
    out = run_in_process(
        capsys,
        *("--data-dir", str(tiny_mnist), "--val-size", "100", "--max-epochs", "10"),
        *("--logdir", str(tmp_path / "logs"), "--no-download"),
    )
    last = EPOCH_LINE.findall(out)[-1]
    assert int(last[1]) / int(last[2]) >= 0.90


@needs_shared_data(SHARED_MNIST)
def test_three_epochs_on_real_mnist_reach_60_percent(tmp_path: Path, capsys) -> None:
    out = run_in_process(
        capsys,
        *("--data-dir", str(SHARED_MNIST), "--val-size", "500", "--max-epochs", "3"),
        *("--logdir", str(tmp_path / "logs"), "--no-download"),
    )
    correct, total, _ = TEST_LINE.search(out).groups()
    assert int(total) == 10_000 and int(correct) >= 6_000

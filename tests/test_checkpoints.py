"""The best checkpoint (``SaveCheckpoints``): after several epochs whose validation accuracy
rises, stalls and ties, the one ``best-*.ckpt`` is the first epoch of the highest printed
accuracy, train.py tests with that file, and a resumed run keeps the earlier best.

Planted bugs these tests catch (see scripts/mutation_test.py):
- the best chosen as the lowest accuracy (``mode="min"``: ``score < self.best_score``);
- a tie replacing the earlier best (``score >= self.best_score``);
- the earlier best file kept beside the new one;
- train.py testing the last checkpoint instead of the best;
- a resumed run forgetting the best so far (``load_state_dict`` ignored).
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import write_mnist

from mlp_digits import cli
from mlp_digits.data import load_mnist
from mlp_digits.lightning import training

EPOCH_LINE = re.compile(r"^Epoch (\d+): (\d+) / (\d+) validation images correct", re.M)


@pytest.fixture(scope="module")
def data_300(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 training images: 260 to train on and 40 to validate, 50 test images."""
    return write_mnist(tmp_path_factory.mktemp("d300"), n_train=300, n_test=50)


def train(data_dir: Path, logdir: Path, *extra: str) -> None:
    """train.py's main in this process: η = 30 makes the validation counts of these 8 epochs
    5, 10, 10, 15, 15, 18, 18, 18 of 40 (a rise, ties, and a plateau at the top)."""
    args = cli.parse_train_args(
        ["--data-dir", str(data_dir), "--val-size", "40", "--no-download", "--lr", "30",
         "--logdir", str(logdir), "--accelerator", "cpu", "--images-every", "0", *extra]
    )  # fmt: skip
    assert training.train(args) == 0


def printed_counts(out: str) -> dict[int, int]:
    """{epoch: validation images correct} from the printed epoch lines."""
    return {int(e): int(c) for e, c, _ in EPOCH_LINE.findall(out)}


def first_best(counts: dict[int, int]) -> int:
    """The epoch of the highest count; of equal ones, the first."""
    return max(sorted(counts), key=lambda e: (counts[e], -e))


def count_read_right(path: Path, data_dir: Path) -> int:
    """How many test images the checkpoint's weights read right: σ(W a + b) in float64 NumPy."""
    state = torch.load(path, weights_only=True)["state_dict"]
    x, targets = load_mnist(data_dir, "test")
    a = x.double().numpy()
    for l in range(3):
        w, b = state[f"layers.{l}.weight"].double().numpy(), state[f"layers.{l}.bias"].numpy()
        a = 1 / (1 + np.exp(-(a @ w.T + b)))
    return int((a.argmax(1) == targets.numpy()).sum())


def best_files(logdir: Path) -> list[Path]:
    return sorted((logdir / "version_0" / "checkpoints").glob("best-*.ckpt"))


def test_the_best_checkpoint_is_the_first_epoch_of_the_highest_printed_accuracy(
    data_300: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train(data_300, tmp_path, "--max-epochs", "8")
    counts = printed_counts(capsys.readouterr().out)
    assert sorted(counts) == list(range(8))
    best = first_best(counts)
    # The run is one that tells the bugs apart: the best is neither the first epoch (the
    # lowest) nor the last, and a later epoch ties it.
    assert 0 < best < 7 and counts[0] < counts[best] and counts[7] == counts[best]

    (path,) = best_files(tmp_path)  # the only best file: earlier ones are gone
    assert path.name == f"best-epoch={best}-val_accuracy={counts[best] / 40:.4f}.ckpt"
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == best
    assert saved["sgd_steps"] == (best + 1) * 26  # 260 images in mini-batches of 10


def test_train_py_tests_the_best_checkpoint(
    data_300: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    tested = []
    real_test = L.Trainer.test

    def spy(self, *args, **kwargs):
        tested.append(kwargs.get("ckpt_path"))
        return real_test(self, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "test", spy)
    train(data_300, tmp_path, "--max-epochs", "8")
    out = capsys.readouterr().out
    (path,) = best_files(tmp_path)
    assert [Path(p) for p in tested] == [path]
    assert f"(best: {path.name}," in out
    printed = int(re.search(r"^Test: (\d+) / 50 correct", out, re.M)[1])
    assert printed == count_read_right(path, data_300)


def test_a_resumed_run_keeps_the_earlier_best_against_later_ties(
    data_300: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Six epochs, then two more: epochs 6 and 7 tie epoch 5's count, which stays the best."""
    train(data_300, tmp_path, "--max-epochs", "6")
    first = printed_counts(capsys.readouterr().out)
    (before,) = best_files(tmp_path)
    assert before.name.startswith(f"best-epoch={first_best(first)}-")

    train(data_300, tmp_path, "--resume", "last", "--max-epochs", "8")
    later = printed_counts(capsys.readouterr().out)
    assert sorted(later) == [6, 7]
    counts = first | later
    assert max(later.values()) == max(first.values())  # ties: a forgotten best would move
    (after,) = best_files(tmp_path)
    assert after == before
    assert torch.load(after, weights_only=True)["epoch"] == first_best(counts)

"""The best checkpoint (``SaveCheckpoints``): after several epochs whose validation accuracy
rises, stalls and ties, the one ``best-*.ckpt`` is the first epoch of the highest printed
accuracy, train.py tests with that file, and a resumed run keeps the earlier best.

The validation counts are scripted (``SCRIPTED_COUNTS``), not taken from a trajectory: the
real run trains and saves, but the count that the checkpoint rule sees at epoch E is
``SCRIPTED_COUNTS[E]``, so rises, ties and a plateau happen at the same epochs on any CPU.

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
from mlp_digits.lightning.model import DigitsMLP

EPOCH_LINE = re.compile(r"^Epoch (\d+): (\d+) / (\d+) validation images correct", re.M)
N_VAL = 40
# Validation images read right at epochs 0-7: a rise, a tie at 1-2 and 3-4, the highest
# count first reached at epoch 5 and tied by every later epoch.
SCRIPTED_COUNTS = (5, 10, 10, 15, 15, 18, 18, 18)
BEST_EPOCH = 5  # the first epoch of the highest count


@pytest.fixture(scope="module")
def data_300(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 training images: 260 to train on and 40 to validate, 50 test images."""
    return write_mnist(tmp_path_factory.mktemp("d300"), n_train=300, n_test=50)


@pytest.fixture
def scripted_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Epoch E's validation reads ``SCRIPTED_COUNTS[E]`` of the 40 images right: the model's
    confusion matrix is replaced by one with that count on its diagonal, before the model
    logs ``val/accuracy`` and ``val/correct`` from it (the cost stays the real one)."""
    real_end = DigitsMLP.end_evaluation

    def end_evaluation(self: DigitsMLP, stage: str) -> None:
        if stage == "val":
            correct = SCRIPTED_COUNTS[self.current_epoch]
            confusion = torch.zeros(10, 10, dtype=torch.long)
            confusion[0, 0], confusion[0, 1] = correct, N_VAL - correct
            self.val_confusion.compute = lambda: confusion
        real_end(self, stage)

    monkeypatch.setattr(DigitsMLP, "end_evaluation", end_evaluation)


def train(data_dir: Path, logdir: Path, *extra: str) -> None:
    """train.py's main in this process, on the 300 images."""
    args = cli.parse_train_args(
        ["--data-dir", str(data_dir), "--val-size", str(N_VAL), "--no-download",
         "--logdir", str(logdir), "--accelerator", "cpu", "--images-every", "0", *extra]
    )  # fmt: skip
    assert training.train(args) == 0


def printed_counts(out: str) -> dict[int, int]:
    """{epoch: validation images correct} from the printed epoch lines."""
    return {int(e): int(c) for e, c, _ in EPOCH_LINE.findall(out)}


def count_read_right(path: Path, data_dir: Path) -> int:
    """How many test images the checkpoint's weights read right: σ(W a + b) in float64 NumPy."""
    state = torch.load(path, weights_only=True)["state_dict"]
    x, targets = load_mnist(data_dir, "test")
    a = x.double().numpy()
    for l in range(3):
        w, b = state[f"layers.{l}.weight"].double().numpy(), state[f"layers.{l}.bias"].numpy()
        a = 1 / (1 + np.exp(-(a @ w.T + b)))
    return int((a.argmax(1) == targets.numpy()).sum())


def checkpoints(logdir: Path) -> Path:
    return logdir / "version_0" / "checkpoints"


def best_files(logdir: Path) -> list[Path]:
    return sorted(checkpoints(logdir).glob("best-*.ckpt"))


def same_weights(a: Path, b: Path) -> bool:
    sa, sb = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_best_checkpoint_is_the_first_epoch_of_the_highest_printed_accuracy(
    data_300: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], scripted_validation: None
) -> None:
    train(data_300, tmp_path, "--max-epochs", "8")
    counts = printed_counts(capsys.readouterr().out)
    assert counts == dict(enumerate(SCRIPTED_COUNTS))  # the lines print what the rule saw

    (path,) = best_files(tmp_path)  # the only best file: earlier ones are gone
    assert path.name == f"best-epoch={BEST_EPOCH}-val_accuracy={18 / N_VAL:.4f}.ckpt"
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == BEST_EPOCH
    assert saved["sgd_steps"] == (BEST_EPOCH + 1) * 26  # 260 images in mini-batches of 10
    assert not same_weights(path, checkpoints(tmp_path) / "last.ckpt")  # epoch 7's


def test_train_py_tests_the_best_checkpoint(
    data_300: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, scripted_validation: None,
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
    data_300: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], scripted_validation: None
) -> None:
    """Six epochs, then two more: epochs 6 and 7 tie epoch 5's count, which stays the best."""
    train(data_300, tmp_path, "--max-epochs", "6")
    assert printed_counts(capsys.readouterr().out) == dict(enumerate(SCRIPTED_COUNTS[:6]))
    (before,) = best_files(tmp_path)
    assert before.name.startswith(f"best-epoch={BEST_EPOCH}-")
    assert same_weights(before, checkpoints(tmp_path) / "last.ckpt")  # epoch 5 was the last

    train(data_300, tmp_path, "--resume", "last", "--max-epochs", "8")
    later = printed_counts(capsys.readouterr().out)
    assert later == {6: SCRIPTED_COUNTS[6], 7: SCRIPTED_COUNTS[7]}
    (after,) = best_files(tmp_path)
    assert after == before
    assert torch.load(after, weights_only=True)["epoch"] == BEST_EPOCH

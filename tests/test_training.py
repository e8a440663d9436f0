"""The training layer pinned: chunks, resume, curves, evaluation, DDP and stops, each against
an independent replay of plain SGD: the book's NumPy network.py (``book``) over an epoch order
written in conftest (``epoch_order``), never the ``backprop`` or ``EpochPermutation`` under
test.

Planted bugs these tests catch (scripts/mutation_test.py plants them):
- an epoch permutation that ignores the seed, or the epoch (the replays' own order differs);
- the live gradient check (``--check-gradients-every``) with the weight and bias tags
  swapped, the absolute difference logged instead of the relative, or autograd compared with
  autograd (a planted difference per tensor; a nonzero float32 rounding);
- the averaged DDP gradient summed instead.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import REPO, StopAfter, epoch_order, write_mnist
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mlp_digits import backprop as bp
from mlp_digits import book, cli
from mlp_digits.config import DEFAULT_SIZES
from mlp_digits.data import load_mnist
from mlp_digits.lightning.chunked import NonFiniteCost
from mlp_digits.lightning.training import build_run
from mlp_digits.network import initial_parameters

CPU = ("--accelerator", "cpu")


def parse(data_dir: Path, logdir: Path, *extra: str, val_size: int = 100):
    return cli.parse_train_args(
        ["--data-dir", str(data_dir), "--val-size", str(val_size), "--no-download",
         "--logdir", str(logdir), *CPU, *extra]
    )  # fmt: skip


def fit(args, *callbacks: L.Callback):
    run = build_run(args, extra_callbacks=callbacks)
    run.trainer.fit(run.model, datamodule=run.datamodule, ckpt_path=run.ckpt_path)
    return run


def weights(run) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def replay(data_dir: Path, val_size: int, seed: int, batch: int, epochs: int, lr: float = 3.0,
           world_size: int = 1) -> tuple[list[torch.Tensor], list[float]]:  # fmt: skip
    """Plain SGD by the book's NumPy network.py (float64), over ``epoch_order``: the reference.

    With ``world_size`` processes each epoch's permutation is cut to a multiple of it, and
    a global mini-batch is ``batch`` consecutive images of what is left.
    """
    weights, biases = initial_parameters(DEFAULT_SIZES, "gaussian", seed)
    net = book.Network([w.numpy() for w in weights], [b.numpy() for b in biases])
    x, targets = load_mnist(data_dir, "train")
    images, labels = x[:-val_size].double().numpy(), targets[:-val_size].numpy()
    costs = []
    for epoch in range(epochs):
        order = epoch_order(len(images), seed, epoch)
        order = order[: len(order) // world_size * world_size]
        for idx in order.split(batch):
            idx = idx.numpy()
            a = net.feedforward(images[idx].T)
            y = np.eye(10)[labels[idx]].T
            costs.append(float(((a - y) ** 2).sum() / (2 * len(idx))))
            net.update_mini_batch(book.examples(images[idx], labels[idx]), lr)
    params = []
    for w, b in zip(net.weights, net.biases):
        params += [torch.from_numpy(w), torch.from_numpy(b.reshape(-1))]
    return params, costs


def scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    (run_dir,) = logdir.glob("version_*")
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def data_601(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """601 training images: 501 to train on, an odd number, and 100 to validate."""
    return write_mnist(tmp_path_factory.mktemp("d601"), n_train=601, n_test=50)


# --- chunks and steps ----------------------------------------------------------------------


def test_one_update_per_lightning_step_and_the_default_chunk_give_the_same_weights(
    data_601: Path, tmp_path: Path
) -> None:
    """501 images in mini-batches of 7: 71 full ones and a short one of 4, each epoch. Seed 5,
    not 0: an epoch order that ignores the seed (seeds it as 0) is a different order."""
    flags = ("--max-epochs", "2", "--batch-size", "7", "--seed", "5")
    one = fit(parse(data_601, tmp_path / "one", *flags, "--steps-per-chunk", "1"))
    chunked = fit(parse(data_601, tmp_path / "chunk", *flags))
    assert one.model.sgd_steps == chunked.model.sgd_steps == 2 * 72
    a, b = weights(one), weights(chunked)
    assert all(torch.equal(a[k], b[k]) for k in a)
    expected, _ = replay(data_601, 100, seed=5, batch=7, epochs=2)
    for p, e in zip(chunked.model.parameters(), expected):
        assert (p.double() - e).abs().max() < 1e-4  # float32 against the float64 replay


@pytest.mark.parametrize("stop_after", [1, 36, 71, 72, 100])
def test_a_run_stopped_after_any_step_resumes_to_the_weights_of_a_straight_run(
    data_601: Path, tmp_path: Path, stop_after: int
) -> None:
    flags = ("--max-epochs", "2", "--batch-size", "7", "--steps-per-chunk", "5")
    straight = fit(parse(data_601, tmp_path / "straight", *flags))

    logdir = tmp_path / "stopped"
    with pytest.raises(Exception, match="SIGINT"):
        fit(parse(data_601, logdir, *flags), StopAfter(stop_after))
    saved = torch.load(logdir / "version_0/checkpoints/last.ckpt", weights_only=True)
    assert stop_after <= saved["sgd_steps"] < stop_after + 5 + 5  # at the end of a chunk

    resumed = fit(parse(data_601, logdir, "--resume", "last"))
    assert resumed.model.sgd_steps == straight.model.sgd_steps == 144
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stop_at_an_epochs_last_step_validates_that_epoch_first(
    data_601: Path, tmp_path: Path
) -> None:
    """Stopped at the end of epoch 0's training (step 72), the run still validates epoch 0
    before it stops, and the resumed run validates epoch 1: every epoch once."""
    flags = ("--max-epochs", "3", "--batch-size", "7", "--steps-per-chunk", "36")
    with pytest.raises(Exception, match="SIGINT"):
        fit(parse(data_601, tmp_path, *flags), StopAfter(71))  # asked at step 71, stops at 72
    saved = torch.load(tmp_path / "version_0/checkpoints/last.ckpt", weights_only=True)
    assert (saved["sgd_steps"], saved["epochs_done"]) == (72, 1)
    assert [step for step, _ in scalars(tmp_path)["val/accuracy"]] == [72]

    fit(parse(data_601, tmp_path, "--resume", "last"))
    assert [step for step, _ in scalars(tmp_path)["val/accuracy"]] == [72, 144, 216]


# --- curves --------------------------------------------------------------------------------


def test_train_cost_every_100_steps_is_the_mean_of_those_steps(
    data_601: Path, tmp_path: Path
) -> None:
    """501 images at batch 10: 51 steps an epoch; a point every 100 steps and at each epoch's
    end, each the mean cost of the steps since the previous point."""
    fit(parse(data_601, tmp_path, "--max-epochs", "5", "--images-every", "0"))
    _, costs = replay(data_601, 100, seed=0, batch=10, epochs=5)
    points = scalars(tmp_path)["train/cost"]
    assert [step for step, _ in points] == [51, 102, 153, 204, 255]
    previous = 0
    for step, value in points:
        expected = sum(costs[previous:step]) / (step - previous)
        assert value == pytest.approx(expected, rel=1e-5)
        previous = step


GRAD_CHECK_TAGS = [f"grad_check/rel_error/layers.{l}.{kind}" for kind in ("weight", "bias")
                   for l in range(3)]  # fmt: skip
# A planted relative difference per tensor, each its own: weights 1%, 2%, 3%; biases 0.4%,
# 0.5%, 0.6%.
PLANTED = dict(zip(GRAD_CHECK_TAGS, [0.01, 0.02, 0.03, 0.004, 0.005, 0.006]))


def plant_in_manual_backprop(monkeypatch: pytest.MonkeyPatch) -> None:
    """BP1-BP4's gradients (``backprop.backward``) scaled by 1 + ε, a known ε per tensor: the
    check must then log ε under that tensor's tag."""
    real = bp.backward
    eps = list(PLANTED.values())

    def scaled(*args, **kwargs):
        nabla_w, nabla_b = real(*args, **kwargs)
        return ([g * (1 + e) for g, e in zip(nabla_w, eps[:3])],
                [g * (1 + e) for g, e in zip(nabla_b, eps[3:])])  # fmt: skip

    monkeypatch.setattr(bp, "backward", scaled)


def test_check_gradients_every_logs_float32_rounding_nonzero_and_below_1e_5(
    data_601: Path, tmp_path: Path
) -> None:
    """Manual against autograd in float32 differ by rounding only: not 0 (autograd compared
    with itself gives exactly 0), and far below 1e-5. Training stays on autograd."""
    fit(parse(data_601, tmp_path, "--max-epochs", "1", "--check-gradients-every", "7"))
    curves = scalars(tmp_path)
    tags = sorted(t for t in curves if t.startswith("grad_check/rel_error/"))
    assert tags == sorted(GRAD_CHECK_TAGS)
    for tag in tags:
        assert [step for step, _ in curves[tag]] == list(range(7, 51 + 1, 7))
        assert all(0 < value < 1e-5 for _, value in curves[tag]), tag


def test_check_gradients_every_logs_a_planted_difference_under_its_own_tag(
    data_601: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planted bugs caught: the weight and bias tags swapped (1-3% against 0.4-0.6%), the
    absolute error logged instead of the relative (ε‖∇‖, and these ‖∇‖ are 0.03-0.5), and
    autograd compared with autograd (0)."""
    plant_in_manual_backprop(monkeypatch)
    fit(parse(data_601, tmp_path, "--max-epochs", "1", "--check-gradients-every", "7"))
    curves = scalars(tmp_path)
    for tag, eps in PLANTED.items():
        assert [step for step, _ in curves[tag]] == list(range(7, 51 + 1, 7))
        for _, value in curves[tag]:
            assert value == pytest.approx(eps, abs=1e-5), tag


# --- evaluation ----------------------------------------------------------------------------


def test_evaluate_split_val_scores_the_runs_own_validation_images(
    data_601: Path, tmp_path: Path
) -> None:
    fit(parse(data_601, tmp_path, "--max-epochs", "1", val_size=150))
    ckpt = tmp_path / "version_0/checkpoints/last.ckpt"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "evaluate.py"), "--checkpoint", str(ckpt),
         "--data-dir", str(data_601), "--no-download", "--split", "val", *CPU],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    correct = int(re.search(r"^Validation: (\d+) / 150 correct", result.stdout, re.M)[1])

    state = torch.load(ckpt, weights_only=True)["state_dict"]
    x, targets = load_mnist(data_601, "train")
    a = x[-150:].double()  # the last 150 images of the training file
    for l in range(3):
        w, b = state[f"layers.{l}.weight"].double(), state[f"layers.{l}.bias"].double()
        a = 1 / (1 + torch.exp(-(a @ w.T + b)))
    assert correct == int((a.argmax(1) == targets[-150:]).sum())


# --- resume settings -----------------------------------------------------------------------


def test_a_float64_run_resumes_in_float64_with_its_own_settings(
    data_601: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fit(parse(data_601, tmp_path, "--max-epochs", "1", "--precision", "64", "--lr", "2.0"))
    capsys.readouterr()
    resumed = fit(parse(data_601, tmp_path, "--resume", "last", "--max-epochs", "2",
                        "--lr", "0.5"))  # fmt: skip
    out = capsys.readouterr().out
    assert "The run's own settings replace --lr 0.5 (run: 2.0)" in out
    assert resumed.model.lr == 2.0 and resumed.model.sgd_steps == 2 * 51
    saved = torch.load(tmp_path / "version_0/checkpoints/last.ckpt", weights_only=True)
    assert all(t.dtype == torch.float64 for t in saved["state_dict"].values())
    assert saved["settings"]["precision"] == "64"


# --- stops ---------------------------------------------------------------------------------


class BreakAtEpoch(L.Callback):
    """An infinite η from the start of epoch 1: the weights become ±inf, the cost NaN."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 1:
            pl_module.lr = float("inf")


def test_a_non_finite_cost_after_checkpoints_exist_leaves_every_checkpoint_finite(
    data_601: Path, tmp_path: Path
) -> None:
    with pytest.raises(NonFiniteCost, match=r"at step 5[2-9]|at step 6\d"):
        fit(parse(data_601, tmp_path, "--max-epochs", "3"), BreakAtEpoch())
    saved = sorted(tmp_path.glob("**/*.ckpt"))
    assert len(saved) == 2 and saved[1].name == "last.ckpt"
    assert saved[0].name.startswith("best-epoch=0-")
    for path in saved:
        checkpoint = torch.load(path, weights_only=True)
        assert checkpoint["sgd_steps"] == 51
        assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


# --- several processes ---------------------------------------------------------------------


class SaveRankWeights(L.Callback):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.save(pl_module.state_dict(), self.folder / f"rank{trainer.global_rank}.pt")


@pytest.mark.parametrize("backprop", ["autograd", "manual"])
@pytest.mark.parametrize("val_size", [101, 100])  # 500 training images, and 501
def test_ddp_two_processes_at_batch_b_equal_one_process_at_batch_2b(
    data_601: Path, tmp_path: Path, backprop: str, val_size: int
) -> None:
    """The ranks' mean gradients are averaged, not summed: two processes at batch 5 take the
    steps of one at batch 10, over the epoch's order cut to an even number of images."""
    ddp = ("--devices", "2", "--strategy", "ddp_spawn", "--batch-size", "5", "--precision", "64")
    args = parse(data_601, tmp_path, "--max-epochs", "2", "--backprop", backprop, *ddp,
                 val_size=val_size)  # fmt: skip
    fit(args, SaveRankWeights(tmp_path))
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    expected, _ = replay(data_601, val_size, seed=0, batch=10, epochs=2, world_size=2)
    names = [f"layers.{l}.{kind}" for l in range(3) for kind in ("weight", "bias")]
    for name, e in zip(names, expected):
        assert torch.equal(rank0[name], rank1[name]), name
        assert (rank0[name] - e).abs().max() < 1e-6, name

"""mlp_digits.lightning.chunked: the SGD-step count and the curves, also across a resume.

Lightning has no optimizer here (the steps are ``sgd.sgd_step``'s): the count of SGD steps and
the costs of the epoch so far live in the model and travel in its checkpoints. The reference
for a resumed run is the same run without the stop.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import StopAfter, write_mnist
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mlp_digits import cli
from mlp_digits.lightning.training import build_run

FLAGS = ("--max-epochs", "2", "--batch-size", "7", "--steps-per-chunk", "5")  # 72 steps an epoch


@pytest.fixture(scope="module")
def data_601(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """601 training images: 501 to train on (71 mini-batches of 7 and one of 4), 100 to validate."""
    return write_mnist(tmp_path_factory.mktemp("d601"), n_train=601, n_test=50)


def fit(data_dir: Path, logdir: Path, *extra: str, callbacks: tuple[L.Callback, ...] = ()):
    args = cli.parse_train_args(
        ["--data-dir", str(data_dir), "--val-size", "100", "--no-download", "--logdir",
         str(logdir), "--accelerator", "cpu", "--images-every", "0", *extra]
    )  # fmt: skip
    run = build_run(args, extra_callbacks=callbacks)
    run.trainer.fit(run.model, datamodule=run.datamodule, ckpt_path=run.ckpt_path)
    return run


def curves(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the run's folder, from all its event files (a resumed run adds one)."""
    (run_dir,) = logdir.glob("version_*")
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def test_lightning_has_no_optimizer_and_the_model_counts_the_sgd_steps(
    data_601: Path, tmp_path: Path
) -> None:
    run = fit(data_601, tmp_path, *FLAGS)
    assert run.model.configure_optimizers() is None  # no lr = 0 optimizer ...
    assert run.trainer.global_step == 0  # ... stepped only to be counted
    assert run.model.sgd_steps == 2 * 72
    saved = torch.load(tmp_path / "version_0/checkpoints/last.ckpt", weights_only=True)
    assert saved["sgd_steps"] == 2 * 72


@pytest.mark.parametrize("stop_after", [36, 130])
def test_the_curves_after_a_mid_epoch_resume_are_those_of_a_straight_run(
    data_601: Path, tmp_path: Path, stop_after: int
) -> None:
    """Planted bugs this catches: ``train/epoch_cost`` averaging only the steps after the
    resume (the epoch's earlier costs not kept in the checkpoint), and ``train/cost`` points
    moved by a resume (the interval's position not kept)."""
    flags = ("--max-epochs", "2", "--batch-size", "4", "--steps-per-chunk", "5")  # 126 an epoch
    fit(data_601, tmp_path / "straight", *flags)
    with pytest.raises(Exception, match="SIGINT"):
        fit(data_601, tmp_path / "stopped", *flags, callbacks=(StopAfter(stop_after),))
    fit(data_601, tmp_path / "stopped", "--resume", "last")

    straight, resumed = curves(tmp_path / "straight"), curves(tmp_path / "stopped")
    for tag in ("train/cost", "train/epoch_cost", "val/cost", "val/accuracy"):
        assert resumed[tag] == straight[tag], tag
    assert [step for step, _ in straight["train/epoch_cost"]] == [126, 252]
    assert [step for step, _ in straight["train/cost"]] == [100, 126, 226, 252]

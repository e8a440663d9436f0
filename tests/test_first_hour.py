"""The first hour of a new user (issue 18): failed starts leave nothing behind, a run keeps
its data folder, pipes close quietly, errors say what a file is, pictures and figures read."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import REPO, write_mnist
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import backend_context, metadata

from mlp_digits import cli
from mlp_digits.data import DataError
from mlp_digits.lightning import training
from mlp_digits.lightning.checkpoint import load_checkpoint
from mlp_digits.lightning.hparams import write_hparams
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.lightning.pictures import (
    CELL,
    LEFT,
    PADDING,
    SIDE,
    TILE_HEIGHT,
    TILE_WIDTH,
    TOP,
    WEIGHT_ZOOM,
    ZOOM,
    ConfusionPicture,
    misclassified_grid,
    weight_tiles,
)
from mlp_digits.page.predict import BLANK_NOTE, format_results, predict_files
from mlp_digits.sweep import report as sweep_report
from mlp_digits.sweep import run as sweep
from mlp_digits.sweep.grid import build_grid

CPU = ("--accelerator", "cpu")
# No network: a download attempt goes to a closed port and fails at once.
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
# TensorBoard's narrowest card (its time-series grid: minmax(335px, 1fr)): a wider picture
# is shrunk to this width.
CARD_WIDTH = 335


def script(name: str, *flags: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *flags],
        cwd=cwd, capture_output=True, text=True, timeout=300, env=os.environ | OFFLINE, **kwargs,
    )  # fmt: skip


# --- 1. no folder for a run that never started ---------------------------------------------


@pytest.mark.parametrize("name", ["train.py", "sweep.py"])
def test_a_run_that_cannot_start_leaves_nothing_behind(name: str, tmp_path: Path) -> None:
    """The default --logdir, in the folder the user is in: it stays empty."""
    flags = ("--data-dir", "nowhere", "--no-download", *CPU)
    if name == "sweep.py":
        flags += ("--seeds", "0", "--num-threads", "1")
    result = script(name, *flags, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.startswith("error: MNIST is not in") and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Seed 0 at η = 1 and 3, 3 epochs; then a sweep whose data is missing, in the same
    logdir. Returns (the sweep's folder, its data, the logdir)."""
    root = tmp_path_factory.mktemp("sweep")
    data = write_mnist(root / "data")
    logdir = root / "logs"
    flags = ["--no-download", "--val-size", "100", "--max-epochs", "3", "--seeds", "0"]
    flags += ["--lr", "1", "3", "--logdir", str(logdir), "--num-threads", "1", *CPU]
    args = cli.sweep_parser().parse_args([*flags, "--data-dir", str(data)])
    with contextlib.redirect_stdout(io.StringIO()):
        assert sweep.run(args) == 0
    broken = cli.sweep_parser().parse_args([*flags, "--data-dir", str(root / "nowhere")])
    with pytest.raises(DataError, match="MNIST is not in"):
        sweep.run(broken)
    return logdir / "sweep" / "version_0", data, logdir


def test_a_failed_sweep_leaves_no_folder_and_resume_last_finds_the_real_one(tiny_sweep) -> None:
    folder, data, logdir = tiny_sweep
    assert sorted(p.name for p in folder.parent.iterdir()) == ["version_0"]
    args = cli.sweep_parser().parse_args(["--resume", "last", "--logdir", str(logdir)])
    assert sweep.sweep_folder(args) == folder


def test_resume_export_finds_the_sweeps_data_from_another_folder(
    tiny_sweep, tmp_path: Path
) -> None:
    folder, data, logdir = tiny_sweep
    result = script(
        "sweep.py", "--resume", "last", "--logdir", str(logdir), "--export", "1",
        "--num-threads", "1", *CPU, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (exported,) = (folder / "export").glob("net0001_*.ckpt")
    stored = torch.load(exported, weights_only=True)["datamodule_hyper_parameters"]
    assert stored["data_dir"] == str(data.resolve())


# --- 2. the run keeps its data folder; the resume line runs as printed ---------------------


class StopAfter(L.Callback):
    """Asks the run to stop after its first chunk, as a Ctrl-C does."""

    def on_train_batch_end(self, trainer: L.Trainer, *_) -> None:
        next(c for c in trainer.callbacks if hasattr(c, "signum")).signum = signal.SIGINT


def test_the_resume_line_after_a_stop_runs_as_printed_and_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_mnist(tmp_path / "mnist")  # not the default data/
    (tmp_path / "scripts").symlink_to(REPO / "scripts")  # a checkout, as far as the line needs
    monkeypatch.chdir(tmp_path)
    build_run = training.build_run
    monkeypatch.setattr(training, "build_run", lambda args: build_run(args, [StopAfter()]))
    args = cli.parse_train_args(
        ["--data-dir", "mnist", "--val-size", "100", "--max-epochs", "3", "--no-download",
         "--logdir", "logs", "--name", "ctrlc", *CPU]
    )  # fmt: skip
    assert training.train(args) == 128 + signal.SIGINT
    line = capsys.readouterr().err.strip().splitlines()[-1]
    printed = line.split("to go on: ")[1]
    assert printed == "python scripts/train.py --resume logs/ctrlc/version_0"
    # Another run in the same folder since: the printed line still resumes the stopped one.
    (tmp_path / "logs" / "ctrlc" / "version_1" / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "logs/ctrlc/version_0/checkpoints/last.ckpt",
                tmp_path / "logs/ctrlc/version_1/checkpoints/last.ckpt")  # fmt: skip

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # this python
    resumed = subprocess.run(
        ["bash", "-c", printed], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=os.environ | OFFLINE | {"PATH": path},
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming" in resumed.stdout and re.search(r"^Test: \d+ / 200", resumed.stdout, re.M)
    assert "Resuming logs/ctrlc/version_0/checkpoints/last.ckpt" in resumed.stdout
    hparams = (tmp_path / "logs" / "ctrlc" / "version_0" / "hparams.yaml").read_text()
    assert f"data_dir: {data.resolve()}" in hparams

    again = subprocess.run(
        ["bash", "-c", printed], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=os.environ | OFFLINE | {"PATH": path},
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.strip() == (
        "logs/ctrlc/version_0 has trained all its 3 epochs; to train it longer, give "
        "--max-epochs above 3 with --resume"
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-epoch run with its data given relative to where it started: (its last.ckpt,
    the data)."""
    root = tmp_path_factory.mktemp("run")
    data = write_mnist(root / "data")
    flags = ("--data-dir", "data", "--val-size", "100", "--max-epochs", "1", "--no-download")
    result = script("train.py", *flags, "--logdir", "logs", *CPU, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "logs" / "version_0" / "checkpoints" / "last.ckpt", data


def test_evaluate_finds_the_runs_data_from_another_folder(trained, tmp_path: Path) -> None:
    checkpoint, data = trained
    result = script("evaluate.py", "--checkpoint", str(checkpoint), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^Test: \d+ / 200 correct", result.stdout, re.M)


def test_a_given_data_dir_still_wins(trained, tmp_path: Path) -> None:
    checkpoint, _ = trained
    result = script("evaluate.py", "--checkpoint", str(checkpoint), "--data-dir", "elsewhere",
                    "--no-download", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("error: MNIST is not in elsewhere/MNIST/raw")


# --- 4. pipes ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["evaluate.py", "predict.py"])
def test_a_pipe_closed_before_the_output_ends_quietly(name: str, trained, tmp_path: Path) -> None:
    checkpoint, _ = trained
    flags = ["--checkpoint", str(checkpoint)]
    if name == "predict.py":
        Image.new("L", (28, 28), 255).save(tmp_path / "blank.png")
        flags.append(str(tmp_path / "blank.png"))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / name), *flags], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | OFFLINE,
    )  # fmt: skip
    proc.stdout.close()  # the reader is gone before the first line, as `| head -0` would be
    _, err = proc.communicate(timeout=300)
    assert err == ""
    assert proc.returncode == 128 + signal.SIGPIPE


# --- 5. errors that say what the file is ---------------------------------------------------


def test_a_sweeps_stack_checkpoint_says_so_and_how_to_export_one(tiny_sweep) -> None:
    folder, _, _ = tiny_sweep
    stack = folder / "stacks" / "stack0" / "last.ckpt"
    with pytest.raises(DataError) as error:
        load_checkpoint(stack)
    assert str(error.value) == (
        f"checkpoint {stack} is a sweep's stack of 2 networks, not one DigitsMLP; export "
        "network K (results.csv's first column) as one: python scripts/sweep.py --resume "
        f"{folder.resolve()} --export K"
    )


def test_a_truncated_checkpoint_is_damaged_or_incomplete(trained, tmp_path: Path) -> None:
    checkpoint, _ = trained
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    result = script("evaluate.py", "--checkpoint", str(cut), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: checkpoint {cut} is damaged or incomplete")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_blank_image_is_named_blank(tmp_path: Path) -> None:
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    digit = Image.new("L", (40, 40), 255)
    digit.paste(0, (18, 8, 22, 32))  # a "1"
    digit.save(tmp_path / "one.png")
    results = predict_files(DigitsMLP(), [tmp_path / "blank.png", tmp_path / "one.png"])
    assert [r["blank"] for r in results] == [True, False]
    blank, one = format_results(results).split("\n\n")
    assert blank.splitlines()[0] == f"{tmp_path / 'blank.png'}: {results[0]['prediction']}" + (
        BLANK_NOTE
    )
    assert BLANK_NOTE not in one


# --- 6. TensorBoard at its default size ----------------------------------------------------


def ink_height(pixels: np.ndarray, background: np.ndarray) -> int:
    """Rows of a picture patch holding any pixel far from the background colour."""
    far = np.abs(pixels.astype(int) - background.astype(int)).reshape(*pixels.shape[:2], -1)
    return int((far.sum(axis=2) > 200).any(axis=1).sum())


def test_the_confusion_matrix_counts_stay_8_pixels_tall_in_the_narrowest_card() -> None:
    confusion = torch.full((10, 10), 5) + torch.diag(torch.full((10,), 1088))
    picture = ConfusionPicture(10).draw(confusion)
    cell = picture[TOP : TOP + CELL, LEFT : LEFT + CELL]  # "1088", true 0, predicted 0
    shown = ink_height(cell, cell[0, 0]) * CARD_WIDTH / picture.shape[1]
    assert shown >= 8  # 11-pixel text in a 394-pixel picture showed digits 6.8 pixels tall
    ink = np.abs(cell.astype(int) - cell[0, 0].astype(int)).sum(axis=2) > 200
    columns = np.nonzero(ink.any(axis=0))[0]
    assert columns.min() > 0 and columns.max() < CELL - 1  # four digits fit in the cell


def test_the_mistakes_captions_stay_10_pixels_tall_in_the_narrowest_card() -> None:
    x = torch.rand(8, 784)
    targets = torch.arange(8)
    grid = misclassified_grid(x, targets, torch.eye(10)[(targets + 2) % 10])
    top = PADDING + SIDE * ZOOM  # the first tile's "0 → 2" strip, white on black
    label = grid[0, top : PADDING + TILE_HEIGHT, PADDING : PADDING + TILE_WIDTH]
    ink_rows = int((label > 0.5).any(dim=1).sum())
    shown = ink_rows * CARD_WIDTH / max(grid.shape[2], CARD_WIDTH)  # never enlarged
    assert shown >= 10  # 11-pixel text in a 466-pixel grid: 5.8 pixels


def test_first_layer_tiles_are_zoomed_copies_at_least_100_pixels_wide() -> None:
    weight = torch.randn(16, 784)
    plain, zoomed = weight_tiles(weight), weight_tiles(weight, zoom=WEIGHT_ZOOM)
    side = SIDE * WEIGHT_ZOOM
    n = 4 * (side + PADDING) + PADDING
    assert side >= 100 and zoomed.shape == (3, n, n)
    first = zoomed[:, PADDING : PADDING + side, PADDING : PADDING + side]
    expected = plain[:, PADDING : PADDING + SIDE, PADDING : PADDING + SIDE]
    assert torch.equal(first[:, ::WEIGHT_ZOOM, ::WEIGHT_ZOOM], expected)
    assert torch.equal(first[:, WEIGHT_ZOOM - 1 :: WEIGHT_ZOOM, 1::WEIGHT_ZOOM], expected)


def test_hparams_tab_ticks_what_a_learner_compares(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, name="", default_hp_metric=False)
    hparams = {**DigitsMLP().hparams, "batch_size": 10, "data_dir": "/d", "download": True,
               "val_size": 100, "split": "last", "precision": "32"}  # fmt: skip
    write_hparams(logger, hparams, ["val/accuracy"])
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG]
    experiment = metadata.parse_experiment_plugin_data(content)
    backend_context._sort_and_reduce_to_hparams_limit(experiment)  # TensorBoard's own order
    # and its page ticks the first five
    shown = [info.name for info in experiment.hparam_infos][:5]
    assert sorted(shown) == ["batch_size", "init", "lr", "seed", "sizes"]


# --- 7. the sweep's figures ----------------------------------------------------------------


def test_figures_count_epochs_from_0_in_whole_numbers_and_write_eta_plainly(tiny_sweep) -> None:
    folder, _, logdir = tiny_sweep
    args = cli.sweep_parser().parse_args(["--resume", str(folder)])
    sweep.sweep_folder(args)
    records = sweep.load_stack_records(folder / "stacks" / "stack0")
    results = sweep_report.collect(build_grid(args), records)
    pictures = sweep_report.figures(results)
    per_epoch = pictures["accuracy_per_epoch"].axes[0]
    assert list(per_epoch.lines[0].get_xdata()) == [0, 1, 2]  # as train.py's "Epoch 0"
    per_epoch.figure.canvas.draw()
    low, high = per_epoch.get_xlim()
    ticks = [t for t in per_epoch.get_xticks() if low <= t <= high]
    assert ticks and all(float(t).is_integer() for t in ticks)
    vs_lr = pictures["accuracy_vs_lr"].axes[0]
    vs_lr.figure.canvas.draw()
    assert [t.get_text() for t in vs_lr.get_xticklabels()] == ["1", "3"]
    assert [t.get_text() for t in vs_lr.get_xticklabels(minor=True)] == []
    for fig in pictures.values():
        sweep_report.plt.close(fig)

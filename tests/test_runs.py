"""mlp_digits.lightning.runs: which run or checkpoint ``--resume`` and ``--checkpoint`` name,
and every script that reads a checkpoint takes ``best`` and ``last``."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_script, write_mnist
from PIL import Image

from mlp_digits import cli
from mlp_digits.data import DataError, load_mnist
from mlp_digits.lightning import runs
from mlp_digits.lightning.evaluation import evaluate
from mlp_digits.lightning.training import train


def fake_run(logdir: Path, n: int, best: str | None = "best-epoch=1-val_accuracy=0.5000.ckpt"):
    folder = logdir / f"version_{n}" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(b"")
    if best:
        (folder / best).write_bytes(b"")
    return folder.parent


def test_best_and_last_are_the_highest_version_with_a_last_checkpoint(tmp_path: Path) -> None:
    fake_run(tmp_path, 2)
    newest = fake_run(tmp_path, 10)  # 10 after 2: by number, not by name
    (tmp_path / "version_11").mkdir()  # a run that never saved: not a run to read
    assert runs.checkpoint_path("last", tmp_path) == newest / "checkpoints" / "last.ckpt"
    best = newest / "checkpoints" / "best-epoch=1-val_accuracy=0.5000.ckpt"
    assert runs.checkpoint_path("best", tmp_path) == best


def test_a_run_folder_means_its_last_checkpoint_and_a_file_itself(tmp_path: Path) -> None:
    run = fake_run(tmp_path, 0)
    assert runs.checkpoint_path(str(run), tmp_path) == run / "checkpoints" / "last.ckpt"
    assert runs.checkpoint_path("elsewhere/x.ckpt", tmp_path) == Path("elsewhere/x.ckpt")


@pytest.mark.parametrize("text", ["best", "last"])
def test_no_run_is_one_line_naming_the_flag_and_the_folder(tmp_path: Path, text: str) -> None:
    with pytest.raises(DataError, match=f"--checkpoint {text}: no run with checkpoints/last"):
        runs.checkpoint_path(text, tmp_path)


def test_a_run_with_no_single_best_file_says_so(tmp_path: Path) -> None:
    fake_run(tmp_path, 0, best=None)
    with pytest.raises(DataError, match="holds 0 best-"):
        runs.checkpoint_path("best", tmp_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real two-epoch run under its own logdir: (data, logdir)."""
    root = tmp_path_factory.mktemp("runs")
    data = write_mnist(root / "data")
    args = cli.parse_train_args(
        ["--data-dir", str(data), "--val-size", "100", "--max-epochs", "2", "--no-download",
         "--logdir", str(root / "logs"), "--accelerator", "cpu", "--images-every", "0"]
    )  # fmt: skip
    assert train(args) == 0
    return data, root / "logs"


@pytest.mark.parametrize("which", ["best", "last"])
def test_every_script_that_reads_a_checkpoint_takes_best_and_last(
    trained: tuple[Path, Path], which: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data, logdir = trained
    x, _ = load_mnist(data, "test")
    image = tmp_path / "digit.png"
    Image.fromarray((x[0].reshape(28, 28).numpy() * 255).astype("uint8")).save(image)
    common = ["--checkpoint", which, "--logdir", str(logdir)]
    calls = {
        "evaluate": common + ["--data-dir", str(data)],
        "predict": common + [str(image)],
        "export": common + ["--output", str(tmp_path / "net.json")],
        "draw": common
        + ["--output", str(tmp_path / "page.html"), "--no-open", "--data-dir", str(data)],
    }  # fmt: skip  (compare_gradients.py: tests/test_compare_gradients.py)
    expected = runs.checkpoint_path(which, logdir)
    for script, argv in calls.items():
        main = evaluate if script == "evaluate" else load_script(script).main
        args = getattr(cli, f"{script}_parser")().parse_args(argv)
        assert cli.run(main, args) == 0, (script, capsys.readouterr().err)
    out = capsys.readouterr().out
    assert f"Checkpoint: {expected} (epoch " in out  # evaluate.py says which file it read
    assert (tmp_path / "net.json").is_file() and (tmp_path / "page.html").is_file()

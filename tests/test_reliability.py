"""Never lose work, never trust input: each fault provoked for real."""

from __future__ import annotations

import argparse
import os
import pickle
import re
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import REPO, write_mnist

from mlp_digits import backprop as bp
from mlp_digits import cli
from mlp_digits.lightning import training
from mlp_digits.lightning.callbacks import StopOnSignal
from mlp_digits.lightning.datamodule import MNISTDataModule
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.lightning.training import build_run

TRAIN = str(REPO / "scripts" / "train.py")


def start_training(*args: str) -> subprocess.Popen:
    # A child of a non-interactive shell inherits an ignored SIGINT: restore the default.
    return subprocess.Popen(
        [sys.executable, TRAIN, "--accelerator", "cpu", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def run_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, TRAIN, "--accelerator", "cpu", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_flags(data_dir: Path, logdir: Path, *extra: str, val_size: int = 100) -> list[str]:
    """The flags every run here shares: its data, its log folder, no download."""
    return ["--data-dir", str(data_dir), "--val-size", str(val_size), "--no-download",
            "--logdir", str(logdir), *extra]  # fmt: skip


def parse_run(data_dir: Path, logdir: Path, *extra: str) -> argparse.Namespace:
    return cli.train_parser().parse_args(run_flags(data_dir, logdir, *extra))


def last_ckpt(logdir: Path) -> dict:
    (path,) = logdir.glob("version_*/checkpoints/last.ckpt")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def big_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30,000 training images: an epoch long enough (~3,000 steps) to be stopped inside."""
    return write_mnist(tmp_path_factory.mktemp("big") / "data", n_train=30_000, n_test=100)


def interrupt_mid_epoch(data_dir: Path, logdir: Path, signum: int) -> subprocess.CompletedProcess:
    flags = run_flags(data_dir, logdir, "--max-epochs", "2", "--lr", "0.5", val_size=1000)
    proc = start_training(*flags)
    for line in proc.stdout:  # wait for the end of epoch 0, then stop epoch 1 early on
        if line.startswith("Epoch 0:"):
            break
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_epoch_saves_a_checkpoint_that_resumes_to_the_same_weights(
    big_mnist: Path, tmp_path: Path, signum: int, status: int
) -> None:
    stopped = interrupt_mid_epoch(big_mnist, tmp_path / "logs", signum)
    assert stopped.returncode == status, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr
    assert (
        stopped.stderr.strip()
        .splitlines()[-1]
        .endswith(f"--resume {tmp_path / 'logs' / 'version_0'}")
    )  # the stopped run's own folder, whatever runs come after it
    saved = last_ckpt(tmp_path / "logs")
    steps_per_epoch = 29_000 // 10
    assert 0 < saved["sgd_steps"] - steps_per_epoch < steps_per_epoch  # inside epoch 1

    resumed = run_train(
        "--resume",
        "last",
        "--logdir",
        str(tmp_path / "logs"),
        "--data-dir",
        str(big_mnist),
        "--no-download",
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["version_0"]  # same run

    straight = run_train(
        *run_flags(big_mnist, tmp_path / "straight", "--max-epochs", "2", "--lr", "0.5",
                   val_size=1000)
    )  # fmt: skip
    assert straight.returncode == 0
    a, b = last_ckpt(tmp_path / "logs"), last_ckpt(tmp_path / "straight")
    assert a["sgd_steps"] == b["sgd_steps"] == 2 * steps_per_epoch
    for name, tensor in b["state_dict"].items():
        assert torch.equal(a["state_dict"][name], tensor), name  # bit-identical


def test_sigterm_to_the_first_of_two_ddp_processes_stops_both_at_the_same_chunk(
    big_mnist: Path, tmp_path: Path
) -> None:
    """Only rank 0 gets the signal; the ranks agree on it after a chunk, so no rank is left
    waiting in a gradient all-reduce, and the run goes on from the saved step to the weights
    of a straight run with the same flags (a resume that skipped or repeated mini-batches, or
    restored another rank's or an older state, would end elsewhere)."""
    ddp = ("--devices", "2", "--strategy", "ddp", "--backprop", "manual")
    logdir = tmp_path / "logs"
    flags = run_flags(big_mnist, logdir, "--max-epochs", "2", "--lr", "0.5", *ddp, val_size=1000)
    proc = start_training(*flags)
    for line in proc.stdout:
        if line.startswith("Epoch 0:"):
            break
    proc.send_signal(signal.SIGTERM)  # the launching process only: rank 0
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1].endswith(f"--resume {logdir / 'version_0'}")
    steps_per_epoch = 29_000 // 2 // 10  # each rank's half, in mini-batches of 10
    assert steps_per_epoch < last_ckpt(logdir)["sgd_steps"] < 2 * steps_per_epoch

    resumed = run_train("--resume", "last", "--logdir", str(logdir), "--data-dir",
                        str(big_mnist), "--no-download", *ddp)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert last_ckpt(logdir)["sgd_steps"] == 2 * steps_per_epoch

    straight_flags = run_flags(big_mnist, tmp_path / "straight", "--max-epochs", "2",
                               "--lr", "0.5", *ddp, val_size=1000)  # fmt: skip
    straight = run_train(*straight_flags)
    assert straight.returncode == 0, straight.stderr[-2000:]
    a, b = last_ckpt(logdir), last_ckpt(tmp_path / "straight")
    assert a["sgd_steps"] == b["sgd_steps"]
    for name, tensor in b["state_dict"].items():
        assert torch.equal(a["state_dict"][name], tensor), name  # bit-identical


def test_second_signal_exits_at_once(monkeypatch) -> None:
    exits = []
    monkeypatch.setattr(os, "_exit", exits.append)
    stopper = StopOnSignal(None)
    stopper.handle(signal.SIGINT, None)
    assert exits == [] and stopper.signum == signal.SIGINT  # the first one waits for the chunk
    stopper.handle(signal.SIGINT, None)
    assert exits == [130]


# --- checkpoints that would run code -------------------------------------------------------


class CreatesFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture
def evil_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    state = DigitsMLP().state_dict()
    torch.save({"state_dict": state, "hyper_parameters": {}, "payload": CreatesFile(marker)}, path)
    assert not marker.exists()
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == ["io.open"]
    return path, marker


@pytest.mark.parametrize(
    "command",
    [
        ["train.py", "--resume", "{ckpt}", "--data-dir", "{data}", "--no-download"],
        ["evaluate.py", "--checkpoint", "{ckpt}", "--data-dir", "{data}", "--no-download"],
        ["compare_gradients.py", "--checkpoint", "{ckpt}"],
    ],
    ids=["train-resume", "evaluate", "compare_gradients"],
)
def test_checkpoint_that_would_run_code_is_refused(
    evil_checkpoint: tuple[Path, Path], tiny_mnist: Path, command: list[str]
) -> None:
    path, marker = evil_checkpoint
    args = [a.format(ckpt=path, data=tiny_mnist) for a in command]
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(path) in result.stderr
    assert not marker.exists()


def test_evil_payload_would_run_without_weights_only(evil_checkpoint: tuple[Path, Path]) -> None:
    """The control: the same file does create the marker when unpickled without restriction."""
    path, marker = evil_checkpoint
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    torch.load(path, weights_only=False)
    assert marker.exists()


# --- data and cost faults ------------------------------------------------------------------


def test_truncated_data_file_is_one_line_naming_it(tiny_mnist: Path, tmp_path: Path) -> None:
    path = tiny_mnist / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    result = run_train("--data-dir", str(tiny_mnist), "--no-download", "--logdir", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.search(r"^error: .*train-images-idx3-ubyte: .* is truncated", result.stderr, re.M)


def first_non_finite_step(data_dir: Path, lr: float) -> int:
    """An independent replay: DigitsMLP's own SGD steps over the datamodule's epoch-0 order."""
    L.seed_everything(0, verbose=False)
    model = DigitsMLP(lr=lr)
    dm = MNISTDataModule(str(data_dir), val_size=100, download=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    step = 0
    for xs, targets in loader:
        for x, t in zip(xs, targets, strict=True):
            step += 1
            y = model.one_hot(t)
            if not torch.isfinite(bp.cost(model.sgd_step(x, y).output, y)):  # before the step
                return step
    raise AssertionError("no non-finite cost")


class InfiniteEta(L.Callback):
    """η = ∞ from the first step: no flag can ask for it (--lr must be finite)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.lr = float("inf")


def test_non_finite_cost_stops_at_the_exact_step(tiny_mnist: Path, tmp_path: Path, capsys) -> None:
    """An infinite η turns the weights into ±inf, and the next weighted input into inf − inf.

    (Through the command line --lr must be finite; a huge finite one only saturates the
    sigmoids, which is why NaN is so rare with this network.)
    """
    args = parse_run(tiny_mnist, tmp_path, "--max-epochs", "2")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "build_run", lambda a: build_run(a, [InfiniteEta()]))
        assert training.train(args) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    step = first_non_finite_step(tiny_mnist, lr=float("inf"))
    assert re.search(rf"cost became nan at step {step} \(epoch 0\); try a smaller --lr", line)
    assert not list(tmp_path.glob("**/*.ckpt"))  # (after a good epoch: tests/test_training.py)


# --- bad arguments -------------------------------------------------------------------------

BAD_ARGUMENTS = {
    "--batch-size 0": "--batch-size",
    "--lr -1": "--lr",
    "--lr nan": "--lr",
    "--lr inf": "--lr",
    "--sizes 784 0 10": "--sizes",
    "--sizes 100 30 10": "must start with 784 and end with 10",
    "--sizes 784 30 9": "must start with 784 and end with 10",
    "--accelerator gpu": "no CUDA GPU",
    "--strategy bogus": "--strategy bogus is not one of",
    "--max-epochs 0": "--max-epochs",
    "--lr 1e39": "beyond the largest float32 number",
    "--devices two": "--devices two",
}


@pytest.mark.parametrize("flags", BAD_ARGUMENTS)
def test_bad_argument_is_exit_2_with_one_line(flags: str, capsys) -> None:
    if flags == "--accelerator gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    parser = cli.train_parser()
    with pytest.raises(SystemExit) as exit_:
        args = parser.parse_args(flags.split())
        cli.check_train_args(parser, args)
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("usage:") is False and BAD_ARGUMENTS[flags] in last


def test_bad_argument_from_the_command_line_has_no_traceback() -> None:
    result = run_train("--lr", "nan")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the usage line, then the error


def test_resume_without_a_run_says_what_to_do(tmp_path: Path) -> None:
    result = run_train("--resume", "last", "--logdir", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--resume last: no run with checkpoints/last.ckpt under" in result.stderr


# --- reproducibility and DDP ---------------------------------------------------------------


def train_weights(data_dir: Path, logdir: Path, *flags: str) -> dict[str, torch.Tensor]:
    run = build_run(parse_run(data_dir, logdir, "--max-epochs", "2", *flags))
    run.trainer.fit(run.model, datamodule=run.datamodule)
    return {k: v.clone() for k, v in run.model.state_dict().items()}


def test_same_seed_gives_bit_identical_weights(tiny_mnist: Path, tmp_path: Path) -> None:
    a = train_weights(tiny_mnist, tmp_path / "a", "--seed", "3")
    b = train_weights(tiny_mnist, tmp_path / "b", "--seed", "3")
    c = train_weights(tiny_mnist, tmp_path / "c", "--seed", "4")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_ddp_script_run_counts_every_validation_image(tiny_mnist: Path, tmp_path: Path) -> None:
    ddp = ("--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--backprop", "manual")
    result = run_train(*run_flags(tiny_mnist, tmp_path, "--max-epochs", "1", *ddp))
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^Epoch 0: \d+ / 100 validation images correct", result.stdout, re.M)
    assert re.search(r"^Test: \d+ / 200 correct", result.stdout, re.M)

"""mlp_digits.gradcheck and scripts/compare_gradients.py: BP1-BP4 against autograd and
finite differences, and a wrong gradient caught by both."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import lightning
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, checked_args, load_script, write_mnist
from torch import Tensor

from mlp_digits import backprop as bp
from mlp_digits import cli, gradcheck
from mlp_digits.data import load_mnist
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.network import initial_parameters

SCRIPT = REPO / "scripts" / "compare_gradients.py"
NAMES = [f"layers.{l}.{kind}" for l in range(3) for kind in ("weight", "bias")]


def small_problem(
    dtype: torch.dtype = torch.float64, sizes: tuple[int, ...] = (6, 5, 4, 3), m: int = 4
) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor]:
    """Weights, biases, inputs and one-hot targets of a small seeded network."""
    torch.manual_seed(0)
    model = DigitsMLP(sizes=sizes)
    weights = [w.detach().to(dtype) for w in model.weights]
    biases = [b.detach().to(dtype) for b in model.biases]
    x = torch.rand(m, sizes[0], dtype=torch.float64).to(dtype)
    y = F.one_hot(torch.randint(sizes[-1], (m,)), sizes[-1]).to(dtype)
    return weights, biases, x, y


# --- gradcheck ---------------------------------------------------------------------------


def test_one_row_per_tensor_and_tiny_errors_in_float64() -> None:
    weights, biases, x, y = small_problem()
    rows = gradcheck.compare_gradients(weights, biases, x, y)
    assert [r.name for r in rows] == NAMES
    assert [r.shape for r in rows] == [(5, 6), (5,), (4, 5), (4,), (3, 4), (3,)]
    for r in rows:
        assert r.rel_error < 1e-12 and r.max_abs_diff < 1e-14
        assert r.fd_rel_error < 1e-6
        assert r.cosine == pytest.approx(1.0, abs=1e-12)
    assert gradcheck.failures(rows, 1e-10, 1e-5) == []


def test_float32_passes_float32_tolerances_and_rows_are_reproducible() -> None:
    problem = small_problem(torch.float32)
    rows = gradcheck.compare_gradients(*problem, seed=3)
    assert gradcheck.failures(rows, 1e-5, 1e-5) == []
    assert gradcheck.compare_gradients(*problem, seed=3) == rows


def test_wrong_manual_gradient_is_caught_by_autograd_and_finite_differences(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    right_backprop = bp.backprop

    def wrong_backprop(*args: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        nabla_w, nabla_b = right_backprop(*args)
        return [1.01 * nw for nw in nabla_w], nabla_b

    monkeypatch.setattr(bp, "backprop", wrong_backprop)
    rows = gradcheck.compare_gradients(*small_problem())
    for r in rows:
        if r.name.endswith("weight"):
            assert r.rel_error == pytest.approx(0.01, rel=1e-6)
            assert r.fd_rel_error == pytest.approx(0.01, rel=1e-3)
        else:
            assert r.rel_error < 1e-12 and r.fd_rel_error < 1e-6
    failed = gradcheck.failures(rows, 1e-10, 1e-5)
    for l in range(3):
        assert any(f.startswith(f"layers.{l}.weight vs autograd") for f in failed)
        assert any(f.startswith(f"layers.{l}.weight vs finite differences") for f in failed)
    assert not any("bias" in f for f in failed)


def test_central_differences_of_a_known_function() -> None:
    """f(u, v) = Σ u³ + Σ sin v has ∂f/∂u = 3u² and ∂f/∂v = cos v."""
    u = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    v = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    samples = [torch.tensor([0, 5, 11]), torch.tensor([4, 1])]
    fd = gradcheck.central_differences(
        lambda p: p[0].pow(3).sum() + p[1].sin().sum(), [u, v], samples
    )
    assert all(d.dtype == torch.float64 for d in fd)  # float32 u is differenced in float64
    torch.testing.assert_close(fd[0], 3 * u.double().flatten()[samples[0]] ** 2, rtol=1e-6, atol=0)
    torch.testing.assert_close(fd[1], v.cos()[samples[1]], rtol=1e-6, atol=0)


def test_relative_error_failures_and_table() -> None:
    assert gradcheck.relative_error(torch.tensor([3.0, 4.0]), torch.zeros(2)) == 5.0
    good = gradcheck.GradientRow("layers.0.weight", (2, 3), 1e-17, 1e-16, 1.0, 1e-9)
    bad = gradcheck.GradientRow("layers.0.bias", (2,), math.nan, math.nan, math.nan, 1e-9)
    assert gradcheck.failures([good], 1e-10, 1e-5) == []
    assert gradcheck.failures([good], 0.0, 1e-5) == ["layers.0.weight vs autograd 1.0e-16"]
    assert gradcheck.failures([bad], 1e-10, 1e-5) == ["layers.0.bias vs autograd nan"]
    lines = gradcheck.format_table([good, bad]).splitlines()
    assert len(lines) == 3 and len({len(line) for line in lines}) == 1  # header + rows, aligned
    assert lines[1].split() == [
        "layers.0.weight",
        "2x3",
        "1.0e-17",
        "1.0e-16",
        "1.000000e+00",
        "1.0e-09",
    ]


def test_full_float32_precision_is_restored() -> None:
    before = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("high")
    try:
        with pytest.raises(ZeroDivisionError), gradcheck.full_float32_precision():
            assert torch.get_float32_matmul_precision() == "highest"
            assert not torch.backends.cuda.matmul.allow_tf32
            raise ZeroDivisionError
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cuda.matmul.allow_tf32 = before[1]


def planted_relu_prime_as_sigmoid_prime(monkeypatch: pytest.MonkeyPatch) -> None:
    """BP2's ReLU'(z) replaced by σ'(z) = a − a², as a sigmoid network's backprop would take it."""
    right = bp.activation_prime

    def wrong(a: Tensor, activation: str = "sigmoid") -> Tensor:
        return right(a, "sigmoid")

    monkeypatch.setattr(bp, "activation_prime", wrong)


def test_relu_gradients_agree_and_a_sigmoid_prime_in_bp2_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    weights, biases, x, y = small_problem()
    rows = gradcheck.compare_gradients(weights, biases, x, y, activation="relu")
    assert gradcheck.failures(rows, 1e-10, 1e-5) == []
    sigmoid_rows = gradcheck.compare_gradients(weights, biases, x, y)
    assert [r.fd_rel_error for r in rows] != [r.fd_rel_error for r in sigmoid_rows]

    planted_relu_prime_as_sigmoid_prime(monkeypatch)
    failed = gradcheck.failures(
        gradcheck.compare_gradients(weights, biases, x, y, activation="relu"), 1e-10, 1e-5
    )
    # BP2 carries ReLU' into the hidden layers only: the output layer's gradients stay right.
    for l in range(2):
        assert f"layers.{l}.weight vs autograd" in " ".join(failed)
        assert f"layers.{l}.bias vs finite differences" in " ".join(failed)
    assert not any(f.startswith("layers.2.") for f in failed)


# --- the script, in this process (no import cost) --------------------------------------


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script("compare_gradients")


def run_in_process(script: ModuleType, *argv: str) -> int:
    args = checked_args(script, *argv)
    return cli.run(script.main, args)


def save_digits_mlp(path: Path, data_dir: Path | None = None, **hparams: object) -> Path:
    """A checkpoint of a fresh DigitsMLP, with the run's data folder as train.py stores it."""
    model = DigitsMLP(**hparams)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    if data_dir is not None:
        checkpoint["datamodule_hyper_parameters"] = {"data_dir": str(data_dir)}
    torch.save(checkpoint, path)
    return path


def test_script_checks_a_checkpoint(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_digits_mlp(tmp_path / "model.ckpt", sizes=(784, 8, 10))
    assert run_in_process(script, "--checkpoint", str(tmp_path / "model.ckpt")) == 0
    out = capsys.readouterr().out
    assert "sizes 784-8-10, sigmoid" in out and f"checkpoint {tmp_path / 'model.ckpt'}" in out
    assert "random pixels" in out  # no run's data folder in this checkpoint
    assert out.count("\nlayers.") == 4

    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    assert run_in_process(script, "--checkpoint", str(tmp_path / "junk.ckpt")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a DigitsMLP checkpoint" in err
    assert err.count("\n") == 1


def test_script_checks_a_relu_checkpoint_as_relu(
    script: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ckpt = save_digits_mlp(
        tmp_path / "relu.ckpt", sizes=(784, 12, 10), init="scaled", activation="relu"
    )
    assert run_in_process(script, "--checkpoint", str(ckpt)) == 0
    out = capsys.readouterr().out
    assert "sizes 784-12-10, relu" in out and f"checkpoint {ckpt} (relu)" in out

    planted_relu_prime_as_sigmoid_prime(monkeypatch)
    assert run_in_process(script, "--checkpoint", str(ckpt)) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("FAIL") and "layers.0.weight vs finite differences" in last

    assert run_in_process(script, "--checkpoint", str(ckpt), "--activation", "sigmoid") == 1
    assert "--activation sigmoid differs from the checkpoint's relu" in capsys.readouterr().err


def test_two_seeds_check_the_two_networks_they_draw(
    script: ModuleType, tiny_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The printed table of ``--seed k`` is gradcheck's of initial_parameters(seed=k)."""
    pixels, targets = load_mnist(tiny_mnist, "test")
    x, y = pixels[:10].double(), F.one_hot(targets[:10], 10).double()
    tables = []
    for seed in (1, 2):
        argv = ["--data-dir", str(tiny_mnist), "--seed", str(seed), "--sizes", "784", "8", "10"]
        assert run_in_process(script, *argv) == 0
        out = capsys.readouterr().out
        assert f"fresh sigmoid network (init gaussian, seed {seed})" in out
        weights, biases = initial_parameters((784, 8, 10), seed=seed)
        rows = gradcheck.compare_gradients(
            [w.double() for w in weights], [b.double() for b in biases], x, y, seed=seed
        )
        assert gradcheck.format_table(rows) in out
        tables.append(gradcheck.format_table(rows))
    assert tables[0] != tables[1]
    columns = [[line.split()[2:] for line in table.splitlines()[1:]] for table in tables]
    assert all(a != b for a, b in zip(*columns))  # every row's figures differ


def test_a_checkpoint_is_checked_on_its_runs_data(
    script: ModuleType, tiny_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = save_digits_mlp(tmp_path / "run.ckpt", tiny_mnist, sizes=(784, 8, 10))
    assert run_in_process(script, "--checkpoint", str(ckpt)) == 0
    out = capsys.readouterr().out
    assert f"first 10 MNIST test images of {tiny_mnist} (the checkpoint's run's data)" in out

    other = write_mnist(tmp_path / "other", n_train=10, n_test=20)
    assert run_in_process(script, "--checkpoint", str(ckpt), "--data-dir", str(other)) == 0
    assert f"first 10 MNIST test images of {other};" in capsys.readouterr().out

    gone = save_digits_mlp(tmp_path / "gone.ckpt", tmp_path / "moved", sizes=(784, 8, 10))
    assert run_in_process(script, "--checkpoint", str(gone)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give --data-dir" in err and "moved" in err


def test_checkpoint_last_is_the_newest_runs(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for version, sizes in ((0, (784, 8, 10)), (1, (784, 6, 10))):
        folder = tmp_path / f"version_{version}" / "checkpoints"
        folder.mkdir(parents=True)
        save_digits_mlp(folder / "last.ckpt", sizes=sizes)
    argv = ["--checkpoint", "last", "--logdir", str(tmp_path)]
    assert run_in_process(script, *argv) == 0
    out = capsys.readouterr().out
    assert "sizes 784-6-10" in out and str(tmp_path / "version_1") in out


def test_accelerator_gpu_without_cuda_is_one_line(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        run_in_process(script, "--accelerator", "gpu")
    assert e.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.endswith("--accelerator gpu: this machine has no CUDA GPU; use --accelerator cpu")
    with pytest.raises(SystemExit):  # the flag is spelt as Lightning's, and only so
        run_in_process(script, "--device", "cpu")


@pytest.mark.parametrize(
    "argv",
    [["--batch-size", "0"], ["--sizes", "784", "16", "9", "--data-dir", "d"], ["--sizes", "7"]],
)
def test_script_rejects_bad_flags(script: ModuleType, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        run_in_process(script, *argv)
    assert e.value.code == 2


def test_script_checks_other_sizes_on_mnist_images(
    script: ModuleType, tiny_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--data-dir", str(tiny_mnist), "--sizes", "784", "30", "10"]
    assert run_in_process(script, *argv) == 0
    assert "sizes 784-30-10" in capsys.readouterr().out


# --- the script as a command -------------------------------------------------------------


def run_script(*argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), *argv]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_script_passes(dtype: str) -> None:
    result = run_script("--dtype", dtype)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"Gradient check: {dtype}, sizes 784-16-16-10, sigmoid, batch 10, accelerator cpu"
    )
    assert [line.split()[0] for line in lines if line.startswith("layers.")] == NAMES
    assert lines[-1].startswith("PASS")


def test_script_fails_at_tolerance_zero() -> None:
    result = run_script("--tolerance", "0")
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1].startswith("FAIL")


def test_script_missing_checkpoint_is_one_line() -> None:
    result = run_script("--checkpoint", "no/such/model.ckpt")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "no/such/model.ckpt" in result.stderr


def test_script_on_mnist_files(tmp_path: Path) -> None:
    data = write_mnist(tmp_path, n_train=10, n_test=20)
    result = run_script("--data-dir", str(data), "--batch-size", "5")
    assert result.returncode == 0, result.stderr
    assert f"first 5 MNIST test images of {data}" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("PASS")

"""mlp_digits.benchmark: every way trains the same network on the same images, and the report's
numbers are consistent with the epochs they come from. Nothing here depends on timing."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import REPO, checked_args, load_script, write_mnist

from mlp_digits import book
from mlp_digits.bench import ways as benchmark
from mlp_digits.bench.ways import BookLoop, Settings, TightLoop
from mlp_digits.data import load_mnist

SCRIPT = REPO / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def mnist_160(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 training images: with val_size 100, 60 to train on."""
    return write_mnist(tmp_path_factory.mktemp("mnist_160"), n_train=160, n_test=20)


def settings(data_dir: Path, batch_size: int = 7) -> Settings:
    return Settings(data_dir, val_size=100, batch_size=batch_size, images_every=0)


def test_every_way_trains_on_the_projects_training_images(mnist_160: Path) -> None:
    s = settings(mnist_160)
    x, targets, train = benchmark.training_set(s)
    all_x, all_targets = load_mnist(mnist_160, "train")
    args = benchmark.project_args(s, "manual", "logs", epochs=1)

    assert train.tolist() == list(range(60))  # the book's split: validation is the last 100
    assert torch.equal(x, all_x[:60]) and torch.equal(targets, all_targets[:60])
    assert args.val_size == 100 and args.batch_size == 7 and args.backprop == "manual"
    assert (args.lr, args.sizes) == (s.lr, s.sizes) == (3.0, (784, 16, 16, 10))


def test_book_loop_step_equals_a_float64_autograd_sgd_step(mnist_160: Path) -> None:
    s = settings(mnist_160, batch_size=60)
    x, targets, _ = benchmark.training_set(s)
    weights, biases = benchmark.initial_params(s)
    net = book.Network([w.numpy() for w in weights], [b.numpy() for b in biases])
    loop = BookLoop(x, targets, net, s.lr, s.batch_size)

    assert loop.epoch()[:2] == (1, 60)  # one mini-batch of all 60 images: one SGD step

    params = [p.double().requires_grad_() for pair in zip(weights, biases) for p in pair]
    a = x.double()
    for w, b in zip(params[::2], params[1::2]):
        a = torch.sigmoid(a @ w.T + b)
    y = torch.nn.functional.one_hot(targets, 10).double()
    cost = 0.5 * (y - a).square().sum() / len(x)
    grads = torch.autograd.grad(cost, params)
    expected = [(p - s.lr * g).detach().numpy() for p, g in zip(params, grads)]
    for w, w_ref in zip(loop.net.weights, expected[::2], strict=True):
        np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-12)
    for b, b_ref in zip(loop.net.biases, expected[1::2], strict=True):
        np.testing.assert_allclose(b[:, 0], b_ref, rtol=0, atol=1e-12)


class FinalWeights(L.Callback):
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


@pytest.mark.parametrize("backprop", ["autograd", "manual"])
def test_tight_loop_trains_the_weights_of_the_projects_path(mnist_160: Path, backprop: str) -> None:
    """One epoch of 60 images in mini-batches of 7 (8 full and a short one): the tight loop
    starts where build_run's DigitsMLP starts and takes the same mini-batches in order."""
    s = settings(mnist_160)
    x, targets, _ = benchmark.training_set(s)
    weights, biases = benchmark.initial_params(s)
    loop = TightLoop(x, targets, weights, biases, s.lr, s.batch_size, backprop == "manual")

    assert loop.epoch()[:2] == (9, 60)
    final = FinalWeights()
    benchmark.fit_project(s, backprop, 1, final)

    for l, (w, b) in enumerate(zip(loop.weights, loop.biases, strict=True)):
        torch.testing.assert_close(w.detach(), final.state[f"layers.{l}.weight"], rtol=0, atol=1e-5)
        torch.testing.assert_close(b.detach(), final.state[f"layers.{l}.bias"], rtol=0, atol=1e-5)
        assert (w - weights[l]).abs().max() > 1e-3  # training did move them


def test_a_loop_past_its_deadline_stops_after_one_step(mnist_160: Path) -> None:
    s = settings(mnist_160)
    x, targets, _ = benchmark.training_set(s)
    loop = TightLoop(x, targets, *benchmark.initial_params(s), s.lr, s.batch_size, manual=True)

    steps, samples, phases = loop.epoch(deadline=0.0)

    assert (steps, samples) == (1, 7)
    assert list(phases) == ["permutation + gather"]


def test_profile_prints_the_top_python_entries(mnist_160: Path) -> None:
    text = benchmark.profile_project(settings(mnist_160), "manual", "python", top=100)

    assert "Ordered by: internal time" in text and "Ordered by: cumulative time" in text
    assert text.count("due to restriction <100>") == 2
    assert "training_step" in text  # the profile spans the epoch's training


# --- the script --------------------------------------------------------------------------


def test_default_data_is_the_shared_mnist_when_there_else_synthetic() -> None:
    script = load_script("benchmark")
    shared = script.SHARED_MNIST if script.SHARED_MNIST.is_dir() else None

    args = checked_args(script)
    assert (args.data_dir, args.synthetic, args.val_size) == (shared, False, 10_000)
    args = checked_args(script, "--quick")
    assert (args.data_dir, args.synthetic, args.val_size) == (None, True, 200)
    with pytest.raises(SystemExit) as e:
        checked_args(script, "--synthetic", "--data-dir", "d")
    assert e.value.code == 2


def test_report_has_every_way_with_consistent_numbers(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    argv = ["--synthetic", "--synthetic-size", "300", "--val-size", "100", "--epochs", "1"]
    argv += ["--max-seconds", "0.2", "--warmup-seconds", "0", "--images-every", "0"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *argv, "--accelerator", "cpu", "--json", str(report)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "timing on synthetic, 400 images" in result.stdout
    data = json.loads(report.read_text())
    rows = data["results"]["10"]
    assert set(rows) == set(benchmark.WAYS)
    assert data["data"] == {"source": "synthetic, 400 images", "n_train": 300, "val_size": 100}
    for way, row in rows.items():
        epochs = row["epochs"]
        assert row["label"] in result.stdout
        assert row["samples_per_s"] == statistics.median(
            e["samples"] / e["seconds"] for e in epochs
        )
        assert row["us_per_step"] == statistics.median(
            1e6 * e["seconds"] / e["steps"] for e in epochs
        )
        for e in epochs:
            assert 1 <= e["steps"] <= 30 and e["samples"] == min(10 * e["steps"], 300), way
            if e["phases"]:
                assert sum(e["phases"].values()) == pytest.approx(e["seconds"], rel=1e-9)
    for way in benchmark.PROJECT_WAYS:  # whole epochs, validation included
        assert [(e["steps"], e["samples"]) for e in rows[way]["epochs"]] == [(30, 300)]
        assert "validation" in rows[way]["phase_shares"]
    assert data["checks"]
    for c in data["checks"]:
        speeds = rows[c["way"]]["samples_per_s"], rows[c["reference"]]["samples_per_s"]
        assert c["ratio"] == speeds[0] / speeds[1] and c["met"] == (c["ratio"] >= c["target"])

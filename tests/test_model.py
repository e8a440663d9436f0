"""DigitsMLP against independent references: the book's network.py in NumPy, plain formulas.

The slow parts are three short fits through a real ``lightning.Trainer`` on tiny MNIST-format
files that the tests write themselves (no network). No reference here comes from the code under
test: gradients are the book's (``book_gradients``), epoch orders conftest's ``epoch_order``.

Planted bugs these tests catch: ``check_gradients`` with the weight and bias tags swapped, the
absolute difference logged, or autograd compared with autograd; a wrong BP1-BP4 (sgd_step
against the book).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from conftest import epoch_order, quiet_trainer, write_mnist
from torch import Tensor, nn

from mlp_digits import backprop as bp
from mlp_digits import book
from mlp_digits.lightning.datamodule import MNISTDataModule
from mlp_digits.lightning.model import DigitsMLP

BACKPROPS = ["autograd", "manual"]


def pixels(m: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> Tensor:
    """m images' worth of values in [0, 1], like MNIST's pixels."""
    return torch.rand(m, 784, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def one_hot_targets(m: int, dtype: torch.dtype = torch.float64, seed: int = 1) -> Tensor:
    labels = torch.randint(0, 10, (m,), generator=torch.Generator().manual_seed(seed))
    return nn.functional.one_hot(labels, 10).to(dtype)


def numpy_params(model: DigitsMLP) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Copies of the weights (n_out, n_in) and biases (n_out,) as float64 NumPy arrays."""
    weights = [layer.weight.detach().double().numpy().copy() for layer in model.layers]
    biases = [layer.bias.detach().double().numpy().copy() for layer in model.layers]
    return weights, biases


def np_feedforward(
    weights: list[np.ndarray], biases: list[np.ndarray], x: np.ndarray
) -> np.ndarray:
    """The book's feedforward of the rows of x (m, 784), as rows (m, 10)."""
    return book.Network(weights, biases).feedforward(x.T).T


def book_gradients(
    model: DigitsMLP, x: Tensor, labels: Tensor
) -> tuple[list[Tensor], list[Tensor]]:
    """∂C/∂W and ∂C/∂b of the mini-batch by the book's NumPy network.py, float64: the mean of
    its per-example ``backprop``, as tensors shaped as the model's."""
    net = book.Network(*numpy_params(model))
    examples = book.examples(x.double().numpy(), labels.numpy())
    nabla_b, nabla_w = net.summed_gradients(examples)
    m = len(examples)
    return ([torch.from_numpy(n / m) for n in nabla_w],
            [torch.from_numpy(n.reshape(-1) / m) for n in nabla_b])  # fmt: skip


def trainer(root_dir: Path, **kwargs: Any) -> L.Trainer:
    return quiet_trainer(default_root_dir=root_dir, **kwargs)


def datamodule(data_dir: Path, val_size: int) -> MNISTDataModule:
    return MNISTDataModule(
        data_dir=str(data_dir), batch_size=10, val_size=val_size, seed=0, download=False
    )


@pytest.fixture(scope="module")
def mnist_1100(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,100 training images: with val_size=100, 1,000 to train on, 100 steps of 10."""
    return write_mnist(tmp_path_factory.mktemp("mnist_1100"), n_train=1100, n_test=20)


@pytest.fixture(scope="module")
def mnist_600(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 training images: with val_size=100, 500 to train on, 50 steps of 10."""
    return write_mnist(tmp_path_factory.mktemp("mnist_600"), n_train=600, n_test=20)


# --- architecture and initialisation ----------------------------------------------------


def test_default_network_has_13002_parameters() -> None:
    model = DigitsMLP()

    n_weights = sum(layer.weight.numel() for layer in model.layers)
    n_biases = sum(layer.bias.numel() for layer in model.layers)
    assert n_weights == 784 * 16 + 16 * 16 + 16 * 10 == 12_960
    assert n_biases == 16 + 16 + 10 == 42
    assert sum(p.numel() for p in model.parameters()) == 13_002


def test_default_layers_are_linear_784_16_16_10() -> None:
    model = DigitsMLP()

    assert isinstance(model.layers, nn.ModuleList)
    assert all(type(layer) is nn.Linear for layer in model.layers)
    assert [tuple(layer.weight.shape) for layer in model.layers] == [(16, 784), (16, 16), (10, 16)]
    assert [tuple(layer.bias.shape) for layer in model.layers] == [(16,), (16,), (10,)]


def assert_normal_sample(values: Tensor, std: float) -> None:
    """Mean 0 and standard deviation ``std``, within 5 standard errors of the estimates.

    For n draws from N(0, σ²) the sample mean has standard error σ/√n and the sample standard
    deviation about σ/√(2n). The band is asserted to exclude nn.Linear's own U(±1/√n_in)
    initialisation, whose standard deviation is σ/√3 when σ = 1/√n_in.
    """
    n = values.numel()
    mean_tol = 5 * std / math.sqrt(n)
    std_rel_tol = 5 / math.sqrt(2 * n)
    assert abs(1 / math.sqrt(3) - 1) > std_rel_tol, "too few samples to tell N from U"
    assert abs(values.mean().item()) <= mean_tol
    assert abs(values.std().item() / std - 1) <= std_rel_tol


BIG = (784, 300, 100, 10)


def test_gaussian_init_draws_weights_from_standard_normal() -> None:
    torch.manual_seed(0)
    model = DigitsMLP(sizes=BIG, init="gaussian")

    assert_normal_sample(torch.cat([w.detach().reshape(-1) for w in model.weights]), std=1.0)


def test_gaussian_init_draws_biases_from_standard_normal() -> None:
    torch.manual_seed(0)
    model = DigitsMLP(sizes=BIG, init="gaussian")

    assert_normal_sample(torch.cat([b.detach() for b in model.biases]), std=1.0)


def test_scaled_init_draws_weights_with_std_one_over_sqrt_fan_in() -> None:
    torch.manual_seed(0)
    model = DigitsMLP(sizes=BIG, init="scaled")

    for layer, n_in in zip(model.layers, BIG[:-1], strict=True):
        assert_normal_sample(layer.weight.detach().reshape(-1), std=1 / math.sqrt(n_in))


def test_scaled_init_draws_biases_from_standard_normal() -> None:
    torch.manual_seed(0)
    model = DigitsMLP(sizes=BIG, init="scaled")

    assert_normal_sample(torch.cat([b.detach() for b in model.biases]), std=1.0)


# --- forward -------------------------------------------------------------------------------


def test_forward_gives_one_activation_in_0_1_per_digit() -> None:
    torch.manual_seed(0)
    model = DigitsMLP()

    out = model(pixels(32))

    assert out.shape == (32, 10)
    assert out.dtype == torch.float32
    assert bool(((out > 0) & (out < 1)).all())


def test_forward_equals_sigmoid_chain() -> None:
    torch.manual_seed(0)
    model = DigitsMLP().double()
    x = pixels(32, torch.float64)
    weights, biases = numpy_params(model)

    out = model(x).detach().numpy()

    np.testing.assert_allclose(out, np_feedforward(weights, biases, x.numpy()), rtol=0, atol=1e-12)


# --- one SGD step --------------------------------------------------------------------------


def digit_labels(m: int, seed: int = 1) -> Tensor:
    return torch.randint(0, 10, (m,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("backprop", BACKPROPS)
def test_sgd_step_moves_parameters_by_minus_lr_times_backprop_gradient(backprop: str) -> None:
    torch.manual_seed(0)
    model = DigitsMLP(lr=3.0, backprop=backprop).double()
    x, labels = pixels(10, torch.float64), digit_labels(10)
    before_w = [w.detach().clone() for w in model.weights]
    before_b = [b.detach().clone() for b in model.biases]
    y = nn.functional.one_hot(labels, 10).double()
    nabla_w, nabla_b = book_gradients(model, x, labels)

    model.sgd_step(x, y)

    for w, w0, nw in zip(model.weights, before_w, nabla_w, strict=True):
        torch.testing.assert_close(w.detach(), w0 - 3.0 * nw, rtol=0, atol=1e-12)
    for b, b0, nb in zip(model.biases, before_b, nabla_b, strict=True):
        torch.testing.assert_close(b.detach(), b0 - 3.0 * nb, rtol=0, atol=1e-12)
    assert any(not torch.equal(w.detach(), w0) for w, w0 in zip(model.weights, before_w))


@pytest.mark.parametrize("backprop", BACKPROPS)
def test_sgd_step_returns_the_output_before_the_update(backprop: str) -> None:
    """The chunk's costs are computed from these outputs: they must be the pre-step ones."""
    torch.manual_seed(0)
    model = DigitsMLP(lr=3.0, backprop=backprop).double()
    x, labels = pixels(10, torch.float64), digit_labels(10)
    y = nn.functional.one_hot(labels, 10).double()
    weights, biases = numpy_params(model)
    a = np_feedforward(weights, biases, x.numpy())

    output = model.sgd_step(x, y).output

    assert output.shape == (10, 10) and not output.requires_grad
    np.testing.assert_allclose(output.numpy(), a, rtol=0, atol=1e-12)
    assert not np.allclose(model(x).detach().numpy(), a, atol=1e-6)  # the step did move it


def test_manual_and_autograd_backprop_train_to_the_same_weights(
    mnist_1100: Path, tmp_path: Path
) -> None:
    """100 SGD steps (one epoch of 1,000 images in batches of 10) through a real Trainer."""
    models = {}
    for backprop in BACKPROPS:
        L.seed_everything(0)
        models[backprop] = DigitsMLP(lr=3.0, backprop=backprop)
    auto, manual = models["autograd"], models["manual"]
    for p, q in zip(auto.parameters(), manual.parameters(), strict=True):
        assert torch.equal(p, q)
    initial = [p.detach().clone() for p in auto.parameters()]

    for backprop, model in models.items():
        t = trainer(tmp_path / backprop, max_epochs=1)
        t.fit(model, datamodule=datamodule(mnist_1100, val_size=100))
        assert model.sgd_steps == 100

    for p, q, p0 in zip(auto.parameters(), manual.parameters(), initial, strict=True):
        assert p.dtype == torch.float32
        assert (p.detach() - q.detach()).abs().max().item() <= 1e-5
        assert not torch.equal(p.detach(), p0)  # the training did move the weights


@pytest.mark.parametrize("backprop", BACKPROPS)
def test_one_epoch_matches_book_network_py_step_by_step(
    backprop: str, mnist_600: Path, tmp_path: Path
) -> None:
    """One epoch of 64-bit Lightning training equals network.py's SGD on the same mini-batches."""
    batch_size, eta = 10, 3.0
    L.seed_everything(0)
    model = DigitsMLP(sizes=(784, 16, 16, 10), lr=eta, backprop=backprop).double()
    net = book.Network(*numpy_params(model))

    dm = datamodule(mnist_600, val_size=100)
    t = trainer(tmp_path, max_epochs=1, precision="64-true")
    t.fit(model, datamodule=dm)
    assert model.sgd_steps == 50

    x_train, targets = dm.splits["train"]
    assert x_train.dtype == torch.float32 and len(x_train) == 500
    images = x_train.cpu().double().numpy()
    labels = targets.cpu().numpy()
    order = epoch_order(len(images), seed=0, epoch=0).numpy()  # written in conftest
    for i in range(len(order) // batch_size):
        mini_batch = order[i * batch_size : (i + 1) * batch_size]
        net.update_mini_batch(book.examples(images[mini_batch], labels[mini_batch]), eta)

    trained_w, trained_b = numpy_params(model)
    assert all(layer.weight.dtype == torch.float64 for layer in model.layers)
    for w, w_book in zip(trained_w, net.weights, strict=True):
        assert np.abs(w - w_book).max() <= 1e-10
    for b, b_book in zip(trained_b, net.biases, strict=True):
        assert np.abs(b - b_book.reshape(-1)).max() <= 1e-10


def test_checkpoint_round_trip_restores_hparams_and_outputs(
    mnist_600: Path, tmp_path: Path
) -> None:
    L.seed_everything(0)
    model = DigitsMLP(sizes=(784, 12, 10), lr=0.5, init="scaled", backprop="manual")
    t = trainer(tmp_path, max_epochs=1)
    t.fit(model, datamodule=datamodule(mnist_600, val_size=100))
    path = tmp_path / "model.ckpt"
    t.save_checkpoint(path)

    loaded = DigitsMLP.load_from_checkpoint(path, weights_only=True)

    assert dict(loaded.hparams) == {
        "sizes": (784, 12, 10),
        "lr": 0.5,
        "init": "scaled",
        "backprop": "manual",
        "seed": 0,
        "activation": "sigmoid",
        "check_gradients_every": 0,
    }
    assert dict(loaded.hparams) == dict(model.hparams)
    x = pixels(16)
    assert torch.equal(loaded(x), model(x))


# --- the gradient check --------------------------------------------------------------------


def logged_check(model: DigitsMLP, x: Tensor, y: Tensor) -> dict[str, float]:
    """What ``check_gradients`` logs on the mini-batch (x, y), by tag."""
    model.step_scalars = []
    model.check_gradients(x, y, 1)
    return {tag: float(value) for tag, value, _ in model.step_scalars}


def test_check_gradients_logs_a_planted_relative_difference_under_each_tensors_tag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """BP1-BP4's gradients scaled by 1 + ε, a different ε for every tensor: the check logs ε,
    the relative difference, under that tensor's tag. Planted bugs caught: the weight and bias
    tags swapped; the absolute difference logged (ε‖∇C‖, and the book's ‖∇C‖ here are far
    from 1); autograd compared with autograd (0)."""
    eps_w, eps_b = [0.01, 0.02, 0.03], [0.004, 0.005, 0.006]
    real = bp.backward

    def scaled(*args, **kwargs):
        nabla_w, nabla_b = real(*args, **kwargs)
        return ([g * (1 + e) for g, e in zip(nabla_w, eps_w)],
                [g * (1 + e) for g, e in zip(nabla_b, eps_b)])  # fmt: skip

    monkeypatch.setattr(bp, "backward", scaled)
    model = DigitsMLP()
    x, labels = pixels(10), digit_labels(10)
    logged = logged_check(model, x, nn.functional.one_hot(labels, 10).float())

    expected = {f"grad_check/rel_error/layers.{l}.weight": e for l, e in enumerate(eps_w)}
    expected |= {f"grad_check/rel_error/layers.{l}.bias": e for l, e in enumerate(eps_b)}
    assert logged.keys() == expected.keys()
    for tag, eps in expected.items():
        assert logged[tag] == pytest.approx(eps, abs=1e-5), tag
    nabla_w, nabla_b = book_gradients(model, x, labels)
    for g, eps in zip(nabla_w + nabla_b, eps_w + eps_b):
        # so that an absolute difference, ε‖∇C‖, would be another number than ε
        assert abs(float(g.norm()) - 1) * eps > 100 * 1e-5


def test_check_gradients_of_the_real_backprop_logs_float32_rounding_not_zero() -> None:
    """Unplanted, in float32: BP1-BP4 and autograd round differently, so every logged value is
    nonzero (autograd against itself gives exactly 0), and far below 1e-5; in float64 the
    same check is at the level of float64 rounding."""
    x, labels = pixels(10), digit_labels(10)
    y = nn.functional.one_hot(labels, 10)
    logged = logged_check(DigitsMLP(), x, y.float())
    assert len(logged) == 6
    assert all(0 < value < 1e-5 for value in logged.values()), logged
    logged64 = logged_check(DigitsMLP().double(), x.double(), y.double())
    assert all(value < 1e-13 for value in logged64.values()), logged64

"""mlp_digits.book, the NumPy network.py, against float64 autograd: the reference is right."""

from __future__ import annotations

import numpy as np
import torch

from mlp_digits import backprop as bp
from mlp_digits import book

SIZES = (784, 16, 16, 10)


def random_problem(
    m: int = 10, seed: int = 0
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """N(0, 1) weights and biases, pixels in [0, 1] and labels, all float64."""
    g = torch.Generator().manual_seed(seed)
    params = []
    for n_in, n_out in zip(SIZES, SIZES[1:]):
        params += [torch.randn(n_out, n_in, generator=g, dtype=torch.float64)]
        params += [torch.randn(n_out, generator=g, dtype=torch.float64)]
    x = torch.rand(m, SIZES[0], generator=g, dtype=torch.float64)
    labels = torch.randint(0, 10, (m,), generator=g)
    return params, x, labels


def autograd_sgd_step(
    params: list[torch.Tensor], x: torch.Tensor, labels: torch.Tensor, eta: float
) -> list[torch.Tensor]:
    """θ − η ∂C/∂θ with C = 1/(2m) Σ ‖y − a‖² differentiated by autograd, in float64."""
    leaves = [p.clone().requires_grad_() for p in params]
    a = x
    for w, b in zip(leaves[::2], leaves[1::2]):
        a = torch.sigmoid(a @ w.T + b)
    y = torch.nn.functional.one_hot(labels, 10).double()
    cost = 0.5 * (y - a).square().sum() / len(x)
    grads = torch.autograd.grad(cost, leaves)
    return [(p - eta * g).detach() for p, g in zip(params, grads)]


def test_update_mini_batch_equals_an_autograd_sgd_step() -> None:
    params, x, labels = random_problem()
    net = book.Network([p.numpy() for p in params[::2]], [p.numpy() for p in params[1::2]])

    net.update_mini_batch(book.examples(x.numpy(), labels.numpy()), eta=3.0)
    expected = autograd_sgd_step(params, x, labels, eta=3.0)

    for w, w_ref in zip(net.weights, expected[::2], strict=True):
        np.testing.assert_allclose(w, w_ref.numpy(), rtol=0, atol=1e-12)
    for b, b_ref in zip(net.biases, expected[1::2], strict=True):
        assert b.shape == (len(b_ref), 1)
        np.testing.assert_allclose(b[:, 0], b_ref.numpy(), rtol=0, atol=1e-12)
    assert not np.array_equal(net.weights[0], params[0].numpy())  # it did move


def test_backprop_of_one_example_equals_mlp_digits_backprop() -> None:
    params, x, labels = random_problem(m=1, seed=1)
    net = book.Network([p.numpy() for p in params[::2]], [p.numpy() for p in params[1::2]])
    [(x_col, y_col)] = book.examples(x.numpy(), labels.numpy())

    nabla_b, nabla_w = net.backprop(x_col, y_col)
    y = torch.nn.functional.one_hot(labels, 10).double()
    ref_w, ref_b = bp.backprop(params[::2], params[1::2], x, y)

    for nw, rw in zip(nabla_w, ref_w, strict=True):
        np.testing.assert_allclose(nw, rw.numpy(), rtol=0, atol=1e-14)
    for nb, rb in zip(nabla_b, ref_b, strict=True):
        np.testing.assert_allclose(nb[:, 0], rb.numpy(), rtol=0, atol=1e-14)


def test_feedforward_takes_examples_as_columns() -> None:
    params, x, _ = random_problem(m=5, seed=2)
    net = book.Network([p.numpy() for p in params[::2]], [p.numpy() for p in params[1::2]])

    out = net.feedforward(x.numpy().T)
    ref = bp.feedforward(params[::2], params[1::2], x)[0][-1]

    assert out.shape == (10, 5)
    np.testing.assert_allclose(out.T, ref.numpy(), rtol=0, atol=1e-14)


def test_sigmoid_of_very_negative_z_is_zero_without_a_warning() -> None:
    with np.errstate(all="raise"):
        assert book.sigmoid(np.array([-1000.0]))[0] == 0.0

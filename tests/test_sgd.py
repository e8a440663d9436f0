"""mlp_digits.sgd: the book's SGD, written once for one network or a stack.

References: the NumPy network.py (``mlp_digits.book``), which shares no code with the step,
and a network's own step for each network of a stack.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlp_digits import book, sgd
from mlp_digits.network import initial_parameters, stacked_initial_parameters

SIZES = (784, 16, 16, 10)


def problem(n: int = 53, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, SIZES[0], generator=g, dtype=torch.float64), torch.randint(
        0, 10, (n,), generator=g
    )


@pytest.mark.parametrize("backprop", sgd.BACKPROPS)
def test_SGD_trains_the_weights_network_py_trains_on_the_same_mini_batches(backprop: str) -> None:
    """Two epochs of 53 images in mini-batches of 10 (five full, one of 3), η = 3, float64.

    network.py takes each mini-batch one example at a time and averages; this project takes
    the mini-batch as a matrix. The order of the mini-batches is given to both."""
    x, targets = problem()
    weights, biases = (
        [p.double() for p in ps] for ps in initial_parameters(SIZES, "gaussian", seed=4)
    )
    net = book.Network([w.numpy().copy() for w in weights], [b.numpy().copy() for b in biases])
    order = sgd.EpochPermutation(len(x), seed=4)
    for epoch in range(2):
        order.set_epoch(epoch)
        for batch in sgd.mini_batches(order.indices(), 10):
            net.update_mini_batch(book.examples(x[batch].numpy(), targets[batch].numpy()), 3.0)

    sgd.SGD(
        weights, biases, x, targets, epochs=2, batch_size=10, eta=3.0, seed=4, backprop=backprop
    )

    for w, w_book in zip(weights, net.weights, strict=True):
        assert np.abs(w.numpy() - w_book).max() < 1e-12
    for b, b_book in zip(biases, net.biases, strict=True):
        assert np.abs(b.numpy() - b_book.reshape(-1)).max() < 1e-12
    assert (
        np.abs(
            weights[0].numpy() - initial_parameters(SIZES, "gaussian", 4)[0][0].double().numpy()
        ).max()
        > 1e-3
    )


def test_mini_batches_keep_the_short_last_one() -> None:
    batches = list(sgd.mini_batches(torch.arange(23), 10))
    assert [len(b) for b in batches] == [10, 10, 3]
    assert torch.equal(torch.cat(batches), torch.arange(23))


@pytest.mark.parametrize("backprop", sgd.BACKPROPS)
def test_a_stack_step_is_each_networks_own_step_with_its_own_eta(backprop: str) -> None:
    """Three networks, three seeds, three η, each its own mini-batch, one stacked step."""
    seeds, etas = [0, 5, 9], [3.0, 0.5, 1.25]
    weights, biases = (
        [p.double() for p in ps] for ps in stacked_initial_parameters(SIZES, "gaussian", seeds)
    )
    x = torch.rand(3, 10, SIZES[0], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.nn.functional.one_hot(torch.arange(30).view(3, 10) % 10, 10).double()

    step = sgd.sgd_step(weights, biases, x, y, torch.tensor(etas, dtype=torch.float64), backprop)

    for k, (seed, eta) in enumerate(zip(seeds, etas)):
        own_w, own_b = (
            [p.double() for p in ps] for ps in initial_parameters(SIZES, "gaussian", seed)
        )
        own = sgd.sgd_step(own_w, own_b, x[k], y[k], eta, backprop)
        torch.testing.assert_close(step.output[k], own.output, rtol=0, atol=1e-13)
        for stacked, single in zip(weights + biases, own_w + own_b, strict=True):
            torch.testing.assert_close(stacked[k], single, rtol=0, atol=1e-13)


def test_the_update_is_w_minus_eta_times_the_gradient() -> None:
    w, b = torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    nabla_w = torch.arange(6, dtype=torch.float64).view(2, 3)
    nabla_b = torch.tensor([1.0, -2.0], dtype=torch.float64)
    sgd.update([w], [b], [nabla_w], [nabla_b], 0.5)
    assert torch.equal(w, 1 - 0.5 * nabla_w) and torch.equal(b, torch.tensor([-0.5, 1.0]).double())


def test_an_unknown_backprop_is_a_value_error() -> None:
    weights, biases = initial_parameters((784, 10), "gaussian", 0)
    with pytest.raises(ValueError, match="backprop must be one of"):
        sgd.gradients(weights, biases, torch.zeros(1, 784), torch.zeros(1, 10), "numeric")


@pytest.mark.parametrize("stacked", [False, True], ids=["one network", "a stack"])
def test_the_step_with_bp4_inside_the_update_is_the_same_step(stacked: bool) -> None:
    """``keep_gradients=False`` moves BP3/BP4 into the update; the weights it leaves are the
    step's own (float64, to rounding), and the output before it is the same."""
    seeds = [0, 5, 9] if stacked else [4]
    eta = torch.tensor([3.0, 0.5, 1.25], dtype=torch.float64) if stacked else 2.0
    g = torch.Generator().manual_seed(6)
    shape = (3, 10) if stacked else (10,)
    x = torch.rand(*shape, SIZES[0], dtype=torch.float64, generator=g)
    y = torch.nn.functional.one_hot(torch.randint(0, 10, shape, generator=g), 10).double()
    runs = []
    for keep in (True, False):
        ws, bs = stacked_initial_parameters(SIZES, "scaled", seeds)
        ws, bs = [w.double() for w in ws], [b.double() for b in bs]
        if not stacked:
            ws, bs = [w[0] for w in ws], [b[0] for b in bs]
        for _ in range(3):
            step = sgd.sgd_step(ws, bs, x, y, eta, "manual", keep_gradients=keep)
        runs.append((ws + bs, step))
    (kept, with_gradients), (fused, without) = runs
    assert with_gradients.nabla_w and not without.nabla_w  # nothing stored
    torch.testing.assert_close(with_gradients.output, without.output, rtol=0, atol=1e-13)
    for a, b in zip(kept, fused, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)
    assert float((kept[0] - stacked_initial_parameters(SIZES, "scaled", seeds)[0][0].double()
                  .squeeze(0)).abs().max()) > 1e-4  # fmt: skip

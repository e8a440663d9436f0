"""mlp_digits.backprop against references that share none of its code.

The references are PyTorch's autograd on a forward pass written here, finite differences
(``torch.autograd.gradcheck``) and a small network whose gradient is worked out by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from torch import Tensor

from mlp_digits import backprop as bp

ARCHITECTURES = [(784, 16, 16, 10), (784, 30, 10), (2, 3, 1), (4, 7, 7, 7, 3)]
BATCH_SIZES = [1, 10, 37]
# Relative error allowed between the manual and the autograd gradient, per dtype.
TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-4}


def book_network(
    sizes: Sequence[int], dtype: torch.dtype, seed: int = 0
) -> tuple[list[Tensor], list[Tensor]]:
    """Weights (n_out, n_in) and biases (n_out,) drawn from N(0, 1), as the book's network.py."""
    g = torch.Generator().manual_seed(seed)
    weights = [
        torch.randn(n_out, n_in, generator=g, dtype=dtype) for n_in, n_out in zip(sizes, sizes[1:])
    ]
    biases = [torch.randn(n_out, generator=g, dtype=dtype) for n_out in sizes[1:]]
    return weights, biases


def batch(
    n_in: int, n_out: int, m: int, dtype: torch.dtype, seed: int = 1
) -> tuple[Tensor, Tensor]:
    """m inputs in [0, 1] (like pixels) and their targets: one-hot rows, or 0/1 for one output."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(m, n_in, generator=g, dtype=dtype)
    if n_out == 1:
        y = torch.randint(0, 2, (m, 1), generator=g).to(dtype)
    else:
        y = torch.nn.functional.one_hot(torch.randint(0, n_out, (m,), generator=g), n_out).to(dtype)
    return x, y


def autograd_gradients(
    weights: Sequence[Tensor], biases: Sequence[Tensor], x: Tensor, y: Tensor
) -> tuple[list[Tensor], list[Tensor]]:
    """∂C/∂W and ∂C/∂b by autograd on a forward pass of its own, C = 1/(2m) Σ_x ‖y(x) − a(x)‖²."""
    ws = [w.detach().clone().requires_grad_() for w in weights]
    bs = [b.detach().clone().requires_grad_() for b in biases]
    a = x
    for w, b in zip(ws, bs):
        a = torch.sigmoid(a @ w.T + b)
    c = ((y - a) ** 2).sum() / (2 * x.shape[0])
    grads = torch.autograd.grad(c, ws + bs)
    return list(grads[: len(ws)]), list(grads[len(ws) :])


def flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("m", BATCH_SIZES)
@pytest.mark.parametrize("sizes", ARCHITECTURES, ids=lambda s: "-".join(map(str, s)))
def test_backprop_matches_autograd(sizes: tuple[int, ...], m: int, dtype: torch.dtype) -> None:
    weights, biases = book_network(sizes, dtype)
    x, y = batch(sizes[0], sizes[-1], m, dtype)

    nabla_w, nabla_b = bp.backprop(weights, biases, x, y)
    ref_w, ref_b = autograd_gradients(weights, biases, x, y)

    assert [g.shape for g in nabla_w] == [w.shape for w in weights]
    assert [g.shape for g in nabla_b] == [b.shape for b in biases]
    assert all(g.dtype == dtype for g in nabla_w + nabla_b)
    manual, reference = flat(nabla_w + nabla_b), flat(ref_w + ref_b)
    assert reference.norm() > 0
    rel_error = ((manual - reference).norm() / reference.norm()).item()
    assert rel_error <= TOLERANCES[dtype]


class BackpropCost(torch.autograd.Function):
    """C(x, y, W¹…Wᴸ, b¹…bᴸ) whose backward is ``mlp_digits.backprop.backprop``, not autograd.

    gradcheck compares this backward with finite differences of the forward.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, *params: Tensor) -> Tensor:
        n = len(params) // 2
        weights, biases = params[:n], params[n:]
        ctx.save_for_backward(x, y, *params)
        a = x
        for w, b in zip(weights, biases):
            a = torch.sigmoid(a @ w.T + b)
        return ((y - a) ** 2).sum() / (2 * x.shape[0])

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        x, y, *params = ctx.saved_tensors
        n = len(params) // 2
        nabla_w, nabla_b = bp.backprop(params[:n], params[n:], x, y)
        return (None, None, *(grad_output * g for g in nabla_w + nabla_b))


def small_net_inputs(sizes: tuple[int, ...] = (5, 4, 3), m: int = 3) -> tuple[Tensor, ...]:
    weights, biases = book_network(sizes, torch.float64, seed=2)
    x, y = batch(sizes[0], sizes[-1], m, torch.float64, seed=3)
    return (x, y, *(p.requires_grad_() for p in weights + biases))


def test_backprop_passes_gradcheck() -> None:
    assert torch.autograd.gradcheck(BackpropCost.apply, small_net_inputs(), eps=1e-6, atol=1e-8)


def test_gradcheck_harness_rejects_a_wrong_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above has teeth: a backprop whose BP2 takes σ'(zˡ) as σ'(0) = 1/4 fails it."""
    prime = bp.activation_prime
    with monkeypatch.context() as patch:
        patch.setattr(
            bp,
            "activation_prime",
            lambda a, *rest: prime(a, *rest) if a.shape[-1] == 3 else torch.full_like(a, 0.25),
        )
        assert not torch.autograd.gradcheck(
            BackpropCost.apply, small_net_inputs(), eps=1e-6, atol=1e-8, raise_exception=False
        )


LN3 = math.log(3.0)  # σ(ln 3) = 3/4, σ(−ln 3) = 1/4, σ'(±ln 3) = 3/16


def hand_network() -> tuple[list[Tensor], list[Tensor], Tensor, Tensor]:
    """The 2-2-1 network of ``test_backprop_on_hand_worked_2_2_1_network``, batch of one."""
    f64 = torch.float64
    w1 = torch.tensor([[2.0, -1.0], [-1.0, 0.5]], dtype=f64)
    b1 = torch.tensor([LN3, 0.0], dtype=f64)
    w2 = torch.tensor([[2.0, -3.0]], dtype=f64)
    b2 = torch.tensor([-LN3], dtype=f64)
    x = torch.tensor([[1.0, 2.0]], dtype=f64)
    y = torch.tensor([[1.0]], dtype=f64)
    return [w1, w2], [b1, b2], x, y


# The hand-worked results (see the docstring below); every one is exact in binary.
HAND_A1 = [0.75, 0.5]
HAND_A2 = [0.25]
HAND_COST = 0.28125
HAND_NABLA_W = [[[-0.052734375, -0.10546875], [0.10546875, 0.2109375]], [[-0.10546875, -0.0703125]]]
HAND_NABLA_B = [[-0.052734375, 0.10546875], [-0.140625]]


def test_backprop_on_hand_worked_2_2_1_network() -> None:
    """x = (1, 2), y = 1; W¹ = [[2, −1], [−1, ½]], b¹ = (ln 3, 0); W² = [[2, −3]], b² = −ln 3.

    Forward:
        z¹ = W¹x + b¹ = (2 − 2, −1 + 1) + (ln 3, 0) = (ln 3, 0)
        a¹ = σ(z¹) = (3/4, 1/2)              σ'(z¹) = (3/4·1/4, 1/2·1/2) = (3/16, 1/4)
        z² = W²a¹ + b² = (3/2 − 3/2) − ln 3 = −ln 3
        a² = σ(z²) = 1/4                      σ'(z²) = 1/4·3/4 = 3/16
        C  = ½ (1 − 1/4)² = 9/32 = 0.28125
    BP1: δ² = (a² − y) σ'(z²) = (−3/4)(3/16) = −9/64 = −0.140625
    BP3: ∂C/∂b² = δ² = −0.140625
    BP4: ∂C/∂W² = δ² (a¹)ᵀ = (−9/64·3/4, −9/64·1/2) = (−27/256, −9/128) = (−0.10546875, −0.0703125)
    BP2: δ¹ = (W²)ᵀδ² ⊙ σ'(z¹) = (2·(−9/64), −3·(−9/64)) ⊙ (3/16, 1/4)
            = (−18/64·3/16, 27/64·1/4) = (−27/512, 27/256) = (−0.052734375, 0.10546875)
    BP3: ∂C/∂b¹ = δ¹ = (−0.052734375, 0.10546875)
    BP4: ∂C/∂W¹ = δ¹ xᵀ = [[−27/512·1, −27/512·2], [27/256·1, 27/256·2]]
                        = [[−0.052734375, −0.10546875], [0.10546875, 0.2109375]]
    """
    weights, biases, x, y = hand_network()

    nabla_w, nabla_b = bp.backprop(weights, biases, x, y)

    for got, want in zip(nabla_w, HAND_NABLA_W, strict=True):
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-12)
    for got, want in zip(nabla_b, HAND_NABLA_B, strict=True):
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-12)


def test_feedforward_on_hand_worked_2_2_1_network() -> None:
    """The forward half of the hand-worked example: a¹ = (3/4, 1/2), z² = −ln 3, a² = 1/4."""
    weights, biases, x, _ = hand_network()

    activations, zs = bp.feedforward(weights, biases, x)

    f64 = torch.float64
    torch.testing.assert_close(
        activations[1], torch.tensor([HAND_A1], dtype=f64), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        activations[2], torch.tensor([HAND_A2], dtype=f64), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(zs[0], torch.tensor([[LN3, 0.0]], dtype=f64), rtol=0, atol=1e-12)
    torch.testing.assert_close(zs[1], torch.tensor([[-LN3]], dtype=f64), rtol=0, atol=1e-12)


def test_cost_on_hand_worked_2_2_1_network() -> None:
    """C = ½ (y − a²)² = ½ (3/4)² = 9/32 for the hand-worked example."""
    weights, biases, x, y = hand_network()
    activations, _ = bp.feedforward(weights, biases, x)

    assert bp.cost(activations[-1], y).item() == pytest.approx(HAND_COST, abs=1e-12)


def test_cost_is_half_squared_error_summed_over_outputs_and_averaged_over_batch() -> None:
    """C = 1/(2m) Σ_x ‖y − a‖²: here m = 2, ‖y − a‖² = 0.25 + 1 and 4, so C = 5.25 / 4."""
    a = torch.tensor([[0.5, 1.0], [2.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)

    assert bp.cost(a, y).item() == pytest.approx(1.3125, abs=1e-15)


def test_backprop_of_duplicated_example_equals_single_example() -> None:
    """The gradient is a mean over the batch: two copies of one example give its gradient."""
    weights, biases, x, y = hand_network()

    nabla_w, nabla_b = bp.backprop(weights, biases, torch.cat([x, x]), torch.cat([y, y]))

    for got, want in zip(nabla_w + nabla_b, HAND_NABLA_W + HAND_NABLA_B, strict=True):
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-12)


def test_backprop_of_batch_is_mean_of_per_example_gradients() -> None:
    sizes = (4, 7, 7, 3)
    weights, biases = book_network(sizes, torch.float64)
    x, y = batch(sizes[0], sizes[-1], 5, torch.float64)

    nabla_w, nabla_b = bp.backprop(weights, biases, x, y)

    per_example = [bp.backprop(weights, biases, x[i : i + 1], y[i : i + 1]) for i in range(5)]
    for l in range(len(weights)):
        mean_w = torch.stack([g[0][l] for g in per_example]).mean(dim=0)
        mean_b = torch.stack([g[1][l] for g in per_example]).mean(dim=0)
        torch.testing.assert_close(nabla_w[l], mean_w, rtol=0, atol=1e-14)
        torch.testing.assert_close(nabla_b[l], mean_b, rtol=0, atol=1e-14)


@pytest.mark.parametrize("sizes", ARCHITECTURES, ids=lambda s: "-".join(map(str, s)))
def test_feedforward_records_every_layer(sizes: tuple[int, ...]) -> None:
    weights, biases = book_network(sizes, torch.float64)
    x, _ = batch(sizes[0], sizes[-1], 6, torch.float64)

    activations, zs = bp.feedforward(weights, biases, x)

    assert len(activations) == len(sizes)
    assert len(zs) == len(sizes) - 1
    assert [tuple(a.shape) for a in activations] == [(6, n) for n in sizes]
    assert [tuple(z.shape) for z in zs] == [(6, n) for n in sizes[1:]]
    assert torch.equal(activations[0], x)
    torch.testing.assert_close(activations[-1], 1 / (1 + torch.exp(-zs[-1])), rtol=0, atol=1e-15)


def test_feedforward_zs_are_weighted_inputs_of_previous_activations() -> None:
    """zˡ = Wˡ aˡ⁻¹ + bˡ and aˡ = σ(zˡ) at every layer, not only the last."""
    sizes = (4, 7, 7, 7, 3)
    weights, biases = book_network(sizes, torch.float64)
    x, _ = batch(sizes[0], sizes[-1], 6, torch.float64)

    activations, zs = bp.feedforward(weights, biases, x)

    for l, (w, b) in enumerate(zip(weights, biases)):
        torch.testing.assert_close(zs[l], activations[l] @ w.T + b, rtol=0, atol=1e-13)
        torch.testing.assert_close(activations[l + 1], torch.sigmoid(zs[l]), rtol=0, atol=1e-15)


def test_backprop_builds_no_autograd_graph() -> None:
    sizes = (4, 7, 3)
    weights, biases = book_network(sizes, torch.float64)
    for p in weights + biases:
        p.requires_grad_()
    x, y = batch(sizes[0], sizes[-1], 5, torch.float64)

    nabla_w, nabla_b = bp.backprop(weights, biases, x, y)

    for t in nabla_w + nabla_b:
        assert not t.requires_grad
        assert t.grad_fn is None


def test_autograd_through_the_shared_feedforward_agrees_with_backprop() -> None:
    """feedforward is the one forward pass: autograd may run through it, and its gradients
    are BP1-BP4's."""
    sizes = (4, 7, 3)
    weights, biases = book_network(sizes, torch.float64)
    for p in weights + biases:
        p.requires_grad_()
    x, y = batch(sizes[0], sizes[-1], 5, torch.float64)

    activations, _ = bp.feedforward(weights, biases, x)
    auto = torch.autograd.grad(bp.cost(activations[-1], y), weights + biases)
    nabla_w, nabla_b = bp.backprop(weights, biases, x, y)

    for g, m in zip(auto, nabla_w + nabla_b):
        torch.testing.assert_close(m, g, rtol=1e-12, atol=1e-15)

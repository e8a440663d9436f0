"""Chapter 2 of Nielsen's book in code: feedforward and backpropagation, no autograd.

Everything is in batched matrix form. A mini-batch of m examples is a matrix whose rows are
the examples, so the book's column-vector equation a' = σ(W a + b) becomes the row form
A' = σ(A Wᵀ + b), the same convention as ``nn.Linear``:

    weights[l]  (n_out, n_in)   the book's Wˡ
    biases[l]   (n_out,)        the book's bˡ
    x           (m, n_in)       one input per row
    y           (m, n_out)      desired outputs, one-hot for digits

Every function also takes a *stack* of N networks: a leading dimension on every tensor,
weights (N, n_out, n_in), biases (N, n_out), x (N, m, n_in), y (N, m, n_out). Network k of
the stack sees only ``x[k]`` and its own weights; the equations are the same, written once.

The cost of a mini-batch is the book's quadratic cost, C = 1/(2m) Σ_x ‖y(x) − a(x)‖², a mean
over the m examples, so the gradients returned here are means over the batch too, exactly
what ``w ← w − η ∂C/∂w`` needs. This module imports only torch; nothing here records a tape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mlp_digits.config import DEFAULTS


def sigmoid(z: Tensor) -> Tensor:
    """σ(z) = 1 / (1 + e⁻ᶻ)."""
    return torch.sigmoid(z)


def sigmoid_prime(z: Tensor) -> Tensor:
    """σ'(z) = σ(z)(1 − σ(z)), the derivative of the sigmoid."""
    s = torch.sigmoid(z)
    return s * (1 - s)


def relu(z: Tensor) -> Tensor:
    """ReLU(z) = max(0, z), the rectified linear unit of the first video's aside."""
    return torch.relu(z)


def relu_prime(z: Tensor) -> Tensor:
    """ReLU'(z) = 1 where z > 0, else 0 (at z = 0 too, as autograd takes it)."""
    return (z > 0).to(z.dtype)


def activation_prime(a: Tensor, activation: str = DEFAULTS.activation) -> Tensor:
    """The derivative at z of the neuron's activation function, from its activation a:

        σ'(z) = σ(z)(1 − σ(z)) = a − a²        ReLU'(z) = 1 where a > 0, else 0

    The forward pass already holds every a, so the backward pass need not go back to z; for
    the sigmoid, a − a² is one fused operation (``addcmul``) where σ and its product are three.
    """
    if activation == "relu":
        return (a > 0).to(a.dtype)
    return torch.addcmul(a, a, a, value=-1)


def cost(a: Tensor, y: Tensor) -> Tensor:
    """Quadratic cost of a mini-batch: C = 1/(2m) Σ_x ‖y(x) − a(x)‖².

    The ½ makes ∂C/∂a = (a − y), so BP1 carries no factor 2 and η = 3.0 means what it means
    in the book. (``nn.MSELoss`` drops the ½ and also averages over the 10 outputs.) For a
    stack of networks, one cost per network.
    """
    m = a.shape[-2]
    return F.mse_loss(a, y, reduction="none").sum(dim=(-2, -1)) * (0.5 / m)  # Σ_x Σ_j (a − y)²


def weighted_input(w: Tensor, b: Tensor, a: Tensor) -> Tensor:
    """z = W a + b for every row a of the batch: ``a Wᵀ + b`` in the row form."""
    if w.dim() == 2:
        return torch.addmm(b, a, w.T)  # one fused call: the common case, one network
    return torch.baddbmm(b.unsqueeze(-2), a, w.mT)  # a stack: one matrix product per network


def feedforward(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    x: Tensor,
    activation: str = DEFAULTS.activation,
) -> tuple[list[Tensor], list[Tensor]]:
    """Run x through the network: zˡ = Wˡ aˡ⁻¹ + bˡ and aˡ = σ(zˡ), layer by layer.

    ``activation="relu"``: the hidden layers' aˡ = ReLU(zˡ) instead; the output layer stays
    σ, so that the outputs lie in (0, 1) and the quadratic cost keeps its meaning.

    Returns ``(activations, zs)``: ``activations[0]`` is x itself and ``activations[-1]`` the
    output aᴸ; ``zs[l]`` is the weighted input of the layer that ``weights[l]`` feeds, so
    ``len(zs) == len(weights)``. Differentiable: autograd may run through it too.
    """
    hidden = relu if activation == "relu" else sigmoid
    activations, zs = [x], []
    for l, (w, b) in enumerate(zip(weights, biases, strict=True)):
        z = weighted_input(w, b, activations[-1])
        zs.append(z)
        activations.append(sigmoid(z) if l == len(weights) - 1 else hidden(z))
    return activations, zs


@torch.no_grad()
def backward(
    weights: Sequence[Tensor],
    activations: Sequence[Tensor],
    y: Tensor,
    activation: str = DEFAULTS.activation,
    use_layer: Callable[[int, Tensor, Tensor], None] | None = None,
) -> tuple[list[Tensor], list[Tensor]]:
    """The backward pass: ∂C/∂W and ∂C/∂b from a feedforward's activations, by the four
    equations:

    BP1: δᴸ = (aᴸ − y) ⊙ σ'(zᴸ)              the error of the output layer
    BP2: δˡ = ((Wˡ⁺¹)ᵀ δˡ⁺¹) ⊙ σ'(zˡ)         the error moved back one layer
    BP3: ∂C/∂bˡ = δˡ                          the bias gradient is the error
    BP4: ∂C/∂Wˡ = δˡ (aˡ⁻¹)ᵀ                  the weight gradient: error times input

    σ'(zˡ) comes from aˡ = σ(zˡ) (``activation_prime``); with ReLU hidden layers BP2 takes
    ReLU'(zˡ) in its place. With one example per row, δˡ is an (m, n_l) matrix holding each
    example's own error. C is the mean of the m examples' costs, so BP3 and BP4 take the
    mean over the rows.

    Returns ``(nabla_w, nabla_b)`` shaped like the weights and the biases. With ``use_layer``,
    each layer's BP3 and BP4 are left to it instead, ``use_layer(l, δˡ/m, aˡ⁻¹)`` (then
    ∂C/∂bˡ = Σ_rows δˡ/m and ∂C/∂Wˡ = (δˡ/m)ᵀ aˡ⁻¹), as soon as BP2 no longer needs Wˡ: an
    update can then take BP4 inside its own matrix product, and no gradient is stored.
    """
    m = y.shape[-2]
    n_layers = len(weights)
    nabla_w: list[Tensor] = [torch.empty(0, device=y.device)] * n_layers
    nabla_b: list[Tensor] = [torch.empty(0, device=y.device)] * n_layers

    a = activations[-1]
    delta = (a - y).mul_(activation_prime(a))  # BP1 (the output layer is σ)
    for l in range(n_layers - 1, -1, -1):
        a_in = activations[l]  # aˡ⁻¹, the input of the layer that Wˡ feeds
        # C is the mean of the m examples' costs: each example's δ, divided by m, is its share
        # of the mean (dividing the small δ is cheaper than dividing the gradients).
        share = delta / m
        if l > 0:  # BP2 first: it needs Wˡ as it was
            next_delta = (delta @ weights[l]).mul_(activation_prime(a_in, activation))
        if use_layer is None:
            nabla_b[l] = share.sum(dim=-2)  # BP3: the mean over the batch of each example's δ
            nabla_w[l] = share.mT @ a_in  # BP4: the mean over the batch of δ (aˡ⁻¹)ᵀ
        else:
            use_layer(l, share, a_in)
        if l > 0:
            delta = next_delta  # BP2
    return nabla_w, nabla_b


@torch.no_grad()
def backprop(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    x: Tensor,
    y: Tensor,
    activation: str = DEFAULTS.activation,
) -> tuple[list[Tensor], list[Tensor]]:
    """Gradients ``(nabla_w, nabla_b)`` of the mini-batch cost C = 1/(2m) Σ_x ‖y(x) − a(x)‖².

    The book's ``backprop``: a feedforward that records every zˡ and aˡ, then the backward
    pass of BP1–BP4 (see ``backward``).
    """
    activations, _ = feedforward(weights, biases, x, activation)
    return backward(weights, activations, y, activation)

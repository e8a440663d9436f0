"""Chapter 2 of Nielsen's book in code: feedforward and backpropagation, no autograd.

Everything is in batched matrix form. A mini-batch of m examples is a matrix whose rows are
the examples, so the book's column-vector equation a' = σ(W a + b) becomes the row form
A' = σ(A Wᵀ + b) — the same convention as ``nn.Linear``:

    weights[l]  (n_out, n_in)   the book's Wˡ
    biases[l]   (n_out,)        the book's bˡ
    x           (m, n_in)       one input per row
    y           (m, n_out)      desired outputs, one-hot for digits

The cost of a mini-batch is the book's quadratic cost, C = 1/(2m) Σ_x ‖y(x) − a(x)‖², so the
gradients returned here are means over the batch, exactly what ``w ← w − η ∂C/∂w`` needs.

This module imports only torch and runs under ``torch.no_grad()``: every derivative is the
product of the four equations below, not of PyTorch's tape.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def sigmoid(z: Tensor) -> Tensor:
    """σ(z) = 1 / (1 + e⁻ᶻ)."""
    return torch.sigmoid(z)


def sigmoid_prime(z: Tensor) -> Tensor:
    """σ'(z) = σ(z)(1 − σ(z))."""
    s = torch.sigmoid(z)
    return s * (1 - s)


def cost(a: Tensor, y: Tensor) -> Tensor:
    """Quadratic cost of a mini-batch: C = 1/(2m) Σ_x ‖y(x) − a(x)‖².

    The ½ makes ∂C/∂a = (a − y), so BP1 carries no factor 2 and η = 3.0 means what it means
    in the book. (``nn.MSELoss`` drops the ½ and also averages over the 10 outputs.)
    """
    return F.mse_loss(a, y, reduction="sum") * (0.5 / len(a))  # Σ_x Σ_j (a − y)², ½, 1/m


@torch.no_grad()
def feedforward(
    weights: Sequence[Tensor], biases: Sequence[Tensor], x: Tensor
) -> tuple[list[Tensor], list[Tensor]]:
    """Run x through the network: zˡ = Wˡ aˡ⁻¹ + bˡ and aˡ = σ(zˡ), layer by layer.

    Returns ``(activations, zs)``: ``activations[0]`` is x itself and ``activations[-1]`` the
    output aᴸ; ``zs[l]`` is the weighted input of layer l + 1, so ``len(zs) == len(weights)``.
    """
    activations = [x]
    zs = []
    a = x
    for w, b in zip(weights, biases, strict=True):
        z = torch.addmm(b, a, w.T)  # b + a Wᵀ, one fused call
        a = sigmoid(z)
        zs.append(z)
        activations.append(a)
    return activations, zs


@torch.no_grad()
def backward(
    weights: Sequence[Tensor], activations: Sequence[Tensor], y: Tensor
) -> tuple[list[Tensor], list[Tensor]]:
    """The backward pass: gradients of C = 1/(2m) Σ_x ‖y(x) − a(x)‖² from a feedforward's record.

    BP1: δᴸ = (aᴸ − y) ⊙ σ'(zᴸ)              the error at the output layer
    BP2: δˡ = ((Wˡ⁺¹)ᵀ δˡ⁺¹) ⊙ σ'(zˡ)         the error moved back one layer
    BP3: ∂C/∂bˡ = δˡ                          the bias gradient is the error
    BP4: ∂C/∂Wˡ = δˡ (aˡ⁻¹)ᵀ                  the weight gradient: error times input

    With one example per row, δˡ is an (m, n_l) matrix. C is the mean of the m examples'
    costs, so each example's δ carries a factor 1/m: it is applied once, in BP1 (BP2 is linear
    in δ, so every layer's δ inherits it), and BP3 and BP4 become sums over the rows.

    σ'(zˡ) = σ(zˡ)(1 − σ(zˡ)) = aˡ(1 − aˡ): the activations already hold σ(zˡ), so the
    weighted inputs zˡ are not needed here.

    Returns ``(nabla_w, nabla_b)`` shaped like ``weights`` and the biases.
    """
    m = y.shape[0]
    n_layers = len(weights)
    nabla_w: list[Tensor] = [torch.empty(0)] * n_layers
    nabla_b: list[Tensor] = [torch.empty(0)] * n_layers

    a = activations[-1]
    delta = (a - y) * (a * (1 - a)) / m  # BP1, with the batch mean's 1/m
    for l in range(n_layers - 1, -1, -1):
        if l < n_layers - 1:
            a = activations[l + 1]
            delta = (delta @ weights[l + 1]) * (a * (1 - a))  # BP2
        nabla_b[l] = delta.sum(dim=0)  # BP3, summed over the batch
        nabla_w[l] = delta.T @ activations[l]  # BP4, summed over the batch
    return nabla_w, nabla_b


@torch.no_grad()
def backprop(
    weights: Sequence[Tensor], biases: Sequence[Tensor], x: Tensor, y: Tensor
) -> tuple[list[Tensor], list[Tensor]]:
    """Gradients ``(nabla_w, nabla_b)`` of the mini-batch cost C = 1/(2m) Σ_x ‖y(x) − a(x)‖².

    The book's ``backprop``: a feedforward that records every zˡ and aˡ, then the backward
    pass of BP1–BP4 (see ``backward``). x is (m, n_in), y is (m, n_out); the gradients are
    shaped like ``weights`` and ``biases``.
    """
    activations, _ = feedforward(weights, biases, x)
    return backward(weights, activations, y)

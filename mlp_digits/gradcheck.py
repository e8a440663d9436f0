"""Gradient checking: the book's backpropagation against autograd and finite differences.

Three gradients of the mini-batch cost C = 1/(2m) Σ_x ‖y(x) − a(x)‖² at the same weights:

    manual      ``mlp_digits.backprop.backprop``: BP1–BP4, no tape
    autograd    ``sgd.gradients(..., "autograd")``: PyTorch's tape through
                ``backprop.feedforward``, aˡ = σ(Wˡ aˡ⁻¹ + bˡ)
    fd          central differences, ∂C/∂θᵢ ≈ (C(θ + h eᵢ) − C(θ − h eᵢ)) / 2h, always in
                float64, on a random sample S of the coordinates of each parameter tensor

All three follow the network's activation: with ``activation="relu"`` the hidden layers'
aˡ = ReLU(zˡ) in the forward pass of each, and BP2 takes ReLU'(zˡ). Autograd checks that
BP1–BP4 compute the derivative of the forward pass; finite differences check both against
the cost itself, with no chain rule at all. Each parameter tensor gets one ``GradientRow``;
every comparison is computed in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from mlp_digits import backprop as bp
from mlp_digits import sgd
from mlp_digits.config import DEFAULTS

FD_STEP = 1e-6  # h: truncation error O(h²), rounding error O(ε/h) with ε ≈ 1e-16 in float64
FD_SAMPLES = 20  # coordinates per parameter tensor


@dataclass(frozen=True)
class GradientRow:
    """The three gradients of one parameter tensor, named as in ``DigitsMLP.state_dict()``."""

    name: str
    shape: tuple[int, ...]
    max_abs_diff: float  # max |g_autograd − g_manual|
    rel_error: float  # ‖g_manual − g_autograd‖ / ‖g_autograd‖
    cosine: float  # cosine similarity of g_manual and g_autograd
    fd_rel_error: float  # ‖g_manual[S] − fd[S]‖ / ‖fd[S]‖ on the sampled coordinates S


@contextmanager
def full_float32_precision() -> Iterator[None]:
    """No TF32 inside: on GPUs it rounds float32 matmul inputs to 10 mantissa bits (~1e-3)."""
    precision = torch.get_float32_matmul_precision()
    allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32


def parameter_names(n_layers: int) -> list[str]:
    """``layers.0.weight``, ``layers.0.bias``, ``layers.1.weight``, ...: the state_dict order."""
    return [f"layers.{l}.{kind}" for l in range(n_layers) for kind in ("weight", "bias")]


def network_cost(
    params: Sequence[Tensor], x: Tensor, y: Tensor, activation: str = DEFAULTS.activation
) -> Tensor:
    """C for ``params = [W⁰, b⁰, W¹, b¹, ...]``, by the one forward pass of ``backprop``."""
    activations, _ = bp.feedforward(params[::2], params[1::2], x, activation)
    return bp.cost(activations[-1], y)


def interleaved(nabla_w: Sequence[Tensor], nabla_b: Sequence[Tensor]) -> list[Tensor]:
    """``[∂C/∂W⁰, ∂C/∂b⁰, ∂C/∂W¹, ...]``: the gradients in state_dict order."""
    return [g for pair in zip(nabla_w, nabla_b, strict=True) for g in pair]


@torch.no_grad()
def central_differences(
    f: Callable[[list[Tensor]], Tensor],
    params: Sequence[Tensor],
    samples: Sequence[Tensor],
    h: float = FD_STEP,
) -> list[Tensor]:
    """(f(θ + h eᵢ) − f(θ − h eᵢ)) / 2h for each flat index i of ``samples[k]`` in ``params[k]``.

    θ is a float64 copy of ``params``, whatever their dtype. The divisor is the step actually
    taken, (θᵢ + h) − (θᵢ − h) as rounded, not 2h.
    """
    theta = [p.detach().to(torch.float64).clone() for p in params]
    estimates = []
    for p, indices in zip(theta, samples):
        flat, column = p.view(-1), []
        for i in indices.tolist():
            old = flat[i].item()
            flat[i] = up = old + h
            f_up = f(theta).item()
            flat[i] = down = old - h
            f_down = f(theta).item()
            flat[i] = old
            column.append((f_up - f_down) / (up - down))
        estimates.append(torch.tensor(column, dtype=torch.float64))
    return estimates


def relative_error(g: Tensor, reference: Tensor) -> float:
    """‖g − reference‖ / ‖reference‖, or the absolute ‖g − reference‖ when reference is 0."""
    diff = torch.linalg.vector_norm(g - reference).item()
    norm = torch.linalg.vector_norm(reference).item()
    return diff / norm if norm > 0 else diff


def cosine_similarity(a: Tensor, b: Tensor) -> float:
    na, nb = torch.linalg.vector_norm(a).item(), torch.linalg.vector_norm(b).item()
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return torch.dot(a, b).item() / (na * nb)


def compare_gradients(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    x: Tensor,
    y: Tensor,
    n_samples: int = FD_SAMPLES,
    h: float = FD_STEP,
    seed: int = 0,
    activation: str = DEFAULTS.activation,
) -> list[GradientRow]:
    """One ``GradientRow`` per tensor, in state_dict order; ``seed`` picks the sampled S.

    ``activation`` is the hidden layers' (the output layer is σ): each of the three gradients
    is taken of the network with that activation.
    """
    params = interleaved(weights, biases)
    generator = torch.Generator().manual_seed(seed)
    samples = [
        torch.randperm(p.numel(), generator=generator)[:n_samples].sort().values for p in params
    ]
    x64, y64 = x.to(torch.float64), y.to(torch.float64)
    with full_float32_precision():
        manual = interleaved(*bp.backprop(weights, biases, x, y, activation))
        step = sgd.gradients(weights, biases, x, y, "autograd", activation)
        auto = interleaved(step.nabla_w, step.nabla_b)

        def cost64(theta: list[Tensor]) -> Tensor:
            return network_cost(theta, x64, y64, activation)

        fd = central_differences(cost64, params, samples, h)
    rows = []
    for name, p, g, ga, d, s in zip(
        parameter_names(len(weights)), params, manual, auto, fd, samples
    ):
        g, ga = g.detach().cpu().double().flatten(), ga.detach().cpu().double().flatten()
        max_abs = (g - ga).abs().max().item()
        rows.append(
            GradientRow(
                name,
                tuple(p.shape),
                max_abs,
                relative_error(g, ga),
                cosine_similarity(g, ga),
                relative_error(g[s], d),
            )
        )
    return rows


def format_table(rows: Sequence[GradientRow]) -> str:
    """The rows as an aligned text table, errors in scientific notation."""
    header = ("tensor", "shape", "max|auto-manual|", "rel err autograd", "cosine", "rel err fd")
    cells = [
        (
            r.name,
            "x".join(map(str, r.shape)),
            f"{r.max_abs_diff:.1e}",
            f"{r.rel_error:.1e}",
            f"{r.cosine:.6e}",
            f"{r.fd_rel_error:.1e}",
        )
        for r in rows
    ]
    widths = [max(len(c[k]) for c in [header, *cells]) for k in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if k < 2 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths)))
        for r in [header, *cells]
    ]
    return "\n".join(lines)


def failures(rows: Sequence[GradientRow], tolerance: float, fd_tolerance: float) -> list[str]:
    """Every failed check as a phrase; empty when all pass. A check passes when its relative
    error is strictly below its tolerance, so NaN fails and a tolerance of 0 always fails."""
    failed = []
    for r in rows:
        if not r.rel_error < tolerance:
            failed.append(f"{r.name} vs autograd {r.rel_error:.1e}")
        if not r.fd_rel_error < fd_tolerance:
            failed.append(f"{r.name} vs finite differences {r.fd_rel_error:.1e}")
    return failed

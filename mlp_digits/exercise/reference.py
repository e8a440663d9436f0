"""The right answers for the checker's networks: the project's own BP1–BP4 in float64,
refereed by central finite differences of the book's per-example cost C_x = ½‖y − a‖².

``mlp_digits.backprop`` works in the row form (x (m, n_in), a bias a row); with one example
per call (m = 1) its mean over the mini-batch is the example's own gradient, which is what
the book's ``backprop(x, y)`` returns. This is the only module of ``mlp_digits.exercise``
that imports torch: a learner's file is checked in a child process that needs NumPy only.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from mlp_digits import backprop as bp
from mlp_digits import gradcheck
from mlp_digits.exercise.problem import MAIN_SIZES, SEED, SQUARE_SIZES, Reference, draw

FD_SAMPLES = 8  # coordinates per parameter tensor and example
FD_LIMIT = 1e-6  # the referee: the reference gradients must agree with finite differences


def as_row(column: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(column).reshape(1, -1)


def as_columns(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """Rows (1, n) or vectors (n,) as the book's columns (n, 1)."""
    return [t.numpy().reshape(-1, 1).copy() for t in tensors]


def fd_error(
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    nabla_w: list[torch.Tensor],
    nabla_b: list[torch.Tensor],
) -> float:
    """The largest relative error of one example's gradients against central differences of
    its cost, on a sample of each tensor's coordinates."""
    params = gradcheck.interleaved(weights, biases)
    generator = torch.Generator().manual_seed(SEED)
    samples = [torch.randperm(p.numel(), generator=generator)[:FD_SAMPLES] for p in params]
    fd = gradcheck.central_differences(
        lambda theta: gradcheck.network_cost(theta, x, y), params, samples
    )
    grads = gradcheck.interleaved(nabla_w, nabla_b)
    return max(gradcheck.relative_error(g.flatten()[s], d) for g, s, d in zip(grads, samples, fd))


@cache
def reference(sizes: tuple[int, ...], seed: int = SEED) -> Reference:
    """The checker's network of ``sizes``, its examples and their right answers."""
    weights, biases, xs, ys = draw(sizes, seed)
    w = [torch.from_numpy(m) for m in weights]
    b = [torch.from_numpy(v).reshape(-1) for v in biases]
    answers: dict[str, list[list[np.ndarray]]] = {
        name: [] for name in ("activations", "zs", "nabla_w", "nabla_b")
    }
    worst = 0.0
    for x, y in zip(map(as_row, xs), map(as_row, ys)):
        activations, zs = bp.feedforward(w, b, x)
        nabla_w, nabla_b = bp.backward(w, activations, y)  # m = 1: the example's own gradient
        worst = max(worst, fd_error(w, b, x, y, nabla_w, nabla_b))
        answers["activations"].append(as_columns(activations))
        answers["zs"].append(as_columns(zs))
        answers["nabla_w"].append([g.numpy().copy() for g in nabla_w])
        answers["nabla_b"].append(as_columns(nabla_b))
    if not worst < FD_LIMIT:
        raise RuntimeError(
            f"the reference BP1-BP4 disagree with finite differences ({worst:.1e}) on {sizes}"
        )
    return Reference(tuple(sizes), weights, biases, xs, ys, fd_rel_error=worst, **answers)


def references() -> dict[str, Reference]:
    """The two networks every learner's file is checked on: the main one, and the square one
    where every shape fits."""
    return {"main": reference(MAIN_SIZES), "square": reference(SQUARE_SIZES)}

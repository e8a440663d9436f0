"""The checker's network and examples, and the right answers for them: NumPy only.

The checker chooses everything the learner's code sees: weights and biases drawn from a
fixed seed and set on the learner's instance before each call, and a few examples (x, y)
as the book's columns. The draw is chosen so that the known wrong variants differ clearly
from the right answer: weights N(0, (1.5/√n_in)²) keep every σ'(z) well away from 0, the
biases are nonzero, the inputs are all different, and the three examples want three
different digits. ``Reference`` holds the right answers; ``mlp_digits.exercise.reference``
computes them (by the project's BP1–BP4, refereed by finite differences).

Shapes are the book's: weights[k] (n_out, n_in), biases[k] (n_out, 1), x (n_in, 1), one
column per example. Index k counts weight matrices from 0; the book's layer l = k + 2 is the
layer that weights[k] feeds (layer 1 is the input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAIN_SIZES = (784, 16, 16, 10)  # the videos' network, the one a learner's code is for
# Every layer of one width: the shapes fit even where a transpose is missing, so that the
# numbers can say which equation is wrong when the main network raises.
SQUARE_SIZES = (12, 12, 12, 12)
N_EXAMPLES = 3  # the mini-batch of update_mini_batch, and the examples backprop sees
ETA = 3.0  # the book's η
SEED = 22
TOLERANCE = 1e-5  # relative: float64 rounding is ~1e-15, the wrong variants differ by > 1e-2


@dataclass(frozen=True)
class Reference:
    """One network, its examples, and the right answers, per example e and weight index k.

    ``activations[e][k]`` is the input of weights[k] (``activations[e][0]`` is x) and
    ``activations[e][-1]`` the output aᴸ; ``zs[e][k]`` the weighted input of the layer that
    weights[k] feeds; ``nabla_b[e][k]`` = δ of that layer (BP3) and ``nabla_w[e][k]`` its
    ∂C_x/∂w (BP4), for the book's per-example cost C_x = ½‖y − a‖².
    """

    sizes: tuple[int, ...]
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    xs: list[np.ndarray]
    ys: list[np.ndarray]
    activations: list[list[np.ndarray]]
    zs: list[list[np.ndarray]]
    nabla_b: list[list[np.ndarray]]
    nabla_w: list[list[np.ndarray]]
    fd_rel_error: float  # largest relative error of the gradients against finite differences
    eta: float = ETA

    @property
    def n_layers(self) -> int:
        """The number of weight matrices: L − 1 for the book's L layers."""
        return len(self.weights)

    def layer(self, k: int) -> int:
        """The book's layer number of the layer that weights[k] feeds."""
        return k + 2

    def columns(self, per_example: list[list[np.ndarray]], k: int) -> np.ndarray:
        """Layer k's column of every example side by side: (n, N_EXAMPLES)."""
        return np.hstack([quantity[k] for quantity in per_example])

    def mini_batch(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The examples as update_mini_batch takes them: a list of fresh (x, y) pairs."""
        return [(x.copy(), y.copy()) for x, y in zip(self.xs, self.ys)]


def draw(sizes: tuple[int, ...], seed: int = SEED) -> tuple[list[np.ndarray], ...]:
    """``(weights, biases, xs, ys)`` for ``sizes``: see the module's docstring."""
    rng = np.random.default_rng([seed, *sizes])
    weights, biases = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        weights.append(rng.normal(0.0, 1.5 / np.sqrt(n_in), (n_out, n_in)))
        biases.append(rng.normal(0.0, 0.5, (n_out, 1)))
    xs = [rng.uniform(0.0, 1.0, (sizes[0], 1)) for _ in range(N_EXAMPLES)]
    digits = rng.choice(sizes[-1], N_EXAMPLES, replace=False)
    ys = [np.eye(sizes[-1])[:, [digit]] for digit in digits]
    return weights, biases, xs, ys


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖ / ‖b‖ (the absolute ‖a − b‖ when b is 0); inf when the shapes differ."""
    if np.shape(a) != np.shape(b):
        return float("inf")
    diff = float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
    norm = float(np.linalg.norm(b))
    return diff / norm if norm > 0 else diff


def close(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether a equals b to the checker's tolerance (NaN never does)."""
    if a is None or b is None:
        return False
    return relative_error(a, b) <= TOLERANCE

"""The well-known wrong versions of BP1–BP4 and of the SGD step, computed so that a learner's
numbers can be matched against them and the mistake named.

Each ``Variant`` is what a learner's code would give with one mistake, at the checker's
weights: its mistake id (None for a mistake with no id of its own), its value, and one or two
sentences pointing to the equation and saying what it should be. The variants of BP2, BP3
and BP4 start from the learner's own δ of the layer above or of the layer itself, so that a
mistake is named where it is made, not where it shows. A variant whose shapes do not fit
(most transpositions on 784-16-16-10) is left out: the square network has them all.

Arrays: δ of a layer is (n, E), one column per example; ∂C/∂w of a layer is (E, n_out, n_in).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlp_digits.book import sigmoid_prime
from mlp_digits.exercise.problem import Reference, close

MISTAKES = {
    "missing_sigma_prime": "BP1 or BP2 without the factor σ'(z)",
    "sigma_prime_of_activation": "σ' applied to a = σ(z) instead of z",
    "wrong_sign": "y − a in place of a − y",
    "not_transposed": "wˡ⁺¹ where BP2 needs its transpose (or ∂C/∂w transposed)",
    "wrong_layer": "σ'(z), the activation or the weights of a neighbouring layer",
    "missing_bias_gradient": "∂C/∂b left at zero or never set",
    "eta_not_divided": "the step uses η, not η/m",
    "wrong_direction": "w + η ∂C/∂w: the step goes uphill",
    "online_update": "the weights change between the examples of one mini-batch",
}
BP1 = "BP1 is δᴸ = (aᴸ − y) ⊙ σ'(zᴸ)"
BP2 = "BP2 is δˡ = ((wˡ⁺¹)ᵀ δˡ⁺¹) ⊙ σ'(zˡ)"
BP3 = "BP3 says ∂C/∂bˡ = δˡ"
BP4 = "BP4 says ∂C/∂wˡ = δˡ (aˡ⁻¹)ᵀ"
STEP = "w → w − (η/m) Σₓ ∂Cₓ/∂w"
SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def sup(n: int) -> str:
    """n as a superscript: 4 → ⁴, for δ⁴, z³, w²."""
    return str(n).translate(SUPERSCRIPTS)


@dataclass(frozen=True)
class Variant:
    mistake: str | None
    value: np.ndarray | list[np.ndarray]
    message: str


Candidate = tuple[str | None, Callable[[], np.ndarray | list[np.ndarray]], str]


def computed(candidates: list[Candidate]) -> list[Variant]:
    """The candidates whose shapes fit, computed."""
    variants = []
    for mistake, compute, message in candidates:
        try:
            value = compute()
        except ValueError:  # NumPy's shape mismatch: this mistake cannot happen here
            continue
        variants.append(Variant(mistake, value, message))
    return variants


def bp1(ref: Reference) -> list[Variant]:
    """δᴸ with one mistake, from the checker's aᴸ, y and zᴸ."""
    n, L = ref.n_layers, ref.layer(ref.n_layers - 1)
    a, y, z = ref.columns(ref.activations, n), np.hstack(ref.ys), ref.columns(ref.zs, n - 1)
    z_before, a_before = ref.columns(ref.zs, n - 2), ref.columns(ref.activations, n - 1)
    d, zL, before = f"δ{sup(L)}", f"z{sup(L)}", sup(L - 1)
    return computed(
        [
            (
                "missing_sigma_prime",
                lambda: a - y,
                f"{d} lacks the factor σ'({zL}): {BP1}, so multiply (a − y) elementwise by "
                "sigmoid_prime(zs[-1]).",
            ),
            (
                "sigma_prime_of_activation",
                lambda: (a - y) * sigmoid_prime(a),
                f"σ' is taken of the output a{sup(L)} = σ({zL}) instead of {zL}: {BP1}, with "
                "sigmoid_prime(zs[-1]), not sigmoid_prime(activations[-1]).",
            ),
            (
                "wrong_sign",
                lambda: (y - a) * sigmoid_prime(z),
                f"{d} has the wrong sign: {BP1}, with a − y (the derivative of C = ½‖y − a‖² "
                "by a), not y − a.",
            ),
            (
                "wrong_layer",
                lambda: (a - y) * sigmoid_prime(z_before),
                f"{d} takes σ' of z{before}, the layer before's: {BP1}, with the output "
                "layer's own zs[-1].",
            ),
            (
                "wrong_layer",
                lambda: (a_before - y) * sigmoid_prime(z),
                f"{d} takes a{before}, the layer before's activation, for the output: {BP1}, "
                "with the output activations[-1].",
            ),
        ]
    )


def bp2(ref: Reference, k: int, upstream: np.ndarray) -> list[Variant]:
    """δ of the layer weights[k] feeds with one mistake, from the learner's δ above it."""
    l, w = ref.layer(k), ref.weights
    z, a = ref.columns(ref.zs, k), ref.columns(ref.activations, k + 1)
    back = w[k + 1].T @ upstream
    d, zl, after = f"δ{sup(l)}", f"z{sup(l)}", f"weights[{k + 1}]"
    candidates: list[Candidate] = [
        (
            "missing_sigma_prime",
            lambda: back,
            f"{d} lacks the factor σ'({zl}): {BP2}, so multiply by sigmoid_prime of layer {l}'s z.",
        ),
        (
            "sigma_prime_of_activation",
            lambda: back * sigmoid_prime(a),
            f"σ' is taken of the activation a{sup(l)} = σ({zl}) instead of {zl}: {BP2}, with "
            f"layer {l}'s z (from zs), not its activation.",
        ),
        ("wrong_sign", lambda: -back * sigmoid_prime(z), f"{d} has the wrong sign: {BP2}."),
        (
            "not_transposed",
            lambda: (w[k + 1] @ upstream) * sigmoid_prime(z),
            f"BP2 moves the error back through the transpose, δˡ = ((wˡ⁺¹)ᵀ δˡ⁺¹) ⊙ σ'(zˡ): "
            f"{d} uses w{sup(l + 1)} itself where it needs {after}.T.",
        ),
        (
            "wrong_layer",
            lambda: back * sigmoid_prime(ref.columns(ref.zs, k + 1)),
            f"{d} takes σ' of z{sup(l + 1)}, the next layer's: {BP2}, with layer {l}'s own {zl}.",
        ),
        (
            "wrong_layer",
            lambda: (w[k].T @ upstream) * sigmoid_prime(z),
            f"{d} is moved back through w{sup(l)} (weights[{k}]), the layer's own weights: "
            f"{BP2}, through the next layer's, {after}.T.",
        ),
    ]
    if k >= 1:
        z_before = ref.columns(ref.zs, k - 1)
        candidates.append(
            (
                "wrong_layer",
                lambda: back * sigmoid_prime(z_before),
                f"{d} takes σ' of z{sup(l - 1)}, the layer before's: {BP2}, with layer {l}'s "
                f"own {zl}.",
            )
        )
    return computed(candidates)


def bp3(ref: Reference, k: int, deltas: dict[int, np.ndarray]) -> list[Variant]:
    """nabla_b of the layer weights[k] feeds with one mistake, from the learner's δs."""
    l, shape = ref.layer(k), deltas[k].shape
    candidates: list[Candidate] = [
        (
            "missing_bias_gradient",
            lambda: np.zeros(shape),
            f"∂C/∂b{sup(l)} is left at zero (nabla_b[{k}] is never set): {BP3}, so set it to "
            "the layer's delta.",
        )
    ]
    for other in (k + 1, k - 1):
        if other in deltas:
            candidates.append(
                (
                    "wrong_layer",
                    lambda other=other: deltas[other],
                    f"nabla_b[{k}] holds δ{sup(ref.layer(other))}, a neighbouring layer's "
                    f"error: {BP3}, the error of layer {l} itself.",
                )
            )
    return [v for v in computed(candidates) if np.shape(v.value) == shape]


def outer(delta: np.ndarray, a: np.ndarray) -> np.ndarray:
    """δ aᵀ of every example, (E, n_out, n_in), from δ (n_out, E) and a (n_in, E)."""
    return np.einsum("ie,je->eij", delta, a)


def bp4(ref: Reference, k: int, delta: np.ndarray) -> list[Variant]:
    """nabla_w of weights[k] with one mistake, from the learner's δ of that layer."""
    l, a_in = ref.layer(k), ref.columns(ref.activations, k)
    a_own = ref.columns(ref.activations, k + 1)
    shape = (delta.shape[1], *ref.weights[k].shape)
    candidates: list[Candidate] = [
        (
            "not_transposed",
            lambda: outer(a_in, delta),
            f"nabla_w[{k}] is the transpose of ∂C/∂w{sup(l)}: {BP4}, of shape (n_out, n_in) "
            f"like weights[{k}]: delta times the input's transpose, not the input times delta's.",
        ),
        (
            "wrong_layer",
            lambda: outer(delta, a_own),
            f"nabla_w[{k}] multiplies δ{sup(l)} by a{sup(l)}, the layer's own activation: "
            f"{BP4}, with a{sup(l - 1)}, the layer before's (activations[{k}] of the forward "
            "pass).",
        ),
        (None, lambda: np.zeros(shape), f"nabla_w[{k}] is left at zero: {BP4}."),
    ]
    if k >= 1:
        a_back = ref.columns(ref.activations, k - 1)
        candidates.append(
            (
                "wrong_layer",
                lambda: outer(delta, a_back),
                f"nabla_w[{k}] multiplies δ{sup(l)} by a{sup(l - 2)}, two layers back: {BP4}, "
                f"with a{sup(l - 1)}, the layer before's.",
            )
        )
    return [v for v in computed(candidates) if np.shape(v.value) == shape]


def stepped(params: list[np.ndarray], grads: list[np.ndarray], scale: float) -> list[np.ndarray]:
    return [p - scale * g for p, g in zip(params, grads)]


def update(
    params: list[np.ndarray],
    summed: list[np.ndarray],
    online: Callable[[float], list[np.ndarray] | None],
    eta: float,
    m: int,
) -> list[Variant]:
    """The parameters after a wrong step, from ``params`` (weights then biases) and the
    learner's own summed gradients; ``online(scale)`` steps by −scale times each example's
    gradient in turn instead (None if the learner's backprop cannot be called so)."""
    uphill = (
        f"The step goes uphill: gradient descent steps {STEP}, against the gradient; yours adds it."
    )
    online_message = (
        "The weights change between the examples of one mini-batch: update_mini_batch should "
        f"sum every example's gradient at the same weights first, then take one step {STEP}."
    )
    variants = [
        Variant(
            "eta_not_divided",
            stepped(params, summed, eta),
            f"The step uses η, not η/m: update_mini_batch should step {STEP}, dividing the "
            "summed gradients by the mini-batch's size m = len(mini_batch).",
        ),
        Variant("wrong_direction", stepped(params, summed, -eta / m), uphill),
        Variant("wrong_direction", stepped(params, summed, -eta), uphill),
    ]
    for scale in (eta / m, eta):
        after = online(scale)
        if after is not None:
            variants.append(Variant("online_update", after, online_message))
    unchanged = (
        "update_mini_batch leaves the weights and biases as they were: assign the stepped "
        f"lists to self.weights and self.biases, {STEP}."
    )
    variants.append(Variant(None, [p.copy() for p in params], unchanged))
    return variants


def flat(value: np.ndarray | list[np.ndarray | None] | None) -> np.ndarray | None:
    """One vector of a value or of a list of arrays (None if any part is missing)."""
    if value is None:
        return None
    if isinstance(value, list):
        if any(v is None for v in value):
            return None
        return np.concatenate([np.ravel(v) for v in value])
    return np.asarray(value)


def matching(
    value: np.ndarray | list[np.ndarray] | None, variants: list[Variant]
) -> Variant | None:
    """The first variant that ``value`` equals, or None."""
    for v in variants:
        if close(flat(value), flat(v.value)):
            return v
    return None

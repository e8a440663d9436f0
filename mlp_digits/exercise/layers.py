"""BP1–BP4 graded layer by layer, from the output back, from what ``backprop`` returns.

A learner's ``backprop`` returns only ``(nabla_b, nabla_w)``, so each layer's δ is read from
them: BP3 says nabla_b = δ, and BP4 says nabla_w = δ aᵀ, so δ = nabla_w a / ‖a‖² as well (a,
the layer's input, is the checker's own). When both agree, or nabla_b is right, δ is nabla_b;
when only nabla_w is of the form δ aᵀ, δ comes from it (and nabla_b is a BP3 mistake);
otherwise from nabla_b (and nabla_w is a BP4 mistake). Each equation is then judged against
the learner's own δ of the layer above: a layer that is wrong only because it inherits a
wrong δ is a consequence, and a mistake is named where it is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlp_digits.book import sigmoid_prime
from mlp_digits.exercise import variants
from mlp_digits.exercise.problem import Reference, close, relative_error
from mlp_digits.exercise.report import Check
from mlp_digits.exercise.variants import sup


@dataclass
class Verdict:
    """One layer's verdict in one check."""

    k: int
    kind: str  # "pass", "own" (a mistake made here) or "consequence"
    message: str
    mistake: str | None = None
    by_shape: bool = False


@dataclass
class Gradients:
    """The learner's nabla_b (n, E) and nabla_w (E, n_out, n_in) of each layer, stacked over
    the examples (None where their shape is not the book's), and why not."""

    nabla_b: dict[int, np.ndarray | None]
    nabla_w: dict[int, np.ndarray | None]
    problems: dict[tuple[str, int], str]


def as_array(value: Any) -> np.ndarray | None:
    try:
        return np.array(value, dtype=np.float64)
    except Exception:  # None, ragged lists, strings
        return None


def returned_pair(value: Any, n: int) -> str | None:
    """What is wrong with backprop's value as (nabla_b, nabla_w) of n layers, or None."""
    if value is None:
        return "backprop returns None: it should return the pair (nabla_b, nabla_w)"
    if not isinstance(value, tuple | list) or len(value) != 2:
        what = f"a {type(value).__name__}"
        return f"backprop returns {what}: it should return the pair (nabla_b, nabla_w)"
    for name, part in zip(("nabla_b", "nabla_w"), value):
        if not isinstance(part, tuple | list) or len(part) != n:
            return f"backprop's {name} should be a list of {n} arrays, one per layer"
    return None


def stack(ref: Reference, values: list[Any]) -> Gradients:
    """The examples' ``(nabla_b, nabla_w)`` pairs, checked against the book's shapes."""
    nabla_b: dict[int, np.ndarray | None] = {}
    nabla_w: dict[int, np.ndarray | None] = {}
    problems = {}
    for k in range(ref.n_layers):
        for kind, index, out in (("nabla_b", 0, nabla_b), ("nabla_w", 1, nabla_w)):
            want = (ref.biases if kind == "nabla_b" else ref.weights)[k].shape
            like = f"{'biases' if kind == 'nabla_b' else 'weights'}[{k}]"
            entries = [v[index][k] for v in values]
            arrays = [as_array(e) for e in entries]
            out[k] = None
            if any(e is None for e in entries):
                problems[kind, k] = f"{kind}[{k}] is None (never set?); it should be like {like}"
            elif any(a is None or a.ndim == 0 for a in arrays):
                problems[kind, k] = f"{kind}[{k}] is not an array of the shape of {like}"
            elif any(a.shape != want for a in arrays):
                found = next(a.shape for a in arrays if a.shape != want)
                problems[kind, k] = (
                    f"{kind}[{k}] has shape {found}; it should be {want}, like {like}"
                )
            else:
                out[k] = np.hstack(arrays) if kind == "nabla_b" else np.stack(arrays)
    return Gradients(nabla_b, nabla_w, problems)


def observed_deltas(ref: Reference, grads: Gradients) -> dict[int, np.ndarray | None]:
    """Each layer's δ as the learner's backprop has it, read through nabla_b and nabla_w."""
    deltas = {}
    for k in range(ref.n_layers):
        a = ref.columns(ref.activations, k)  # the layer's input, one column per example
        nb, nw = grads.nabla_b[k], grads.nabla_w[k]
        from_w = None
        if nw is not None:
            from_w = np.einsum("eij,je->ie", nw, a) / np.sum(a * a, axis=0)
        right_b = close(nb, ref.columns(ref.nabla_b, k))  # then BP1/BP2 and BP3 are right
        if nb is not None and (right_b or nw is not None and close(nw, variants.outer(nb, a))):
            deltas[k] = nb
        elif from_w is not None and close(nw, variants.outer(from_w, a)):
            deltas[k] = from_w
        else:
            deltas[k] = nb if nb is not None else from_w
    return deltas


def cause(ref: Reference, k: int) -> str:
    """Where δ of the layer weights[k] feeds is computed: BP1 or BP2."""
    return "BP1" if k == ref.n_layers - 1 else "BP2"


def verdict(
    k: int,
    value: np.ndarray,
    right: np.ndarray,
    expected: np.ndarray | None,
    found: list[variants.Variant],
    generic: str,
    follows: str,
) -> Verdict:
    """Right; else right from the learner's own earlier δ (a consequence); else a mistake
    made here, named if it is one of the known variants."""
    if close(value, right):
        return Verdict(k, "pass", "")
    if expected is not None and close(value, expected):
        return Verdict(k, "consequence", follows)
    variant = variants.matching(value, found)
    if variant is None:
        err = relative_error(value, right if expected is None else expected)
        return Verdict(k, "own", f"{generic} (relative error {err:.2g})")
    return Verdict(k, "own", variant.message, variant.mistake)


def grade_deltas(ref: Reference, deltas: dict[int, np.ndarray | None]) -> list[Verdict]:
    """BP1 (the output layer) then BP2 (each hidden layer), from the output back."""
    verdicts = []
    for k in range(ref.n_layers - 1, -1, -1):
        l, delta, right = ref.layer(k), deltas[k], ref.columns(ref.nabla_b, k)
        d, up = f"δ{sup(l)}", f"δ{sup(l + 1)}"
        if delta is None:
            message = f"{d} cannot be seen: neither nabla_b[{k}] nor nabla_w[{k}] has its shape"
            verdicts.append(Verdict(k, "own", message, by_shape=True))
        elif k == ref.n_layers - 1:
            generic = f"{d} is not (a{sup(l)} − y) ⊙ σ'(z{sup(l)})"
            verdicts.append(verdict(k, delta, right, None, variants.bp1(ref), generic, ""))
        else:
            above = deltas[k + 1] if deltas[k + 1] is not None else ref.columns(ref.nabla_b, k + 1)
            expected = (ref.weights[k + 1].T @ above) * sigmoid_prime(ref.columns(ref.zs, k))
            generic = f"{d} is not ((w{sup(l + 1)})ᵀ {up}) ⊙ σ'(z{sup(l)}) of your {up}"
            follows = (
                f"{d} follows BP2 from your {up}; it is wrong only because {up} is "
                f"(see {cause(ref, k + 1)})"
            )
            found = variants.bp2(ref, k, above)
            verdicts.append(verdict(k, delta, right, expected, found, generic, follows))
    return verdicts


def grade_nablas(
    ref: Reference, grads: Gradients, deltas: dict[int, np.ndarray | None], kind: str
) -> list[Verdict]:
    """BP3 (``kind`` "nabla_b") or BP4 ("nabla_w") of each layer, from the output back,
    against the learner's own δ of the layer."""
    verdicts = []
    known = {k: d for k, d in deltas.items() if d is not None}
    for k in range(ref.n_layers - 1, -1, -1):
        l, delta = ref.layer(k), deltas[k]
        value = (grads.nabla_b if kind == "nabla_b" else grads.nabla_w)[k]
        if value is None:
            problem = grads.problems[kind, k]
            unset = kind == "nabla_b" and problem.startswith(f"nabla_b[{k}] is None")
            mistake = "missing_bias_gradient" if unset else None
            verdicts.append(Verdict(k, "own", problem, mistake, by_shape=not unset))
            continue
        follows = (
            f"{kind}[{k}] follows {'BP3' if kind == 'nabla_b' else 'BP4'} from your δ{sup(l)}; "
            f"it is wrong only because δ{sup(l)} is (see {cause(ref, k)})"
        )
        if kind == "nabla_b":
            right, expected = ref.columns(ref.nabla_b, k), delta
            found = variants.bp3(ref, k, known) if delta is not None else []
            generic = f"nabla_b[{k}] is not your δ{sup(l)} (BP3: ∂C/∂bˡ = δˡ)"
        else:
            a = ref.columns(ref.activations, k)
            right = np.stack([g[k] for g in ref.nabla_w])
            expected = variants.outer(delta, a) if delta is not None else None
            found = variants.bp4(ref, k, delta) if delta is not None else []
            generic = f"nabla_w[{k}] is not your δ{sup(l)} (a{sup(l - 1)})ᵀ (BP4)"
        verdicts.append(verdict(k, value, right, expected, found, generic, follows))
    return verdicts


PASSED = {
    "BP1": "δᴸ = (aᴸ − y) ⊙ σ'(zᴸ)",
    "BP2": "δˡ = ((wˡ⁺¹)ᵀ δˡ⁺¹) ⊙ σ'(zˡ) in every hidden layer",
    "BP3": "∂C/∂bˡ = δˡ in every layer",
    "BP4": "∂C/∂wˡ = δˡ (aˡ⁻¹)ᵀ in every layer",
}


def summary(name: str, ref: Reference, verdicts: list[Verdict]) -> Check:
    """A check from its layers' verdicts: the first mistake made in a layer (from the output
    back), else the first consequence, else passed."""
    own = [v for v in verdicts if v.kind == "own"]
    follows = [v for v in verdicts if v.kind == "consequence"]
    first = own[0] if own else follows[0] if follows else None
    if first is None:
        return Check(name, None, True, None, False, PASSED[name])
    consequence = first.kind == "consequence"
    layer = ref.layer(first.k)
    return Check(name, layer, False, first.mistake, consequence, first.message, first.by_shape)


def grade_backprop(ref: Reference, values: list[Any]) -> dict[str, Check]:
    """BP1–BP4 from backprop's value for each of the reference's examples."""
    problem = next((p for v in values if (p := returned_pair(v, ref.n_layers))), None)
    if problem:
        return unobservable(ref, problem, by_shape=False)
    grads = stack(ref, values)
    deltas = observed_deltas(ref, grads)
    verdicts = grade_deltas(ref, deltas)
    return {
        "BP1": summary("BP1", ref, verdicts[:1]),
        "BP2": summary("BP2", ref, verdicts[1:]),
        "BP3": summary("BP3", ref, grade_nablas(ref, grads, deltas, "nabla_b")),
        "BP4": summary("BP4", ref, grade_nablas(ref, grads, deltas, "nabla_w")),
    }


def unobservable(ref: Reference, message: str, by_shape: bool) -> dict[str, Check]:
    """BP1 fails with ``message`` (backprop raised, or returned no pair of lists) and BP2–BP4
    cannot be seen at all: consequences."""
    L = ref.layer(ref.n_layers - 1)
    checks = {"BP1": Check("BP1", L, False, None, False, message, by_shape)}
    for name in ("BP2", "BP3", "BP4"):
        checks[name] = Check(name, None, False, None, True, "not checked: see BP1", by_shape)
    return checks

"""A learner's ``Network`` class graded: feedforward, BP1–BP4 and update_mini_batch on the
checker's 784-16-16-10 network, then, where a shape got in the way, on the square network
whose layers all have one width, so that the numbers can say which equation is wrong.

``update_mini_batch`` runs first with a spy on ``backprop``: when it passes the whole
mini-batch as one matrix (one column per example), the file is the chapter-2 exercise's,
and ``backprop(X, Y)`` must return the gradients summed over the columns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mlp_digits.exercise import layers, variants
from mlp_digits.exercise.learner import Learner, Outcome, Uncheckable
from mlp_digits.exercise.problem import (
    MAIN_SIZES,
    SQUARE_SIZES,
    Reference,
    close,
    relative_error,
)
from mlp_digits.exercise.report import CHECKS, Check, Report

BACKPROP_CHECKS = ("BP1", "BP2", "BP3", "BP4")


@dataclass
class Graded:
    """The checks of one network, and backprop's exception if it raised."""

    checks: dict[str, Check]
    backprop_error: str | None


def snapshot(value: Any) -> Any:
    """backprop's pair with every array copied now: a learner may reuse its arrays."""
    pair = isinstance(value, tuple | list) and len(value) == 2
    if pair and all(isinstance(part, tuple | list) for part in value):
        return tuple([None if g is None else np.array(g) for g in part] for part in value)
    return value


def call_backprop(learner: Learner, net: Any, ref: Reference, x: Any, y: Any) -> Outcome:
    learner.set_parameters(net, ref.weights, ref.biases)
    outcome = learner.call("backprop(x, y)", net.backprop, x, y)
    return replace(outcome, value=snapshot(outcome.value))


def gradient_lists(ref: Reference, value: Any) -> list[np.ndarray] | None:
    """backprop's value as ``[*nabla_w, *nabla_b]`` of the book's shapes, or None."""
    if layers.returned_pair(value, ref.n_layers):
        return None
    nabla_b, nabla_w = (list(map(layers.as_array, part)) for part in value)
    grads = [*nabla_w, *nabla_b]
    shapes = [p.shape for p in [*ref.weights, *ref.biases]]
    if any(g is None or g.shape != s for g, s in zip(grads, shapes)):
        return None
    return grads


def grade_feedforward(learner: Learner, net: Any, ref: Reference) -> Check:
    """The output aᴸ of each example's x, against the reference's."""
    outputs = []
    for x in ref.xs:
        learner.set_parameters(net, ref.weights, ref.biases)
        outcome = learner.call("feedforward(a)", net.feedforward, x.copy())
        if outcome.error:
            return Check("feedforward", None, False, None, False, outcome.error, by_shape=True)
        outputs.append(outcome.value)
    want = (ref.sizes[-1], 1)
    if any(v is None for v in outputs):
        message = f"feedforward returns None: it should return the output aᴸ, a column {want}"
        return Check("feedforward", None, False, None, False, message)
    arrays = [layers.as_array(v) for v in outputs]
    if any(a is None or a.shape != want for a in arrays):
        found = next(layers.as_array(v) for v in outputs)
        shape = "no array" if found is None else f"shape {found.shape}"
        message = f"feedforward returns {shape}: the output aᴸ is a column {want}"
        return Check("feedforward", None, False, None, False, message, by_shape=True)
    right = ref.columns(ref.activations, ref.n_layers)
    if close(np.hstack(arrays), right):
        message = f"aᴸ = σ(wᴸ aᴸ⁻¹ + bᴸ) layer by layer, for {len(ref.xs)} inputs"
        return Check("feedforward", None, True, None, False, message)
    err = relative_error(np.hstack(arrays), right)
    message = f"the output is not aˡ = σ(wˡ aˡ⁻¹ + bˡ) layer by layer (relative error {err:.2g})"
    return Check("feedforward", None, False, None, False, message)


def run_update(learner: Learner, net: Any, ref: Reference) -> tuple[Outcome, bool, Any]:
    """update_mini_batch on the reference's mini-batch: its outcome, whether it passed
    backprop the whole mini-batch at once, and the parameters after it."""
    learner.set_parameters(net, ref.weights, ref.biases)
    widths: list[int] = []
    own = net.backprop

    def spy(x: Any, *rest: Any) -> Any:
        widths.append(np.shape(x)[1] if np.ndim(x) == 2 else 1)
        return own(x, *rest)

    with contextlib.suppress(AttributeError):  # __slots__: the exercise's form cannot be told
        net.backprop = spy
    call = "update_mini_batch(mini_batch, eta)"
    outcome = learner.call(call, net.update_mini_batch, ref.mini_batch(), ref.eta)
    if net.__dict__.get("backprop") is spy:
        del net.backprop
    after = [*getattr(net, "weights", []), *getattr(net, "biases", [])]
    return outcome, any(w > 1 for w in widths), after


def online(learner: Learner, net: Any, ref: Reference) -> Callable[[float], list | None]:
    """``step(scale)``: the parameters after stepping by −scale times each example's gradient
    in turn, by the learner's own backprop (None if it cannot be called so)."""

    def step(scale: float) -> list[np.ndarray] | None:
        params = [p.copy() for p in [*ref.weights, *ref.biases]]
        n = ref.n_layers
        for x, y in zip(ref.xs, ref.ys):
            learner.set_parameters(net, params[:n], params[n:])
            outcome = learner.call("backprop(x, y)", net.backprop, x.copy(), y.copy())
            grads = gradient_lists(ref, outcome.value)
            if outcome.error or grads is None:
                return None
            params = variants.stepped(params, grads, scale)
        return params

    return step


def first_wrong_layer(ref: Reference, after: list[Any], right: list[np.ndarray]) -> int | None:
    """The book's number of the first layer (from the output back) whose w or b is off."""
    n = ref.n_layers
    for k in range(n - 1, -1, -1):
        if not (close(after[k], right[k]) and close(after[n + k], right[n + k])):
            return ref.layer(k)
    return None


def grade_update(
    ref: Reference,
    run: tuple[Outcome, bool, Any],
    summed: list[np.ndarray] | None,
    step: Callable[[float], list | None],
    backprop_failed: bool,
) -> Check:
    """The step update_mini_batch took, against w − (η/m) Σₓ ∂Cₓ/∂w; a step that follows
    from the learner's own wrong gradients is a consequence."""
    outcome, _, after = run
    name = "update_mini_batch"
    if outcome.error:
        consequence = backprop_failed and "backprop" in outcome.through
        return Check(name, None, False, None, consequence, outcome.error, by_shape=True)
    arrays = [layers.as_array(p) for p in after]
    shapes = [p.shape for p in [*ref.weights, *ref.biases]]
    if len(arrays) != len(shapes) or any(a is None or a.shape != s for a, s in zip(arrays, shapes)):
        message = "after update_mini_batch, weights and biases are no longer the book's shapes"
        return Check(name, None, False, None, False, message, by_shape=True)
    params, m, eta = [*ref.weights, *ref.biases], len(ref.xs), ref.eta
    right_sum = [sum(g[k] for g in ref.nabla_w) for k in range(ref.n_layers)]
    right_sum += [sum(g[k] for g in ref.nabla_b) for k in range(ref.n_layers)]
    right = variants.stepped(params, right_sum, eta / m)
    layer = first_wrong_layer(ref, arrays, right)
    if layer is None:
        return Check(name, None, True, None, False, f"{variants.STEP}, one step per mini-batch")
    own = None if summed is None else variants.stepped(params, summed, eta / m)
    if own is not None and close(variants.flat(arrays), variants.flat(own)):
        message = (
            f"the step is {variants.STEP} of your backprop's gradients; it is wrong only "
            "because they are (see BP1-BP4)"
        )
        return Check(name, layer, False, None, True, message)
    found = variants.update(params, summed or right_sum, step, eta, m)
    variant = variants.matching(arrays, found)
    if variant is None:
        err = relative_error(variants.flat(arrays), variants.flat(right))
        message = f"the weights after one step are not {variants.STEP} (relative error {err:.2g})"
        return Check(name, layer, False, None, False, message)
    return Check(name, layer, False, variant.mistake, False, variant.message)


def summed_gradients(ref: Reference, values: list[Any]) -> list[np.ndarray] | None:
    """``[*Σ nabla_w, *Σ nabla_b]`` of the examples' backprop values, or None."""
    lists = [gradient_lists(ref, v) for v in values]
    if any(g is None for g in lists):
        return None
    return [sum(parts) for parts in zip(*lists)]


def batch_sums(
    learner: Learner, net: Any, ref: Reference, checks: dict[str, Check], per_example: list
) -> list[np.ndarray] | None:
    """The chapter-2 exercise's ``backprop(X, Y)`` of the whole mini-batch: its gradients must
    be the sums of the examples' (BP3 and BP4 summed over the columns). A sum that is not is
    BP3's or BP4's mistake, unless that check has one already. Returns the learner's sums."""
    X, Y = np.hstack(ref.xs), np.hstack(ref.ys)
    outcome = call_backprop(learner, net, ref, X, Y)
    n, m = ref.n_layers, X.shape[1]
    if outcome.error:
        message = f"backprop(X, Y) of a mini-batch of {m} columns raises: {outcome.error}"
        own_failure(checks, "BP3", None, message)
        return None
    problem = layers.returned_pair(outcome.value, n)
    if problem:
        own_failure(checks, "BP3", None, f"for the mini-batch X, Y: {problem}")
    if problem or per_example is None:
        return None
    nabla_b, nabla_w = outcome.value
    batch = [*map(layers.as_array, nabla_w), *map(layers.as_array, nabla_b)]
    for k in range(n - 1, -1, -1):
        for name, index, equation in (
            ("BP4", k, f"nabla_w[{k}] = Σₓ δˣ (aˣ)ᵀ, the product of the δ and input columns"),
            ("BP3", n + k, f"nabla_b[{k}] = Σₓ δˣ, the sum over the columns"),
        ):
            got, want = batch[index], per_example[index]
            if not close(got, want):
                shape = "" if got is None or got.shape == want.shape else f", not {got.shape}"
                message = (
                    f"backprop(X, Y) of a mini-batch of {m} columns should return {equation}, "
                    f"of shape {want.shape}{shape} (the sum of the examples' own)"
                )
                own_failure(checks, name, ref.layer(k), message)
    shapes = [p.shape for p in [*ref.weights, *ref.biases]]
    return batch if all(g is not None and g.shape == s for g, s in zip(batch, shapes)) else None


def own_failure(checks: dict[str, Check], name: str, layer: int | None, message: str) -> None:
    """``name`` fails with a mistake of its own, unless it has one already."""
    if checks[name].passed or checks[name].consequence:
        checks[name] = Check(name, layer, False, None, False, message)


def grade_network(learner: Learner, ref: Reference) -> Graded:
    """Every check on the network of ``ref``; Uncheckable if it cannot be built so."""
    net = learner.build(ref.sizes)
    checks = {"feedforward": grade_feedforward(learner, net, ref)}
    outcomes = [
        call_backprop(learner, net, ref, x.copy(), y.copy()) for x, y in zip(ref.xs, ref.ys)
    ]
    update = run_update(learner, net, ref)  # after backprop's own calls: an endless one is named
    error = next((o.error for o in outcomes if o.error), None)
    if error:
        checks |= layers.unobservable(ref, error, by_shape=True)
        summed = None
    else:
        values = [o.value for o in outcomes]
        checks |= layers.grade_backprop(ref, values)
        summed = summed_gradients(ref, values)
        if update[1]:  # the exercise's form: backprop(X, Y) of the whole mini-batch
            summed = batch_sums(learner, net, ref, checks, summed)
    failed = any(not checks[name].passed for name in BACKPROP_CHECKS)
    checks["update_mini_batch"] = grade_update(
        ref, update, summed, online(learner, net, ref), failed
    )
    return Graded(checks, error)


def on_the_square(main: Check, square: Check, raised: str | None = None) -> Check:
    """A check that failed on a shape of the main network (or, ``raised``, whose backprop
    raised there), told by the square network."""
    seen = raised or main.message
    if raised is None and not square.passed and square.by_shape:  # the same trouble there
        return main
    if square.consequence:  # the line that raised is shown where the mistake is
        return replace(square, by_shape=False)
    there, here = layers_text(SQUARE_SIZES), layers_text(MAIN_SIZES)
    if square.passed:
        note = f"on a {there} network, where every shape fits, the numbers are right"
        return replace(main, message=f"{seen} ({note}: a shape is wrong there)")
    note = f"seen on a {there} network, where every shape fits; on {here}: {seen}"
    return replace(square, message=f"{square.message.rstrip('.')} ({note})", by_shape=False)


def layers_text(sizes: tuple[int, ...]) -> str:
    return "-".join(map(str, sizes))


def merged(main: Graded, square: Graded) -> dict[str, Check]:
    """The main network's checks, with those that failed on a shape told by the square's."""
    checks = dict(main.checks)
    if main.backprop_error and not square.backprop_error:
        # Nothing of BP1-BP4 could be seen on the main network: the square's say it all, and
        # the first mistake among them carries the line that raised.
        checks |= {name: square.checks[name] for name in BACKPROP_CHECKS}
        failed = [checks[name] for name in BACKPROP_CHECKS if not checks[name].passed]
        first = next((c for c in failed if not c.consequence), failed[0] if failed else None)
        name = first.name if first else "BP1"
        checks[name] = on_the_square(main.checks[name], checks[name], main.backprop_error)
    elif not main.backprop_error:
        for name in BACKPROP_CHECKS:
            if not main.checks[name].passed and main.checks[name].by_shape:
                checks[name] = on_the_square(main.checks[name], square.checks[name])
    for name in ("feedforward", "update_mini_batch"):
        if not main.checks[name].passed and main.checks[name].by_shape:
            checks[name] = on_the_square(main.checks[name], square.checks[name])
    return checks


def grade_class(
    cls: type,
    refs: dict[str, Reference],
    filename: str,
    display: str,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """The report of a learner's ``Network`` class, defined in ``filename``."""
    try:
        learner = Learner(cls, filename, display, progress)
        main = grade_network(learner, refs["main"])
    except Uncheckable as e:
        return Report(display, error=str(e))
    checks = main.checks
    if any(c.by_shape and not c.passed for c in checks.values()):
        with contextlib.suppress(Uncheckable):  # e.g. a Network that always builds 784-16-16-10
            checks = merged(main, grade_network(learner, refs["square"]))
    return Report(display, [checks[name] for name in CHECKS])

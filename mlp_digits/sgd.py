"""The book's stochastic gradient descent, written once for one network or a stack of them.

    for each epoch:
        shuffle the training images                  EpochPermutation: drawn from (seed, epoch)
        for each mini-batch of m of them:
            sgd_step:  w ← w − η ∂C/∂w,  b ← b − η ∂C/∂b
        evaluate

``sgd_step`` takes its gradients ∂C/∂w from the book's BP1–BP4 (``mlp_digits.backprop``) or
from autograd, and η is a number, or for a stack one η per network. ``SGD`` is the whole loop
in plain PyTorch, network.py's ``SGD`` without the NumPy. ``scripts/train.py`` runs the same
``sgd_step`` over the same ``EpochPermutation`` through Lightning (``mlp_digits.lightning``),
and the sweep runs it on a stack (``mlp_digits.sweep``). Nothing here imports Lightning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mlp_digits import backprop as bp
from mlp_digits.config import BACKPROPS, DEFAULTS

Gradients = tuple[list[Tensor], list[Tensor]]


class Step(NamedTuple):
    """What one SGD step computed: the output aᴸ of its mini-batch before the step (its cost
    is ``backprop.cost(output, y)``), and the gradients it stepped along."""

    output: Tensor
    nabla_w: list[Tensor]
    nabla_b: list[Tensor]


def gradients(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    x: Tensor,
    y: Tensor,
    backprop: str,
    activation: str = DEFAULTS.activation,
) -> Step:
    """∂C/∂W and ∂C/∂b of every layer for the mini-batch (x, y), by BP1–BP4 (``"manual"``) or
    by autograd (``"autograd"``), with the output aᴸ they came from.

    For a stack, autograd runs backward from the *sum* of the networks' costs: network k's
    weights enter only its own cost, so ∂(Σ_j C_j)/∂w_k = ∂C_k/∂w_k.
    """
    if backprop == "manual":
        with torch.inference_mode():  # no autograd bookkeeping at all
            activations, _ = bp.feedforward(weights, biases, x, activation)
            return Step(activations[-1], *bp.backward(weights, activations, y, activation))
    if backprop != "autograd":
        raise ValueError(f"backprop must be one of {BACKPROPS}, got {backprop!r}")
    n = len(weights)
    # Plain tensors (sgd.SGD's) join the graph as leaves; a module's parameters already do.
    params = [p if p.requires_grad else p.detach().requires_grad_() for p in [*weights, *biases]]
    with torch.enable_grad():
        activations, _ = bp.feedforward(params[:n], params[n:], x, activation)
        cost = bp.cost(activations[-1], y)
        nablas = torch.autograd.grad(cost.sum(), params)
    return Step(activations[-1].detach(), list(nablas[:n]), list(nablas[n:]))


@torch.no_grad()
def update(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    nabla_w: Sequence[Tensor],
    nabla_b: Sequence[Tensor],
    eta: float | Tensor,
) -> None:
    """w ← w − η ∂C/∂w and b ← b − η ∂C/∂b, in place: no momentum, no weight decay.

    ``eta`` is a number, or for a stack a tensor of one η per network.
    """
    # For a stack, −η_k once per step (not once per tensor), broadcast over network k's weights.
    neg_eta = eta.to(weights[0].dtype).neg() if isinstance(eta, Tensor) else None
    for p, nabla in zip([*weights, *biases], [*nabla_w, *nabla_b]):
        if neg_eta is not None:
            p.addcmul_(neg_eta.view(-1, *[1] * (p.dim() - 1)), nabla)
        else:
            p.sub_(nabla, alpha=eta)


def sgd_step(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    x: Tensor,
    y: Tensor,
    eta: float | Tensor,
    backprop: str = DEFAULTS.backprop,
    average: Callable[[list[Tensor], list[Tensor]], Gradients] | None = None,
    activation: str = DEFAULTS.activation,
    keep_gradients: bool = True,
) -> Step:
    """One step of SGD on the mini-batch (x, y): ``Step(output before it, nabla_w, nabla_b)``.

    The cost C is left to the caller (``backprop.cost(step.output, y)``): a training loop that
    records it can compute many steps' costs in one operation.

    ``average``, with several processes, turns this process's gradients into the mean of all
    processes' (each holds a share of the mini-batch), so that every process takes one step.
    ``keep_gradients=False`` (BP1–BP4, one process): the same step, with BP4 taken inside the
    update's own matrix product, ``w ← w − η (δ/m)ᵀ a``; no gradient is stored (the Step's
    lists are empty), which halves the memory traffic of a large stack's update.
    """
    if backprop == "manual" and average is None and not keep_gradients:
        with torch.inference_mode():
            activations, _ = bp.feedforward(weights, biases, x, activation)
            bp.backward(weights, activations, y, activation, fused_update(weights, biases, eta))
        return Step(activations[-1], [], [])
    output, nabla_w, nabla_b = gradients(weights, biases, x, y, backprop, activation)
    if average is not None:
        nabla_w, nabla_b = average(nabla_w, nabla_b)
    update(weights, biases, nabla_w, nabla_b, eta)
    return Step(output, nabla_w, nabla_b)


def fused_update(
    weights: Sequence[Tensor], biases: Sequence[Tensor], eta: float | Tensor
) -> Callable[[int, Tensor, Tensor], None]:
    """For ``backprop.backward(..., use_layer=...)``: layer l's update from its share of the
    batch's error, δ/m, and its input a: w ← w − η (δ/m)ᵀ a (BP4), b ← b − η Σ δ/m (BP3)."""

    # For a stack, η_k once per step (not once per layer), as (N, 1, 1) to scale each δ_k.
    eta_k = eta.to(weights[0].dtype).view(-1, 1, 1) if isinstance(eta, Tensor) else None

    def use_layer(l: int, share: Tensor, a_in: Tensor) -> None:
        if eta_k is not None:
            share = share * eta_k
            alpha = -1.0
        else:
            alpha = -eta
        w, b = weights[l], biases[l]
        if w.dim() == 2:
            w.addmm_(share.mT, a_in, alpha=alpha)
        else:
            w.baddbmm_(share.mT, a_in, alpha=alpha)
        b.add_(share.sum(dim=-2), alpha=alpha)

    return use_layer


# --- the epochs: shuffled mini-batches ----------------------------------------------------


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for the permutation of one epoch, derived from (seed, epoch).

    The permutation of any epoch can be drawn again from these two numbers alone, so
    resuming needs no stored random-number-generator state.
    """
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


class EpochPermutation:
    """The order of the n training images in each epoch: ``torch.randperm`` by a CPU generator
    seeded with ``epoch_seed(seed, epoch)``, then moved to ``device``.

    Drawn on the CPU whatever the device: CUDA's randperm gives another order for the same
    seed, so a seed would mean other mini-batches on a GPU, and a CPU run resumed there would
    skip its ``steps_done`` mini-batches of another order. The draw costs about a millisecond
    an epoch.

    ``set_epoch`` chooses the epoch (Lightning calls it, as for PyTorch's samplers). With
    several processes, rank r takes every ``world_size``-th index from position r: the ranks'
    shards partition the epoch's permutation.
    """

    def __init__(
        self,
        n: int,
        seed: int,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.n, self.seed, self.device = n, seed, torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def cpu_permutation(self) -> Tensor:
        """This epoch's permutation of 0..n-1, on the CPU."""
        generator = torch.Generator(device="cpu")
        generator.manual_seed(epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.n, generator=generator, device="cpu")

    def permutation(self) -> Tensor:
        """This epoch's permutation, on ``device``."""
        # Not blocking: a copy from pageable memory is staged before this returns, and the
        # host need not wait for the device's queued steps (no host sync).
        return self.cpu_permutation().to(self.device, non_blocking=True)

    def indices(self) -> Tensor:
        """This rank's shard of this epoch's permutation.

        With several processes the permutation is first cut to a multiple of their number
        (at most ``world_size - 1`` images sit out an epoch, different ones each epoch), so
        that every rank takes as many mini-batches, of the same sizes: each SGD step waits
        for all of them.
        """
        return self.permutation()[: len(self) * self.world_size][self.rank :: self.world_size]

    def __len__(self) -> int:
        return self.n // self.world_size


def mini_batches(order: Tensor, batch_size: int) -> Iterator[Tensor]:
    """Consecutive slices of ``order``; the last one is shorter when m does not divide n, and
    is kept, as network.py keeps it."""
    yield from order.split(batch_size)


def SGD(
    weights: list[Tensor],
    biases: list[Tensor],
    x: Tensor,
    targets: Tensor,
    epochs: int,
    batch_size: int,
    eta: float,
    seed: int = DEFAULTS.seed,
    backprop: str = DEFAULTS.backprop,
    test_data: tuple[Tensor, Tensor] | None = None,
    activation: str = DEFAULTS.activation,
) -> list[int]:
    """Train one network in place, as network.py's ``SGD``; return the test images read right
    after each epoch (none without ``test_data``).

    x (n, 784) pixels in [0, 1], targets (n,) digits. The same steps, in the same order, as
    ``scripts/train.py --seed SEED`` on these images, with the arithmetic of one process.
    """
    y = F.one_hot(targets, weights[-1].shape[0]).to(weights[0].dtype)
    permutation = EpochPermutation(len(x), seed, x.device)
    correct = []
    for epoch in range(epochs):
        permutation.set_epoch(epoch)
        for batch in mini_batches(permutation.indices(), batch_size):
            sgd_step(weights, biases, x[batch], y[batch], eta, backprop, activation=activation)
        if test_data is not None:
            correct.append(evaluate(weights, biases, *test_data, activation))
    return correct


@torch.no_grad()
def evaluate(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    x: Tensor,
    targets: Tensor,
    activation: str = DEFAULTS.activation,
) -> int:
    """How many of the images x the network reads right: its answer is the brightest output."""
    activations, _ = bp.feedforward(weights, biases, x.to(weights[0].dtype), activation)
    return int((activations[-1].argmax(dim=-1) == targets).sum())

"""The benchmark's reference: the fastest plain eager PyTorch for this network, sharing no
code with the project but the epoch order, against which the project's speed is measured."""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from mlp_digits.bench.timing import sync
from mlp_digits.sgd import EpochPermutation


class TightLoop:
    """The fastest plain eager PyTorch for this network, written for speed, not for reading,
    and sharing no code with the project but the epoch order (``EpochPermutation``).

    The data sits in one tensor on its device, permuted once an epoch and sliced into
    mini-batches (views). ``manual``: BP1–BP4 by hand with σ'(z) = a(1 − a) from the
    activations, ``addmm`` everywhere, BP3/BP4 fused into the in-place update
    (``w.addmm_(δᵀ, a, alpha=−η/m)``), and no per-step cost. Else: autograd from a scalar
    cost and ``torch.optim.SGD``, the usual way.
    """

    def __init__(
        self,
        x: Tensor,
        targets: Tensor,
        weights: list[Tensor],
        biases: list[Tensor],
        lr: float,
        batch_size: int,
        manual: bool,
        seed: int = 0,
    ) -> None:
        self.x, self.y = x, F.one_hot(targets, weights[-1].shape[0]).to(x.dtype)
        self.weights = [w.detach().clone().to(x.device, x.dtype) for w in weights]
        self.biases = [b.detach().clone().to(x.device, x.dtype) for b in biases]
        self.lr, self.batch_size, self.manual = lr, batch_size, manual
        self.sampler = EpochPermutation(len(x), seed, x.device)
        if not manual:
            params = [p.requires_grad_() for p in self.weights + self.biases]
            self.optimizer = torch.optim.SGD(params, lr=lr)

    def forward(self, x: Tensor) -> list[Tensor]:
        activations = [x]
        for w, b in zip(self.weights, self.biases):
            activations.append(torch.addmm(b, activations[-1], w.t()).sigmoid_())
        return activations

    @torch.no_grad()
    def manual_step(self, x: Tensor, y: Tensor) -> None:
        activations = self.forward(x)
        a = activations[-1]
        delta = (a - y).mul_(a).mul_(1 - a)
        scale = -self.lr / len(x)
        for l in range(len(self.weights) - 1, -1, -1):
            a_in = activations[l]
            if l:  # the next δ needs this layer's weights before they move
                next_delta = (delta @ self.weights[l]).mul_(a_in).mul_(1 - a_in)
            self.weights[l].addmm_(delta.t(), a_in, alpha=scale)
            self.biases[l].add_(delta.sum(0), alpha=scale)
            if l:
                delta = next_delta

    def step(self, x: Tensor, y: Tensor) -> None:
        if self.manual:
            self.manual_step(x, y)
            return
        self.optimizer.zero_grad()
        a = self.forward(x)[-1]
        (a - y).square().sum().div(2 * len(x)).backward()
        self.optimizer.step()

    def epoch(self, deadline: float = math.inf) -> tuple[int, int, dict[str, float]]:
        t0 = time.perf_counter()
        order = self.sampler.permutation()
        self.sampler.set_epoch(self.sampler.epoch + 1)
        x, y = self.x[order], self.y[order]
        sync(x.device)
        permuting = time.perf_counter() - t0
        steps = samples = 0
        for start in range(0, len(x), self.batch_size):
            self.step(x[start : start + self.batch_size], y[start : start + self.batch_size])
            steps, samples = steps + 1, samples + min(self.batch_size, len(x) - start)
            if time.perf_counter() > deadline:
                break
        return steps, samples, {"permutation + gather": permuting}

"""The network of the videos and the book: its layer sizes and where its weights start.

    sizes = (784, 16, 16, 10)   one input per pixel, two hidden layers of 16, one output a digit
    weights[l]  (n_out, n_in)   the book's Wˡ: row j holds the weights into neuron j
    biases[l]   (n_out,)        the book's bˡ

A stack of N networks has a leading dimension on each: weights[l] (N, n_out, n_in). The
forward pass and the gradients are ``mlp_digits.backprop``; the learning is ``mlp_digits.sgd``.
Nothing here imports Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mlp_digits.config import DEFAULTS, INITS


def initial_parameters(
    sizes: Sequence[int], init: str = DEFAULTS.init, seed: int = DEFAULTS.seed
) -> tuple[list[Tensor], list[Tensor]]:
    """A seed's starting point, float32: ``(weights, biases)``, one tensor per layer.

    ``"gaussian"``: weights and biases from N(0, 1), as the book's network.py.
    ``"scaled"``: weights from N(0, 1/n_in), biases from N(0, 1), as its network2.py.

    Every run of this project, ``train.py``'s and each network of a sweep, starts here: a
    CPU generator seeded with ``seed`` draws, layer by layer, the weights Wˡ row by row and
    then the biases bˡ, so that a seed gives the same start on any device.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    generator = torch.Generator().manual_seed(seed)
    weights, biases = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        std = 1.0 if init == "gaussian" else n_in**-0.5
        weights.append(torch.empty(n_out, n_in).normal_(0.0, std, generator=generator))
        biases.append(torch.empty(n_out).normal_(0.0, 1.0, generator=generator))
    return weights, biases


def stacked_initial_parameters(
    sizes: Sequence[int], init: str | Sequence[str], seeds: Sequence[int]
) -> tuple[list[Tensor], list[Tensor]]:
    """``initial_parameters`` of each seed, stacked: network k of the stack starts where the
    one network of seed ``seeds[k]`` (and init ``init[k]``, or ``init`` for all) starts,
    number for number."""
    inits = [init] * len(seeds) if isinstance(init, str) else list(init)
    weights: list[list[Tensor]] = [[] for _ in sizes[1:]]
    biases: list[list[Tensor]] = [[] for _ in sizes[1:]]
    for seed, network_init in zip(seeds, inits, strict=True):
        ws, bs = initial_parameters(sizes, network_init, seed)
        for l, (w, b) in enumerate(zip(ws, bs)):
            weights[l].append(w)
            biases[l].append(b)
    return [torch.stack(w) for w in weights], [torch.stack(b) for b in biases]

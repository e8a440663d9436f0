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

N_INPUTS = 784  # one input neuron per pixel of a 28x28 image
N_OUTPUTS = 10  # one output neuron per digit
DEFAULT_SIZES = (N_INPUTS, 16, 16, N_OUTPUTS)  # two hidden layers of 16, as in the video
INITS = ("gaussian", "scaled")


def check_mnist_sizes(sizes: Sequence[int]) -> str | None:
    """What is wrong with ``sizes`` as a network for MNIST, as a sentence; None if nothing.

    The caller names the sizes' source in front of it: ``--sizes 784 30 9: ...``.
    """
    if len(sizes) < 2:
        return f"a network needs at least two layers, e.g. {N_INPUTS} {N_OUTPUTS}"
    if any(n < 1 for n in sizes):
        return "every layer needs at least one neuron"
    if (sizes[0], sizes[-1]) != (N_INPUTS, N_OUTPUTS):
        return (
            f"the network takes {sizes[0]} inputs and gives {sizes[-1]} outputs; MNIST needs "
            f"{N_INPUTS} inputs and {N_OUTPUTS} outputs, so the sizes must start with "
            f"{N_INPUTS} and end with {N_OUTPUTS}"
        )
    return None


def initial_parameters(
    sizes: Sequence[int], init: str = "gaussian", seed: int = 0
) -> tuple[list[Tensor], list[Tensor]]:
    """A seed's starting point, float32: ``(weights, biases)``, one tensor per layer.

    ``"gaussian"``: weights and biases from N(0, 1), as the book's network.py.
    ``"scaled"``: weights from N(0, 1/n_in), biases from N(0, 1), as its network2.py.

    Every run of this project, ``train.py``'s and each network of a sweep, starts here. The
    numbers come from ``torch.manual_seed(seed)``'s stream, which first served the
    U(±1/√n_in) start that ``nn.Linear`` draws when it is built: those draws are made and
    dropped, so that a seed keeps giving the weights of every run published so far.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    generator = torch.Generator().manual_seed(seed)
    layers = list(zip(sizes[:-1], sizes[1:]))
    for n_in, n_out in layers:  # nn.Linear's own start, dropped (see above)
        torch.empty(n_out, n_in).uniform_(generator=generator)
        torch.empty(n_out).uniform_(generator=generator)
    weights, biases = [], []
    for n_in, n_out in layers:
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

"""The network's shape, defined once: the video's 784-16-16-10 and what MNIST demands of it."""

from __future__ import annotations

from collections.abc import Sequence

N_INPUTS = 784  # one input neuron per pixel of a 28x28 image
N_OUTPUTS = 10  # one output neuron per digit
DEFAULT_SIZES = (N_INPUTS, 16, 16, N_OUTPUTS)  # two hidden layers of 16, as in the video


def check_mnist_sizes(sizes: Sequence[int]) -> str | None:
    """What is wrong with ``sizes`` as a network for MNIST, as a sentence; None if nothing.

    The caller names the sizes' source in front of it: ``--sizes 784 30 9: ...``.
    """
    if len(sizes) < 2:
        return f"a network needs at least two layers, e.g. {N_INPUTS} {N_OUTPUTS}"
    if (sizes[0], sizes[-1]) != (N_INPUTS, N_OUTPUTS):
        return (
            f"the network takes {sizes[0]} inputs and gives {sizes[-1]} outputs; MNIST needs "
            f"{N_INPUTS} inputs and {N_OUTPUTS} outputs, so the sizes must start with "
            f"{N_INPUTS} and end with {N_OUTPUTS}"
        )
    return None

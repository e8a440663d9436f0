"""mlp_digits.network: the default network, the check that a network fits MNIST, and where
its weights start."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlp_digits.network import (
    DEFAULT_SIZES,
    N_INPUTS,
    N_OUTPUTS,
    check_mnist_sizes,
    initial_parameters,
    stacked_initial_parameters,
)


def test_default_is_the_videos_784_16_16_10() -> None:
    assert DEFAULT_SIZES == (784, 16, 16, 10)
    assert (N_INPUTS, N_OUTPUTS) == (28 * 28, 10)


@pytest.mark.parametrize("sizes", [(784, 10), (784, 16, 16, 10), [784, 100, 30, 10]])
def test_sizes_from_784_to_10_fit(sizes: tuple[int, ...]) -> None:
    assert check_mnist_sizes(sizes) is None


@pytest.mark.parametrize(
    ("sizes", "says"),
    [
        ((784, 16, 9), "takes 784 inputs and gives 9 outputs; MNIST needs 784 inputs and 10"),
        ((100, 30, 10), "takes 100 inputs and gives 10 outputs"),
        ((784,), "needs at least two layers"),
        ((), "needs at least two layers"),
    ],
)
def test_other_sizes_get_one_sentence(sizes: tuple[int, ...], says: str) -> None:
    problem = check_mnist_sizes(sizes)

    assert problem is not None and says in problem
    assert "\n" not in problem


@pytest.mark.parametrize("init", ["gaussian", "scaled"])
@pytest.mark.parametrize("seed", [0, 7])
def test_initial_parameters_are_those_of_every_published_run(init: str, seed: int) -> None:
    """The reference is how runs started before ``initial_parameters`` existed: seed torch,
    build nn.Linear layers, draw N(0, 1) (or N(0, 1/n_in)) over them. Guards against a
    changed order of draws, a skipped draw, or the wrong scale."""
    sizes = (784, 16, 16, 10)
    torch.manual_seed(seed)
    layers = [nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes, sizes[1:])]
    for layer in layers:
        layer.weight.data.normal_(0.0, 1.0 if init == "gaussian" else layer.in_features**-0.5)
        layer.bias.data.normal_(0.0, 1.0)

    weights, biases = initial_parameters(sizes, init, seed)

    for layer, w, b in zip(layers, weights, biases, strict=True):
        assert torch.equal(w, layer.weight) and torch.equal(b, layer.bias)


def test_a_stack_starts_each_network_where_its_seed_does() -> None:
    weights, biases = stacked_initial_parameters((784, 30, 10), "gaussian", [3, 0, 5])
    for k, seed in enumerate([3, 0, 5]):
        own_w, own_b = initial_parameters((784, 30, 10), "gaussian", seed)
        assert all(torch.equal(w[k], o) for w, o in zip(weights, own_w, strict=True))
        assert all(torch.equal(b[k], o) for b, o in zip(biases, own_b, strict=True))
    assert not torch.equal(weights[0][0], weights[0][1])


def test_the_books_core_imports_without_lightning() -> None:
    """network, backprop, sgd and data: the book's core, as light as network.py."""
    import subprocess
    import sys

    code = (
        "import sys, mlp_digits.network, mlp_digits.backprop, mlp_digits.sgd, mlp_digits.data\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'torchmetrics',"
        " 'pytorch_lightning', 'matplotlib'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

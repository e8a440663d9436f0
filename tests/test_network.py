"""mlp_digits.network: where a network's weights start, for one network or a stack."""

from __future__ import annotations

import pytest
import torch

from mlp_digits.network import initial_parameters, stacked_initial_parameters


@pytest.mark.parametrize("init", ["gaussian", "scaled"])
@pytest.mark.parametrize("seed", [0, 7])
def test_initial_parameters_are_the_seeds_normal_draws_layer_by_layer(init: str, seed: int) -> None:
    """The reference: a CPU generator seeded with the seed, ``randn`` for W⁰, b⁰, W¹, b¹, ...
    in that order, the weights scaled by 1/√n_in for ``scaled``. Guards against a changed
    order of draws, a skipped or extra draw, or the wrong scale."""
    sizes = (784, 16, 16, 10)
    generator = torch.Generator().manual_seed(seed)

    weights, biases = initial_parameters(sizes, init, seed)

    for n_in, n_out, w, b in zip(sizes[:-1], sizes[1:], weights, biases, strict=True):
        std = 1.0 if init == "gaussian" else n_in**-0.5
        assert torch.equal(w, torch.randn(n_out, n_in, generator=generator) * std)
        assert torch.equal(b, torch.randn(n_out, generator=generator))


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

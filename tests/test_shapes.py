"""mlp_digits.shapes: the default network and the one check that a network fits MNIST."""

from __future__ import annotations

import pytest

from mlp_digits.shapes import DEFAULT_SIZES, N_INPUTS, N_OUTPUTS, check_mnist_sizes


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

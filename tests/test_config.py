"""mlp_digits.config: the book's run as the defaults, and the one check of a run's settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlp_digits.config import (
    DEFAULTS,
    Settings,
    choice_problem,
    lr_problem,
    mnist_problem,
    sizes_problem,
)


def test_the_defaults_are_the_books_run() -> None:
    """784-16-16-10, η = 3.0, mini-batches of 10, 30 epochs, N(0, 1), validation on the last
    10,000 images: chapter 1's settings and the video's network."""
    assert DEFAULTS.sizes == (784, 16, 16, 10)
    assert (DEFAULTS.lr, DEFAULTS.batch_size, DEFAULTS.max_epochs) == (3.0, 10, 30)
    assert (DEFAULTS.init, DEFAULTS.activation, DEFAULTS.val_size) == (
        "gaussian",
        "sigmoid",
        10_000,
    )


@pytest.mark.parametrize("sizes", [(784, 10), (784, 16, 16, 10), [784, 100, 30, 10]])
def test_sizes_from_784_to_10_fit_mnist(sizes: tuple[int, ...]) -> None:
    assert mnist_problem(sizes) is None


@pytest.mark.parametrize(
    ("sizes", "says"),
    [
        ((784, 16, 9), "takes 784 inputs and gives 9 outputs; MNIST needs 784 inputs and 10"),
        ((100, 30, 10), "takes 100 inputs and gives 10 outputs"),
        ((784,), "needs at least two layers"),
        ((), "needs at least two layers"),
        ((784, 0, 10), "at least one neuron"),
    ],
)
def test_other_sizes_get_one_sentence(sizes: tuple[int, ...], says: str) -> None:
    problem = mnist_problem(sizes)
    assert problem is not None and says in problem and "\n" not in problem


def test_any_sizes_of_two_layers_make_a_network() -> None:
    assert sizes_problem((5, 3, 2)) is None and mnist_problem((5, 3, 2)) is not None
    assert "--init uniform: choose one of gaussian, scaled" in choice_problem("uniform", "sigmoid")


@pytest.mark.parametrize(
    ("lr", "says"),
    [(0.0, "above 0"), (-1.0, "above 0"), (float("nan"), "finite"), (1e39, "float32")],
)
def test_one_check_of_eta_for_every_script(lr: float, says: str) -> None:
    assert says in lr_problem(lr, "32")
    assert lr_problem(1e39, "64") is None  # float64 holds it


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"lr": 0.0}, "--lr 0"),
        ({"sizes": (784, 30, 9)}, "--sizes 784 30 9"),
        ({"batch_size": 0}, "--batch-size 0"),
        ({"backprop": "numeric"}, "--backprop numeric"),
        ({"precision": "16"}, "--precision 16"),
    ],
)
def test_settings_that_make_no_run_are_refused_naming_the_flag(change: dict, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Settings(**change)


def test_settings_travel_as_plain_values_and_come_back_equal() -> None:
    settings = DEFAULTS.replace(sizes=(784, 30, 10), lr=0.5, precision="64")
    values = settings.to_dict()
    assert values["sizes"] == [784, 30, 10]  # a list: YAML and JSON keep it
    assert Settings.from_dict({**values, "data_dir": "elsewhere"}) == settings


def test_the_settings_a_function_takes_by_name() -> None:
    def model(sizes: tuple, lr: float, other: int = 0) -> None: ...

    assert DEFAULTS.arguments(model) == {"sizes": DEFAULTS.sizes, "lr": DEFAULTS.lr}


def test_parsing_the_flags_imports_neither_torch_nor_lightning() -> None:
    """So that --help and a mistyped flag answer at once."""
    code = (
        "import sys; from mlp_digits import cli; cli.train_parser(); cli.sweep_parser()\n"
        "cli.evaluate_parser(); print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'lightning', 'torchvision', 'numpy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

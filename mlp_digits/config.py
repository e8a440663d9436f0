"""Every default, choice and check of a run, written once.

``Settings`` is one run: by default the book's (784-16-16-10, η = 3.0, mini-batches of 10,
30 epochs, weights and biases from N(0, 1), validation on the last 10,000 images of the
training file). The flags of every script take their defaults from here, and so do
``DigitsMLP``, ``MNISTDataModule``, the sweep's grid, the page and the benchmark. A run's
``Settings`` are saved in its checkpoints and ``hparams.yaml``, and read back by ``--resume``,
``evaluate.py``, the sweep's CSV and the export.

Nothing here imports torch: the flags are parsed (and ``--help`` printed) before anything
heavy is loaded.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

N_INPUTS = 784  # one input neuron per pixel of a 28x28 image
N_OUTPUTS = 10  # one output neuron per digit
DEFAULT_SIZES = (N_INPUTS, 16, 16, N_OUTPUTS)  # two hidden layers of 16, as in the video

INITS = ("gaussian", "scaled")  # N(0, 1) as network.py; N(0, 1/n_in) as network2.py
ACTIVATIONS = ("sigmoid", "relu")  # of the hidden layers; the output layer is always σ
BACKPROPS = ("autograd", "manual")  # ∂C/∂w from autograd, or from the book's BP1-BP4
PRECISIONS = ("32", "64")  # float bits of the weights and the arithmetic
FLOAT_MAX = {"32": 3.4028234663852886e38, "64": sys.float_info.max}  # torch.finfo(...).max

# Defaults of the machinery around a run: where things go, how often pictures are drawn.
DATA_DIR = "data"
LOGDIR = "lightning_logs"
IMAGES_EVERY = 1  # epochs between TensorBoard's pictures
TRAIN_THREADS = 1  # torch threads for one network: at batch 10 a second thread only waits
SWEEP_SEEDS = "0-4"  # a sweep's seeds when none are given: five of each configuration
PAGE_TRAIN_DIGITS = 3000  # training digits in the page: enough for 80 % in ten epochs from random
PAGE_TEST_DIGITS = 500  # test digits the page scores its accuracy on
CHECK_TIMEOUT = 60.0  # seconds for one learner's file: load it and run every check


def layers(sizes: Sequence[int], sep: str = "-") -> str:
    """784-16-16-10: how the project writes a network's sizes."""
    return sep.join(map(str, sizes))


def sizes_problem(sizes: Sequence[int]) -> str | None:
    """What is wrong with ``sizes`` as a network's layers, as a sentence; None if nothing.

    The caller names the sizes' source in front of it: ``--sizes 784 0 10: ...``.
    """
    if len(sizes) < 2:
        return f"a network needs at least two layers, e.g. {N_INPUTS} {N_OUTPUTS}"
    if any(n < 1 for n in sizes):
        return "every layer needs at least one neuron"
    return None


def mnist_problem(sizes: Sequence[int]) -> str | None:
    """What is wrong with ``sizes`` as a network for MNIST (784 inputs, 10 outputs), as a
    sentence for the caller to put after the sizes' source; None if nothing."""
    problem = sizes_problem(sizes)
    if problem or (sizes[0], sizes[-1]) == (N_INPUTS, N_OUTPUTS):
        return problem
    return (
        f"the network takes {sizes[0]} inputs and gives {sizes[-1]} outputs; MNIST needs "
        f"{N_INPUTS} inputs and {N_OUTPUTS} outputs, so the sizes must start with {N_INPUTS} "
        f"and end with {N_OUTPUTS}"
    )


def choice_problem(init: str, activation: str, backprop: str = BACKPROPS[0]) -> str | None:
    """A choice outside its flag's choices, as a sentence naming the flag; None if none."""
    for flag, value, choices in (
        ("--init", init, INITS),
        ("--activation", activation, ACTIVATIONS),
        ("--backprop", backprop, BACKPROPS),
    ):
        if value not in choices:
            return f"{flag} {value}: choose one of {', '.join(choices)}"
    return None


def lr_problem(lr: float, precision: str) -> str | None:
    """η must be a finite number above 0 that the run's float type can hold; else a sentence."""
    if not math.isfinite(lr) or lr <= 0:
        return f"--lr {lr:g}: η must be a finite number above 0"
    largest = FLOAT_MAX[str(precision)]
    if lr > largest:
        return (
            f"--lr {lr:g} is beyond the largest float{precision} number ({largest:.3g}); "
            "use a smaller --lr (or --precision 64)"
        )
    return None


@dataclass(frozen=True)
class Settings:
    """The settings that make a run the run it is, with the book's values as defaults.

    ``val_size`` is a count of images, or a fraction below 1 of the training file;
    ``steps_per_chunk`` None picks about a thousand samples' worth of SGD steps per Lightning
    step (it changes the speed, never the arithmetic).
    """

    sizes: tuple[int, ...] = DEFAULT_SIZES
    lr: float = 3.0
    batch_size: int = 10
    max_epochs: int = 30
    seed: int = 0
    init: str = "gaussian"
    activation: str = "sigmoid"
    backprop: str = "autograd"
    precision: str = "32"
    val_size: int | float = 10_000
    steps_per_chunk: int | None = None
    check_gradients_every: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(int(n) for n in self.sizes))
        object.__setattr__(self, "precision", str(self.precision))
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """What is wrong with these settings, as one sentence naming the flag; None if nothing."""
        if self.precision not in PRECISIONS:
            return f"--precision {self.precision}: choose {' or '.join(PRECISIONS)}"
        sizes = mnist_problem(self.sizes)
        if sizes:
            return f"--sizes {layers(self.sizes, ' ')}: {sizes}"
        problem = choice_problem(self.init, self.activation, self.backprop)
        problem = problem or lr_problem(self.lr, self.precision)
        for flag, value in (("--batch-size", self.batch_size), ("--max-epochs", self.max_epochs)):
            if value < 1:
                problem = problem or f"{flag} {value}: must be at least 1"
        return problem

    def to_dict(self) -> dict[str, Any]:
        """Plain values (a list for the sizes), for a checkpoint, hparams.yaml or JSON."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Settings:
        """The settings among ``values`` (other keys are left out, e.g. ``data_dir``)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def arguments(self, function: Callable[..., Any]) -> dict[str, Any]:
        """The settings that ``function`` (a class, say) takes, by their names."""
        names = inspect.signature(function).parameters
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in names}


DEFAULTS = Settings()

"""DigitsMLP: the network of the videos and the book as a LightningModule.

    aˡ = σ(Wˡ aˡ⁻¹ + bˡ)               sigmoid after every layer, the output layer included
    C = 1/(2m) Σ_x ‖y(x) − a(x)‖²      the quadratic cost of a mini-batch of m examples
    w ← w − η ∂C/∂w                    plain SGD: no momentum, no weight decay

The network starts where ``mlp_digits.network.initial_parameters`` puts a seed, and learns by
``mlp_digits.sgd.sgd_step``: ∂C/∂w from autograd (``backprop="autograd"``) or from the book's
four equations in ``mlp_digits.backprop`` (``backprop="manual"``), the same update either way.

How training is made fast (several SGD steps per Lightning step, the SGD-step count, the
step-level curves) is the job of ``mlp_digits.lightning.chunked``; this file is the network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from mlp_digits import backprop as bp
from mlp_digits import sgd
from mlp_digits.config import DEFAULTS, Settings, choice_problem, sizes_problem
from mlp_digits.lightning.chunked import ChunkedSGD
from mlp_digits.network import initial_parameters

SATURATED = 1e-3  # an output activation this close to 0 or 1 has all but stopped learning


class DigitsMLP(ChunkedSGD):
    """A fully connected sigmoid network trained by mini-batch SGD on the quadratic cost.

    Args:
        sizes: neurons per layer, input first: ``(784, 16, 16, 10)`` is the video's network.
        lr: the learning rate η.
        init: ``"gaussian"``: weights and biases from N(0, 1), as the book's network.py;
            ``"scaled"``: weights from N(0, 1/n_in), biases from N(0, 1), as network2.py.
        backprop: ``"autograd"`` or ``"manual"`` (gradients from ``mlp_digits.backprop``).
        check_gradients_every: every this many SGD steps, compute the step's gradients both
            ways and log their relative difference as ``grad_check/rel_error/<tensor>``
            (0: never).
        seed: where the weights start (``network.initial_parameters``).
        activation: the hidden layers' ``"sigmoid"`` (the book's) or ``"relu"``; the output
            layer is σ either way.
    """

    def __init__(
        self,
        sizes: Sequence[int] = DEFAULTS.sizes,
        lr: float = DEFAULTS.lr,
        init: str = DEFAULTS.init,
        backprop: str = DEFAULTS.backprop,
        check_gradients_every: int = DEFAULTS.check_gradients_every,
        seed: int = DEFAULTS.seed,
        activation: str = DEFAULTS.activation,
    ) -> None:
        super().__init__()
        sizes = tuple(int(n) for n in sizes)
        problem = sizes_problem(sizes)
        problem = f"sizes {sizes}: {problem}" if problem else None
        problem = problem or choice_problem(init, activation, backprop)
        if problem:
            raise ValueError(problem)
        self.save_hyperparameters()
        self.lr, self.backprop, self.check_every = lr, backprop, check_gradients_every
        self.activation = activation
        # nn.Linear for its state-dict names (layers.0.weight, ...), which every checkpoint
        # uses; its own U(±1/√n_in) start is skipped for the book's.
        self.layers = nn.ModuleList(
            nn.utils.skip_init(nn.Linear, n_in, n_out) for n_in, n_out in zip(sizes, sizes[1:])
        )
        with torch.no_grad():
            for layer, w, b in zip(self.layers, *initial_parameters(sizes, init, seed)):
                layer.weight.copy_(w)
                layer.bias.copy_(b)
        # The book's lists of Wˡ and bˡ: the layers' own tensors, named for the equations.
        self.weights = [layer.weight for layer in self.layers]
        self.biases = [layer.bias for layer in self.layers]

        n_classes = sizes[-1]
        self.val_cost, self.test_cost = MeanMetric(), MeanMetric()
        self.val_confusion = MulticlassConfusionMatrix(num_classes=n_classes)
        self.test_confusion = MulticlassConfusionMatrix(num_classes=n_classes)
        self.saturation = MeanMetric()
        self.warned_saturation = False

    @classmethod
    def from_settings(cls, settings: Settings) -> DigitsMLP:
        """The network of a run's settings."""
        return cls(**settings.arguments(cls))

    def forward(self, x: Tensor) -> Tensor:
        """Output activations (m, 10) for pixels x (m, 784) in [0, 1]."""
        activations, _ = bp.feedforward(self.weights, self.biases, x, self.activation)
        return activations[-1]

    def one_hot(self, targets: Tensor) -> Tensor:
        """The desired output y(x): 1 for the true digit, 0 elsewhere, in the model's dtype."""
        return F.one_hot(targets, self.hparams.sizes[-1]).to(self.layers[0].weight.dtype)

    # --- learning -------------------------------------------------------------------------

    def sgd_step(self, x: Tensor, y: Tensor, number: int | None = None) -> sgd.Step:
        """SGD step ``number`` (by default the next) on the mini-batch (x, y): its output aᴸ
        before the update, and the gradients it took."""
        number = self.sgd_steps + 1 if number is None else number
        if self.check_every and number % self.check_every == 0:
            self.check_gradients(x, y, number)
        # Several processes: each has a share of the mini-batch; all step by their mean gradient.
        average = self.average_over_processes if self.world_size > 1 else None
        return sgd.sgd_step(
            self.weights, self.biases, x, y, self.lr, self.backprop, average, self.activation
        )

    def check_gradients(self, x: Tensor, y: Tensor, number: int) -> None:
        """Log ‖manual − autograd‖ / ‖autograd‖ for every tensor, on this step's mini-batch."""
        _, *manual = sgd.gradients(self.weights, self.biases, x, y, "manual", self.activation)
        _, *auto = sgd.gradients(self.weights, self.biases, x, y, "autograd", self.activation)
        for kind, manual_grads, auto_grads in zip(("weight", "bias"), manual, auto):
            for l, (m, g) in enumerate(zip(manual_grads, auto_grads)):
                rel_error = (m - g).norm() / g.norm().clamp_min(torch.finfo(g.dtype).tiny)
                tag = f"grad_check/rel_error/layers.{l}.{kind}"
                self.log_step_scalar(tag, rel_error, number)

    # --- evaluation -----------------------------------------------------------------------

    def evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        """Add a batch of validation or test images to the stage's cost and confusion matrix.

        Metric objects rather than plain sums: with several processes they add up every
        process's share of the images.
        """
        x, targets = batch
        a = self(x)
        getattr(self, f"{stage}_cost").update(bp.cost(a, self.one_hot(targets)), weight=len(x))
        getattr(self, f"{stage}_confusion").update(a, targets)
        saturated = (a < SATURATED) | (a > 1 - SATURATED)
        self.saturation.update(saturated.float().mean(), weight=len(x))

    def end_evaluation(self, stage: str) -> None:
        """Log the stage's cost, accuracy, and correct and total counts (for the printed line)."""
        confusion = getattr(self, f"{stage}_confusion")
        self.confusion_matrix = confusion.compute()
        correct, total = self.confusion_matrix.trace(), self.confusion_matrix.sum()
        cost = getattr(self, f"{stage}_cost").compute()
        self.log_at_sgd_step({f"{stage}/cost": cost, f"{stage}/accuracy": correct / total})
        self.log(f"{stage}/correct", correct.float(), logger=False)
        self.log(f"{stage}/total", total.float(), logger=False)
        for metric in (confusion, getattr(self, f"{stage}_cost")):
            metric.reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.end_evaluation("val")
        saturation = float(self.saturation.compute())
        self.saturation.reset()
        if saturation > 0.99 and not self.warned_saturation:
            self.warned_saturation = True
            rank_zero_warn(
                f"the output layer is saturated: {saturation:.1%} of the output activations are "
                "within 1e-3 of 0 or 1, where sigmoid neurons learn slowly; try a smaller --lr"
            )

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.end_evaluation("test")
        self.saturation.reset()

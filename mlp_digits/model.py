"""DigitsMLP: the network of the videos and the book as a LightningModule.

    a⁽ˡ⁺¹⁾ = σ(W⁽ˡ⁾ a⁽ˡ⁾ + b⁽ˡ⁾)       sigmoid after every layer, the output layer included
    C = 1/(2m) Σ_x ‖y(x) − a(x)‖²     the quadratic cost of a mini-batch
    w ← w − η ∂C/∂w                   plain SGD: no momentum, no weight decay

The gradients come from autograd (``backprop="autograd"``) or from the book's four equations
in ``mlp_digits.backprop`` (``backprop="manual"``); both feed the same ``torch.optim.SGD``.

A Lightning training step here is a *chunk*: a stack of K consecutive mini-batches, each
followed by its own exact SGD update. Lightning's per-step bookkeeping costs more than one
SGD step of this small network, so paying it once per K updates is what makes training fast;
the mathematics is the same as one mini-batch at a time. Wherever a user sees "step" (the
global step, the x-axis of ``train/cost``, the progress bar) it means one SGD update.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from mlp_digits import backprop as bp

INITS = ("gaussian", "scaled")
BACKPROPS = ("autograd", "manual")
LOG_EVERY_N_STEPS = 100  # interval of the train/cost curve, in SGD steps


class DigitsMLP(L.LightningModule):
    """A fully connected sigmoid network trained by mini-batch SGD on the quadratic cost.

    Args:
        sizes: neurons per layer, input first: ``(784, 16, 16, 10)`` is the video's network.
        lr: the learning rate η.
        init: ``"gaussian"``: weights and biases from N(0, 1), as the book's network.py;
            ``"scaled"``: weights from N(0, 1/n_in), biases from N(0, 1), as network2.py.
        backprop: ``"autograd"`` or ``"manual"`` (gradients from ``mlp_digits.backprop``).
    """

    def __init__(
        self,
        sizes: Sequence[int] = (784, 16, 16, 10),
        lr: float = 3.0,
        init: str = "gaussian",
        backprop: str = "autograd",
    ) -> None:
        super().__init__()
        if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
            raise ValueError(f"sizes must be at least two positive layer widths, got {sizes}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if backprop not in BACKPROPS:
            raise ValueError(f"backprop must be one of {BACKPROPS}, got {backprop!r}")
        sizes = tuple(int(n) for n in sizes)
        self.save_hyperparameters({"sizes": sizes, "lr": lr, "init": init, "backprop": backprop})
        # Several SGD updates per Lightning step, and hand-filled gradients: both need the
        # optimizer in our hands rather than Lightning's automatic loop.
        self.automatic_optimization = False

        self.layers = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes, sizes[1:]))
        self.reset_parameters(init)

        n_classes = sizes[-1]
        self.train_cost = MeanMetric()
        self.val_accuracy = MulticlassAccuracy(num_classes=n_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(num_classes=n_classes, average="micro")
        self.val_confusion = MulticlassConfusionMatrix(num_classes=n_classes)
        self.test_confusion = MulticlassConfusionMatrix(num_classes=n_classes)

    @torch.no_grad()
    def reset_parameters(self, init: str) -> None:
        """Draw fresh weights and biases.

        ``nn.Linear`` starts from U(±1/√n_in); the book starts from N(0, 1), and results only
        compare with the book's if we start where it does.
        """
        for layer in self.layers:
            n_in = layer.in_features
            std = 1.0 if init == "gaussian" else n_in**-0.5
            layer.weight.normal_(0.0, std)
            layer.bias.normal_(0.0, 1.0)

    @property
    def weights(self) -> list[Tensor]:
        return [layer.weight for layer in self.layers]

    @property
    def biases(self) -> list[Tensor]:
        return [layer.bias for layer in self.layers]

    def forward(self, x: Tensor) -> Tensor:
        """Output activations (m, 10) for pixels x (m, 784) in [0, 1]."""
        for layer in self.layers:
            x = torch.sigmoid(layer(x))
        return x

    def one_hot(self, targets: Tensor) -> Tensor:
        """The desired output y(x): 1 for the true digit, 0 elsewhere, in the model's dtype."""
        return F.one_hot(targets, self.hparams.sizes[-1]).to(self.layers[0].weight.dtype)

    # --- training -------------------------------------------------------------------------

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            self.parameters(), lr=self.hparams.lr, momentum=0.0, weight_decay=0.0
        )

    def sgd_step(self, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> Tensor:
        """One SGD update on the mini-batch (x, y); returns its cost before the update."""
        if self.hparams.backprop == "manual":
            activations, zs = bp.feedforward(self.weights, self.biases, x)
            nabla_w, nabla_b = bp.backward(self.weights, activations, zs, y)
            for layer, nw, nb in zip(self.layers, nabla_w, nabla_b):
                layer.weight.grad = nw
                layer.bias.grad = nb
            cost = bp.cost(activations[-1], y)
        else:
            for p in self.parameters():
                p.grad = None
            cost = bp.cost(self(x), y)
            cost.backward()
            cost = cost.detach()
        optimizer.step()
        return cost

    def training_step(self, chunk: tuple[Tensor, Tensor], chunk_idx: int) -> None:
        """K SGD updates, one per mini-batch of the chunk ``(x: (K, B, 784), targets: (K, B))``."""
        xs, targets = chunk
        ys = self.one_hot(targets)
        # The torch optimizer itself: Lightning's wrapper would add its hooks to every update.
        optimizer = self.optimizers().optimizer
        costs = torch.stack([self.sgd_step(optimizer, x, y) for x, y in zip(xs, ys)])
        self.advance_global_step(len(xs))
        self.train_cost.update(costs)
        # self.log costs far more than an SGD step: log the mean of the recent steps' costs
        # every LOG_EVERY_N_STEPS steps and at the end of the epoch, rather than each chunk.
        self.recent_costs.append(costs)
        end_of_epoch = chunk_idx + 1 == self.trainer.num_training_batches
        if self.global_step >= self.next_log_step or end_of_epoch:
            self.log(
                "train/cost", torch.cat(self.recent_costs).mean(), on_step=True, on_epoch=False
            )
            self.log_step(on_step=True)
            self.recent_costs = []
            self.next_log_step = self.global_step + LOG_EVERY_N_STEPS

    def on_train_epoch_start(self) -> None:
        self.recent_costs: list[Tensor] = []
        self.next_log_step = self.global_step + LOG_EVERY_N_STEPS

    def on_train_epoch_end(self) -> None:
        self.log("train/epoch_cost", self.train_cost)  # the mean over the epoch's SGD steps
        self.log_step()

    def advance_global_step(self, n_steps: int) -> None:
        """Count ``n_steps`` SGD updates in Lightning's global step.

        Lightning counts a step when its optimizer wrapper steps; we step the torch optimizer
        directly (see ``training_step``), so we count the updates ourselves.
        """
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        for _ in range(n_steps):
            progress.increment_ready()
            progress.increment_completed()

    def log_step(self, on_step: bool = False) -> None:
        """Make the global step (SGD updates) the x-axis of the scalars logged with it.

        Without a logged ``step``, Lightning would plot against its own steps (chunks) and add
        an ``epoch`` scalar of its own.
        """
        self.log("step", float(self.global_step), on_step=on_step, on_epoch=not on_step)

    # --- evaluation -----------------------------------------------------------------------

    def evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, targets = batch
        a = self(x)
        self.log(f"{stage}/cost", bp.cost(a, self.one_hot(targets)), batch_size=len(x))
        accuracy = getattr(self, f"{stage}_accuracy")
        accuracy(a, targets)
        self.log(f"{stage}/accuracy", accuracy)
        getattr(self, f"{stage}_confusion").update(a, targets)

    def end_evaluation(self, stage: str) -> None:
        """Log the epoch's correct and total counts (not to TensorBoard: for the printed line)."""
        confusion = getattr(self, f"{stage}_confusion")
        counts = confusion.compute()
        confusion.reset()
        self.confusion_matrix = counts
        self.log(f"{stage}/correct", counts.trace().float(), logger=False)
        self.log(f"{stage}/total", counts.sum().float(), logger=False)
        self.log_step()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.end_evaluation("val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.end_evaluation("test")

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
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from mlp_digits import backprop as bp

INITS = ("gaussian", "scaled")
BACKPROPS = ("autograd", "manual")
LOG_EVERY_N_STEPS = 100  # interval of the train/cost curve, in SGD steps
SATURATED = 1e-3  # an output activation this close to 0 or 1 has all but stopped learning


class NonFiniteCost(RuntimeError):
    """The cost became NaN or infinite; the message names the step and what to do."""


class DigitsMLP(L.LightningModule):
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
    """

    def __init__(
        self,
        sizes: Sequence[int] = (784, 16, 16, 10),
        lr: float = 3.0,
        init: str = "gaussian",
        backprop: str = "autograd",
        check_gradients_every: int = 0,
    ) -> None:
        super().__init__()
        if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
            raise ValueError(f"sizes must be at least two positive layer widths, got {sizes}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if backprop not in BACKPROPS:
            raise ValueError(f"backprop must be one of {BACKPROPS}, got {backprop!r}")
        sizes = tuple(int(n) for n in sizes)
        self.save_hyperparameters(
            {
                "sizes": sizes,
                "lr": lr,
                "init": init,
                "backprop": backprop,
                "check_gradients_every": check_gradients_every,
            }
        )
        # Several SGD updates per Lightning step, and hand-filled gradients: both need the
        # optimizer in our hands rather than Lightning's automatic loop.
        self.automatic_optimization = False

        self.layers = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes, sizes[1:]))
        self.reset_parameters(init)

        n_classes = sizes[-1]
        self.val_cost = MeanMetric()
        self.test_cost = MeanMetric()
        self.saturation = MeanMetric()
        self.warned_saturation = False
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

    def sgd_step(
        self, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, average_ranks: bool = False
    ) -> Tensor:
        """One SGD update on the mini-batch (x, y); returns its cost before the update.

        The gradients land in every parameter's ``.grad``, from autograd or from BP1–BP4.
        With several processes (DDP), ``average_ranks`` averages them over the processes
        first, so that every rank takes the same step.
        """
        params = optimizer.param_groups[0]["params"]  # the weights and biases, layer by layer
        if self.hparams.backprop == "manual":
            weights = params[0::2]
            activations, zs = bp.feedforward(weights, params[1::2], x)
            nabla_w, nabla_b = bp.backward(weights, activations, zs, y)
            for w, b, nw, nb in zip(weights, params[1::2], nabla_w, nabla_b):
                w.grad, b.grad = nw, nb
            cost = bp.cost(activations[-1], y)
        else:
            for p in params:
                p.grad = None
            cost = bp.cost(self(x), y)
            cost.backward()
            cost = cost.detach()
        if average_ranks:
            for p in params:
                torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.AVG)
        self.apply_sgd_update(optimizer)
        return cost

    @staticmethod
    @torch.no_grad()
    def apply_sgd_update(optimizer: torch.optim.Optimizer) -> None:
        """w ← w − η ∂C/∂w for every parameter of the optimizer, from its ``.grad``.

        This is all ``torch.optim.SGD.step`` does without momentum and weight decay; its own
        bookkeeping (hooks, profiler records, per-call checks) costs more than the update of
        this small network, so the update is one fused call here. The learning rate is read
        from the optimizer, so a scheduler or a change of ``lr`` still applies.
        """
        for group in optimizer.param_groups:
            params = group["params"]
            torch._foreach_add_(params, [p.grad for p in params], alpha=-group["lr"])

    def on_train_start(self) -> None:
        # Here rather than at epoch start: a run resumed mid-epoch starts no epoch.
        self.recent_costs: list[Tensor] = []
        self.next_log_step = self.global_step + LOG_EVERY_N_STEPS
        self.pending_scalars: list[tuple[str, Tensor, int]] = []
        self.epoch_costs: list[Tensor] = []
        model = self.trainer.strategy.model
        if isinstance(model, DistributedDataParallel):
            # DDP expects one backward per forward; a chunk makes K of them. We average the
            # gradients ourselves in sgd_step (the manual ones never pass DDP's hooks anyway).
            model.require_backward_grad_sync = False

    def training_step(self, chunk: tuple[Tensor, Tensor], chunk_idx: int) -> None:
        """K SGD updates, one per mini-batch of the chunk ``(x: (K, B, 784), targets: (K, B))``."""
        xs, targets = chunk
        ys = self.one_hot(targets)
        # The torch optimizer itself: Lightning's wrapper would add its hooks to every update.
        optimizer = self.optimizers().optimizer
        average_ranks = self.trainer.world_size > 1
        first_step = self.global_step + 1
        costs = []
        for x, y in zip(xs, ys):
            if self.hparams.check_gradients_every and (
                (first_step + len(costs)) % self.hparams.check_gradients_every == 0
            ):
                self.check_gradients(x, y, step=first_step + len(costs))
            costs.append(self.sgd_step(optimizer, x, y, average_ranks))
        costs = torch.stack(costs)
        self.advance_global_step(len(xs))
        self.stop_if_not_finite(costs, first_step)
        self.epoch_costs.append(costs)
        # The mean cost of the steps since the last point, every LOG_EVERY_N_STEPS steps and at
        # the end of the epoch; kept on the device until the chunk ends (see on_train_batch_end).
        self.recent_costs.append(costs)
        end_of_epoch = chunk_idx + 1 == self.trainer.num_training_batches
        if self.global_step >= self.next_log_step or end_of_epoch:
            mean_cost = torch.cat(self.recent_costs).mean()
            self.pending_scalars.append(("train/cost", mean_cost, self.global_step))
            self.recent_costs = []
            self.next_log_step = self.global_step + LOG_EVERY_N_STEPS

    def stop_if_not_finite(self, costs: Tensor, first_step: int) -> None:
        """Stop at the first NaN or infinite cost of the chunk, naming its step.

        With sigmoid outputs the quadratic cost is at most 5, so this means float overflow (a
        huge --lr) or bad data. One check per chunk: a host sync per step would be slow.
        """
        finite = torch.isfinite(costs)
        if bool(finite.all()):
            return
        bad = int((~finite).nonzero()[0])
        value = float(costs[bad])
        raise NonFiniteCost(
            f"cost became {value} at step {first_step + bad} (epoch {self.current_epoch}); "
            "try a smaller --lr"
        )

    def check_gradients(self, x: Tensor, y: Tensor, step: int) -> None:
        """Log ‖manual − autograd‖ / ‖autograd‖ for every tensor, on this step's batch."""
        manual_w, manual_b = bp.backprop(self.weights, self.biases, x, y)
        params = [p.detach().requires_grad_() for layer in self.layers for p in layer.parameters()]
        with torch.enable_grad():
            a = x
            for w, b in zip(params[0::2], params[1::2]):
                a = torch.sigmoid(a @ w.T + b)
            auto = torch.autograd.grad(bp.cost(a, y), params)
        manual = [g for pair in zip(manual_w, manual_b) for g in pair]
        names = [name for name, _ in self.layers.named_parameters()]
        for name, m, g in zip(names, manual, auto):
            rel_error = (m - g).norm() / g.norm().clamp_min(torch.finfo(g.dtype).tiny)
            self.pending_scalars.append((f"grad_check/rel_error/layers.{name}", rel_error, step))

    def on_train_batch_end(self, *args: object) -> None:
        """Write the chunk's step-level scalars at their exact steps.

        Straight to TensorBoard: ``self.log`` costs more than a whole SGD step of this network,
        and it could only place a point at the end of a chunk. Reading the values is one host
        sync, in the chunks that have something to write.
        """
        if self.pending_scalars and isinstance(self.logger, TensorBoardLogger):
            for tag, value, step in self.pending_scalars:
                self.logger.experiment.add_scalar(tag, float(value), step)
        self.pending_scalars = []

    def on_train_epoch_end(self) -> None:
        # The mean over the epoch's SGD steps (every rank has as many).
        epoch_cost = torch.cat(self.epoch_costs).mean() if self.epoch_costs else torch.nan
        self.log("train/epoch_cost", epoch_cost, sync_dist=True)
        self.log_step()
        self.epoch_costs = []

    def advance_global_step(self, n_steps: int) -> None:
        """Count ``n_steps`` SGD updates in Lightning's global step.

        Lightning counts a step when its optimizer wrapper steps; we step the torch optimizer
        directly (see ``training_step``), so we count the updates ourselves.
        """
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        for _ in range(n_steps):
            progress.increment_ready()
            progress.increment_completed()

    def log_step(self) -> None:
        """Make the global step (SGD updates) the x-axis of the epoch's logged scalars.

        Without a logged ``step``, Lightning would plot against its own steps (chunks) and add
        an ``epoch`` scalar of its own.
        """
        self.log("step", float(self.global_step), sync_dist=True)

    # --- evaluation -----------------------------------------------------------------------

    def evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, targets = batch
        a = self(x)
        # Metric objects, not plain tensors: under DDP they sum over every rank's shard.
        cost = getattr(self, f"{stage}_cost")
        cost.update(bp.cost(a, self.one_hot(targets)), weight=len(x))
        self.log(f"{stage}/cost", cost)
        accuracy = getattr(self, f"{stage}_accuracy")
        accuracy(a, targets)
        self.log(f"{stage}/accuracy", accuracy)
        getattr(self, f"{stage}_confusion").update(a, targets)
        saturated = (a < SATURATED) | (a > 1 - SATURATED)
        self.saturation.update(saturated.float().mean(), weight=len(x))

    def end_evaluation(self, stage: str) -> None:
        """Log the epoch's correct and total counts (not to TensorBoard: for the printed line)."""
        confusion = getattr(self, f"{stage}_confusion")
        counts = confusion.compute()
        confusion.reset()
        self.confusion_matrix = counts
        # Already summed over ranks by the metric; sync_dist only agrees on the same number.
        self.log(f"{stage}/correct", counts.trace().float(), logger=False, sync_dist=True)
        self.log(f"{stage}/total", counts.sum().float(), logger=False, sync_dist=True)
        self.log_step()

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

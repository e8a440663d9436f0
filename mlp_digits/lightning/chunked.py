"""Many SGD steps per Lightning step: the machinery that makes training fast, in one place.

Lightning's bookkeeping around one training step (hooks, loop state, logging, progress)
costs more than one SGD step of this small network. So a Lightning step here is a *chunk*:
K consecutive mini-batches, stacked as (K, B, 784), each followed by its own exact SGD update.
The arithmetic is that of one mini-batch at a time; only the bookkeeping is paid once per K.
What follows from that choice is all here, so that the model can read like the book:

- SGD steps are counted here (``sgd_steps``, kept in checkpoints): every curve's x-axis and
  every step a user is told about is an SGD step. Lightning has no optimizer to step (the
  updates are ``sgd.sgd_step``'s), so its own global step stays 0, and the checkpoints are
  the project's own callback (``mlp_digits.lightning.checkpoint.SaveCheckpoints``).
- The costs of the epoch so far travel in the checkpoint, so that ``train/epoch_cost`` and
  ``train/cost`` after a run resumed mid-epoch are the uninterrupted run's.
- Step-level curves (``train/cost`` every ``LOG_EVERY_N_STEPS`` steps, and any scalar a
  subclass adds with ``log_step_scalar``) are kept on the device and written at their exact
  steps with one host sync, at the end of the chunk that has something to write.
- Several processes (DDP): ``average_over_processes`` averages a step's gradients with one
  all-reduce of one flat buffer, and a non-finite cost seen by any rank stops every rank at
  the same chunk. The collectives are ``torch.distributed``'s own, not Lightning's
  ``strategy.reduce``, which runs a barrier before each: a host sync at every SGD step.

A subclass implements ``one_hot(targets)``, the desired outputs y(x), and ``sgd_step(x, y,
number)``: update number ``number`` (counted from 1) on one mini-batch, returning its
``sgd.Step`` (the output aᴸ before the update and the gradients).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from torch import Tensor

from mlp_digits import backprop as bp
from mlp_digits.sgd import Step

LOG_EVERY_N_STEPS = 100  # interval of the train/cost curve, in SGD steps


class NonFiniteCost(RuntimeError):
    """The cost became NaN or infinite; the message names the step and what to do."""


def mean_over_processes(tensor: Tensor) -> Tensor:
    """The mean over the processes of ``tensor``, in place, by one all-reduce (no barrier).

    ``ReduceOp.AVG`` where the backend has it (NCCL); gloo has none, so there the sum is
    divided by the number of processes, the arithmetic of Lightning's ``strategy.reduce``.
    """
    if tensor.device.type == "cuda" and "nccl" in dist.get_backend():
        dist.all_reduce(tensor, op=dist.ReduceOp.AVG)
        return tensor
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.div_(dist.get_world_size())


class ChunkedSGD(L.LightningModule):
    """A LightningModule trained by plain SGD, K updates per Lightning step (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False  # K updates per step: the loop is ours
        self.sgd_steps = 0
        self.world_size = 1  # processes averaging their gradients; set when training starts
        self.step_scalars: list[tuple[str, Tensor, int]] = []
        self.recent_costs: list[Tensor] = []
        self.epoch_costs: list[Tensor] = []
        self.next_log_step: int | None = None
        self.last_step: Step | None = None

    def one_hot(self, targets: Tensor) -> Tensor:
        """The desired outputs y(x) for class indices ``targets``."""
        raise NotImplementedError

    def sgd_step(self, x: Tensor, y: Tensor, number: int | None = None) -> Step:
        """SGD update ``number`` (by default the next) on the mini-batch (x, y)."""
        raise NotImplementedError

    def configure_optimizers(self) -> None:
        return None  # the updates are sgd.sgd_step's: Lightning has nothing to step

    def on_train_start(self) -> None:
        self.world_size = self.trainer.world_size
        if self.next_log_step is None:  # else it came from the checkpoint of a resumed run
            self.next_log_step = self.sgd_steps + LOG_EVERY_N_STEPS
        self.epoch_costs = [c.to(self.device) for c in self.epoch_costs]  # from a checkpoint
        self.recent_costs = [c.to(self.device) for c in self.recent_costs]

    def training_step(self, chunk: tuple[Tensor, Tensor], chunk_idx: int) -> None:
        """K SGD updates, one per mini-batch along the chunk's first dimension."""
        xs, targets = chunk
        ys = self.one_hot(targets)  # the whole chunk's at once
        first_step = self.sgd_steps + 1
        outputs = []
        for k, (x, y) in enumerate(zip(xs, ys)):
            step = self.sgd_step(x, y, first_step + k)
            outputs.append(step.output)
        # Counted once per chunk: assigning a module's attribute costs about a tenth of a step.
        self.sgd_steps += len(outputs)
        self.last_step = step  # the gradients of the epoch's last step, for the histograms
        # The K mini-batches' costs C = 1/(2m) Σ_x ‖y(x) − a(x)‖² (each before its own step),
        # in one operation: the same numbers as one cost per step, for a fraction of the time.
        costs = bp.cost(torch.stack(outputs), ys)
        self.check_finite(costs, first_step)
        self.epoch_costs.append(costs)
        self.recent_costs.append(costs)
        if self.sgd_steps >= self.next_log_step:
            self.log_train_cost()
        self.write_step_scalars()

    def log_train_cost(self) -> None:
        """The mean cost of the SGD steps since the previous point of the curve."""
        if self.recent_costs:
            cost = torch.cat(self.recent_costs).mean(dim=0)
            self.log_step_scalar("train/cost", cost, self.sgd_steps)
        self.recent_costs = []
        self.next_log_step = self.sgd_steps + LOG_EVERY_N_STEPS

    def log_step_scalar(self, tag: str, value: Tensor, step: int) -> None:
        """Write ``value`` (a 0-d tensor, left on the device until the chunk ends) at ``step``."""
        self.step_scalars.append((tag, value, step))

    def write_step_scalars(self) -> None:
        if self.step_scalars and self.logger is not None:
            values = torch.stack([v.detach().double() for _, v, _ in self.step_scalars]).tolist()
            for (tag, _, step), value in zip(self.step_scalars, values):
                self.logger.log_metrics({tag: value}, step=step)
        self.step_scalars = []

    def on_train_epoch_end(self) -> None:
        # The mean over the epoch's SGD steps; every rank has as many.
        empty = torch.zeros(0, dtype=self.dtype, device=self.device)
        epoch_cost = (torch.cat(self.epoch_costs) if self.epoch_costs else empty).mean(dim=0)
        if self.world_size > 1:
            mean_over_processes(epoch_cost)
        self.log_train_cost()
        self.write_step_scalars()
        self.log_at_sgd_step({"train/epoch_cost": epoch_cost})
        self.epoch_costs = []

    def log_at_sgd_step(self, metrics: dict[str, Tensor]) -> None:
        """Epoch-level metrics: for callbacks and the printed lines, and for the logger at the
        current SGD step (Lightning's own ``self.log`` would place them at its chunk count)."""
        for name, value in metrics.items():
            self.log(name, value, logger=False)
        if self.logger is not None:
            values = {name: float(value) for name, value in metrics.items()}
            self.logger.log_metrics(values, step=self.sgd_steps)

    def average_over_processes(self, *grads: list[Tensor]) -> tuple[list[Tensor], ...]:
        """The mean over the processes of each list of gradients, by one all-reduce of them
        all as one flat buffer."""
        flat = mean_over_processes(torch.cat([g.reshape(-1) for group in grads for g in group]))
        parts = iter(flat.split([g.numel() for group in grads for g in group]))
        return tuple([next(parts).view_as(g) for g in group] for group in grads)

    def check_finite(self, costs: Tensor, first_step: int) -> None:
        """Stop at a NaN or infinite cost, naming its step; every rank stops at this chunk.

        With sigmoid outputs the quadratic cost is at most n_out / 2, so this means float
        overflow (a huge --lr) or bad data. One check per chunk: a host sync per SGD step
        would be slow. With several processes the ranks' answers meet on the device (the
        minimum of 1s and 0s: 0 if any saw one) before that one sync.
        """
        all_finite = torch.isfinite(costs).all()
        if self.world_size > 1:
            all_finite = all_finite.int()
            dist.all_reduce(all_finite, op=dist.ReduceOp.MIN)
        if not bool(all_finite):  # the chunk's host sync
            self.on_nonfinite_cost(costs, first_step)

    def on_nonfinite_cost(self, costs: Tensor, first_step: int) -> None:
        """Raise ``NonFiniteCost`` naming the first bad step (a subclass may do otherwise)."""
        bad = (~torch.isfinite(costs)).nonzero()
        if len(bad) == 0:  # another process saw it
            raise NonFiniteCost(f"another process saw a non-finite cost in steps {first_step}+")
        value = float(costs[tuple(bad[0])])
        raise NonFiniteCost(
            f"cost became {value} at step {first_step + int(bad[0, 0])} "
            f"(epoch {self.current_epoch}); try a smaller --lr"
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sgd_steps"] = self.sgd_steps
        # Each step's cost since the epoch's start and since the curve's last point: a run
        # resumed mid-epoch averages them with its own, as the uninterrupted run does.
        checkpoint["step_costs"] = {
            "epoch": [c.cpu() for c in self.epoch_costs],
            "recent": [c.cpu() for c in self.recent_costs],
            "next_log_step": self.next_log_step,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.sgd_steps = checkpoint.get("sgd_steps", 0)  # 0: a network without a run
        saved = checkpoint.get("step_costs", {})
        self.epoch_costs = list(saved.get("epoch", []))
        self.recent_costs = list(saved.get("recent", []))
        self.next_log_step = saved.get("next_log_step")

"""StackedMLP: N networks of the same layer sizes, trained at once as one stack.

Network k of the stack is the ``scripts/train.py`` run with its own seed and its own η: the
same initial weights (``network.initial_parameters(sizes, init, seed_k)``), the same
mini-batches in the same order (``EpochPermutation(n, seed_k)``), the same step
(``sgd.sgd_step``, with one η per network). Only the arithmetic is shared:

    weights[l]  (N, n_out, n_in)     biases[l]  (N, n_out)     x  (N, m, 784)

so each layer is one batched matrix product for all N networks, and ``mlp_digits.backprop``
(BP1–BP4 written once for one network or a stack) or autograd gives all N gradients at once.

The pixels stay uint8 on the device (a quarter of float32's bytes to gather every step) and
become floats per mini-batch by ``data.pixels``, the conversion ``data.load_mnist`` makes for
train.py: k / 255 in float32, then the model's dtype, bit for bit on every device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlp_digits import backprop as bp
from mlp_digits import sgd
from mlp_digits.data import pixel_values, pixels
from mlp_digits.lightning.chunked import ChunkedSGD
from mlp_digits.lightning.datamodule import ChunkedBatches, DeviceData, SlicedBatches
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.network import stacked_initial_parameters
from mlp_digits.sgd import EpochPermutation

# Samples (networks x mini-batch x steps) per chunk of a stack, one Lightning step: Lightning's
# bookkeeping is paid once per chunk, and a chunk of uint8 pixels stays a few MB however many
# networks there are.
STACK_CHUNK_SAMPLES = 20_000
EVAL_FLOATS = 2**23  # activations per evaluation batch (N x images x widest layer)
HISTORY = ("train_cost", "val_correct", "val_cost", "test_correct", "test_cost", "dead_fraction")


class StackPermutations:
    """Every network's order of the training images for one epoch, one row per network.

    Lightning calls ``set_epoch`` at the start of every epoch (as for PyTorch's samplers).
    """

    def __init__(self, n: int, seeds: Sequence[int], device: torch.device) -> None:
        self.samplers = [EpochPermutation(n, seed, device) for seed in seeds]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for sampler in self.samplers:
            sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return self.samplers[0].n

    def permutations(self) -> Tensor:
        """(N, n) image indices on the device: every network's ``EpochPermutation``, drawn on
        the CPU and moved in one copy; int32 halves the memory of a thousand networks' orders."""
        n_nets, n = len(self.samplers), self.samplers[0].n
        orders = torch.empty(n_nets, n, dtype=torch.int32, device="cpu")
        for k, sampler in enumerate(self.samplers):
            orders[k] = sampler.cpu_permutation()
        return orders.to(self.samplers[0].device, non_blocking=True)


class StackBatches(ChunkedBatches):
    """Training chunks for a stack: ``(x, targets)`` shaped (K, N, B, 784) uint8 and (K, N, B).

    Step s of network k is the mini-batch ``perm_k[s*B:(s+1)*B]``; a short last mini-batch is
    kept, as the book's ``SGD`` keeps it, in a chunk of its own. The chunks, and resuming
    mid-epoch, are ``lightning.datamodule.ChunkedBatches``'s, over one order per network.
    """

    sampler: StackPermutations

    def order(self) -> Tensor:
        """This epoch's image indices of every network, (N, n)."""
        return self.sampler.permutations()


class StackData(DeviceData):
    """One stack's view of the sweep's data: the uint8 tensors, shared by every stack.

    ``splits`` maps "train", "val", "test" to ``(pixels uint8 (n, 784), targets (n,))``.
    """

    def __init__(
        self, splits: dict[str, tuple[Tensor, Tensor]], seeds: Sequence[int], batch_size: int
    ) -> None:
        super().__init__()
        self.splits, self.seeds, self.batch_size = splits, list(seeds), batch_size
        n_nets = len(self.seeds)
        self.steps_per_chunk = max(1, round(STACK_CHUNK_SAMPLES / (n_nets * batch_size)))

    def setup(self, stage: str | None = None) -> None:
        device = self.device()
        self.splits = {k: (x.to(device), t.to(device)) for k, (x, t) in self.splits.items()}

    def train_dataloader(self) -> StackBatches:
        x, targets = self.splits["train"]
        sampler = StackPermutations(len(x), self.seeds, x.device)
        return StackBatches(
            x, targets, sampler, self.batch_size, self.steps_per_chunk, self.trainer
        )

    def val_dataloader(self) -> list[SlicedBatches]:
        model = self.trainer.lightning_module
        return [SlicedBatches(*self.splits[k], model.eval_batch_size()) for k in ("val", "test")]


class StackedMLP(ChunkedSGD):
    """N networks of the same sizes and activation, each with its own seed, η and init,
    trained together.

    Args:
        sizes: neurons per layer, input first, shared by the stack.
        lrs: η of each network.
        seeds: seed of each network: its initial weights and its order of the images.
        init: as for ``DigitsMLP``, one for the stack or one per network (it only chooses
            where a network starts).
        backprop, activation: as for ``DigitsMLP``, shared by the stack.

    The per-epoch record of every network (``history``: train cost, validation and test
    counts and costs, the fraction of dead hidden neurons) and each network's weights at its
    best validation epoch (what train.py's best checkpoint holds) travel in the checkpoint,
    so a resumed sweep goes on.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        lrs: Sequence[float],
        seeds: Sequence[int],
        init: str | Sequence[str] = "gaussian",
        backprop: str = "autograd",
        activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        if len(lrs) != len(seeds) or not seeds:
            raise ValueError(f"one η per seed, at least one: got {len(lrs)} η, {len(seeds)} seeds")
        sizes = tuple(int(n) for n in sizes)
        self.save_hyperparameters(
            {"sizes": sizes, "lrs": list(lrs), "seeds": list(seeds),
             "init": init if isinstance(init, str) else list(init),
             "backprop": backprop, "activation": activation}
        )  # fmt: skip
        self.activation = activation
        weights, biases = stacked_initial_parameters(sizes, init, seeds)
        self.weights = nn.ParameterList(weights)
        self.biases = nn.ParameterList(biases)
        n_nets = len(seeds)
        # Made on the CPU, as the weights are: the buffers move with the module. η in float64
        # whatever the precision, so that η = 0.1 is 0.1 where the model is float64.
        cpu, long = torch.device("cpu"), torch.long
        self.register_buffer("lr", torch.tensor(list(lrs), dtype=torch.float64, device=cpu))
        self.register_buffer("diverged_at", torch.full((n_nets,), -1, dtype=long, device=cpu))
        self.register_buffer("epoch_cost_sum", torch.zeros(n_nets, dtype=torch.float64, device=cpu))
        self.register_buffer("best_val_correct", torch.full((n_nets,), -1, dtype=long, device=cpu))
        self.register_buffer("best_epoch", torch.full((n_nets,), -1, dtype=long, device=cpu))
        # data.pixels' table of the 256 byte values, on the stack's device; not saved.
        self.register_buffer("pixel_values", pixel_values(), persistent=False)
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            self.register_buffer(f"best_weight_{l}", w.detach().clone())
            self.register_buffer(f"best_bias_{l}", b.detach().clone())
        self.history: dict[str, list[Tensor]] = {k: [] for k in HISTORY}
        self.on_diverged: Callable[[int, int], None] = lambda net, step: None

    @property
    def n_networks(self) -> int:
        return len(self.hparams.seeds)

    def best_parameters(self, l: int) -> tuple[Tensor, Tensor]:
        return getattr(self, f"best_weight_{l}"), getattr(self, f"best_bias_{l}")

    def eval_batch_size(self) -> int:
        return max(1, EVAL_FLOATS // (self.n_networks * max(self.hparams.sizes[1:])))

    def forward(self, x: Tensor) -> Tensor:
        """Output activations (N, m, 10) of every network for the same images x (m, 784)."""
        return self.feedforward(x)[-1]

    def feedforward(self, x: Tensor) -> list[Tensor]:
        """Every layer's activations (N, m, n_l) of every network for the same images x.

        The first layer is one matrix product for all N networks, (m, 784) @ (784, N·n₁):
        the images are shared, so they need not be copied N times.
        """
        w0, b0 = self.weights[0], self.biases[0]
        n_nets, n_out, n_in = w0.shape
        z = x @ w0.reshape(n_nets * n_out, n_in).T  # (m, N·n₁)
        z = z.view(len(x), n_nets, n_out).transpose(0, 1) + b0.unsqueeze(1)
        if len(self.weights) == 1:  # no hidden layer: this was the output layer
            return [torch.sigmoid(z)]
        a = bp.relu(z) if self.activation == "relu" else bp.sigmoid(z)
        activations, _ = bp.feedforward(self.weights[1:], self.biases[1:], a, self.activation)
        return activations  # the first is the first hidden layer's

    def one_hot(self, targets: Tensor) -> Tensor:
        return F.one_hot(targets.long(), self.hparams.sizes[-1]).to(self.weights[0].dtype)

    # --- training -------------------------------------------------------------------------

    def sgd_step(self, x: Tensor, y: Tensor, number: int | None = None) -> sgd.Step:
        """One SGD update of every network on its own mini-batch: the N outputs aᴸ
        (N, B, 10) before it, and the gradients.

        x: (N, B, 784) uint8 pixels, y: (N, B, 10) desired outputs.
        """
        x = pixels(x, y.dtype, self.pixel_values)
        weights, biases = list(self.weights), list(self.biases)
        # No gradient is looked at: the manual step may take BP4 inside the update.
        return sgd.sgd_step(
            weights, biases, x, y, self.lr, self.hparams.backprop, activation=self.activation,
            keep_gradients=False,
        )  # fmt: skip

    def steps_per_epoch(self) -> int:
        return self.trainer.train_dataloader.steps_per_epoch()

    def training_step(self, chunk: tuple[Tensor, Tensor], chunk_idx: int) -> None:
        """K SGD updates of the stack (``ChunkedSGD``); the epoch's costs summed per network."""
        super().training_step(chunk, chunk_idx)
        self.epoch_cost_sum += self.epoch_costs[-1].sum(0)  # (K, N) -> (N,)

    def on_train_epoch_end(self) -> None:
        # One cost per network: recorded with the validation (see on_validation_epoch_end).
        self.epoch_costs, self.recent_costs = [], []

    @torch.no_grad()
    def on_nonfinite_cost(self, costs: Tensor, first_step: int) -> None:
        """Mark each network whose cost became NaN or infinite as diverged, and freeze it
        (η = 0); the others go on. Its weights are not finite any more, and its record
        after this step means nothing: the report says "diverged"."""
        bad = ~torch.isfinite(costs)  # (K, N)
        newly = bad.any(0) & (self.diverged_at < 0)
        for k in newly.nonzero().flatten().tolist():
            step = first_step + int(bad[:, k].nonzero()[0])
            self.diverged_at[k] = step
            self.lr[k] = 0.0
            self.on_diverged(k, step)

    # --- evaluation: every network, on the validation and the test images, every epoch ----

    def on_validation_epoch_start(self) -> None:
        n, device = self.n_networks, self.lr.device
        self.counts = {k: torch.zeros(n, dtype=torch.long, device=device) for k in ("val", "test")}
        self.cost_sums = {
            k: torch.zeros(n, dtype=torch.float64, device=device) for k in self.counts
        }
        self.totals = dict.fromkeys(self.counts, 0)
        # Hidden neurons that some validation image activates (a > 0): a ReLU that none does
        # is dead, its gradient zero for every image.
        hidden = sum(self.hparams.sizes[1:-1])
        self.alive = torch.zeros(n, hidden, dtype=torch.bool, device=device)

    def validation_step(
        self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        x, targets = batch
        stage = ("val", "test")[dataloader_idx]
        activations = self.feedforward(pixels(x, self.weights[0].dtype, self.pixel_values))
        a = activations[-1]  # (N, m, 10)
        if stage == "val" and len(activations) > 1:
            self.alive |= torch.cat([(h > 0).any(dim=1) for h in activations[:-1]], dim=-1)
        y = self.one_hot(targets).expand_as(a)
        self.counts[stage] += (a.argmax(-1) == targets).sum(-1)
        self.cost_sums[stage] += bp.cost(a, y).double() * len(x)
        self.totals[stage] += len(x)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        # The mean over the epoch's SGD steps, as train.py's train/epoch_cost; the sum starts
        # again here rather than at an epoch's start, which a run resumed mid-epoch skips.
        fitting = self.trainer.state.fn == "fit"  # not a lone Trainer.validate
        record = {
            "train_cost": self.epoch_cost_sum / (self.steps_per_epoch() if fitting else 0),
            "val_correct": self.counts["val"],
            "val_cost": self.cost_sums["val"] / self.totals["val"],
            "test_correct": self.counts["test"],
            "test_cost": self.cost_sums["test"] / self.totals["test"],
            "dead_fraction": (~self.alive).double().mean(dim=-1).nan_to_num(0.0),
        }
        for key, value in record.items():
            self.history[key].append(value.cpu())
        self.epoch_cost_sum.zero_()
        self.n_val, self.n_test = self.totals["val"], self.totals["test"]
        # train.py keeps the first epoch of the highest validation accuracy (strictly better).
        better = (self.counts["val"] > self.best_val_correct) & (self.diverged_at < 0)
        self.best_val_correct[better] = self.counts["val"][better]
        self.best_epoch[better] = len(self.history["val_correct"]) - 1
        with torch.no_grad():
            for l, (w, b) in enumerate(zip(self.weights, self.biases)):
                best_w, best_b = self.best_parameters(l)
                best_w[better], best_b[better] = w[better], b[better]

    # --- checkpoints ----------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["sweep_stack"] = {
            "history": {k: [v.clone() for v in vs] for k, vs in self.history.items()},
            "totals": [getattr(self, "n_val", 0), getattr(self, "n_test", 0)],
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["sweep_stack"]
        self.history = {k: list(state["history"][k]) for k in HISTORY}
        self.n_val, self.n_test = state["totals"]

    def export(self, k: int) -> DigitsMLP:
        """Network k at its best validation epoch as a plain DigitsMLP (train.py's best)."""
        hp = self.hparams
        init = hp.init if isinstance(hp.init, str) else hp.init[k]
        net = DigitsMLP(
            sizes=hp.sizes, lr=hp.lrs[k], init=init, backprop=hp.backprop, seed=hp.seeds[k],
            activation=hp.activation,
        )  # fmt: skip
        with torch.no_grad():
            for l, layer in enumerate(net.layers):
                best_w, best_b = self.best_parameters(l)
                layer.weight.copy_(best_w[k])
                layer.bias.copy_(best_b[k])
        return net.to(self.weights[0].dtype)


def count_parameters(sizes: Sequence[int]) -> int:
    return sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes, sizes[1:]))


def stack_bytes(sizes: Sequence[int], n_nets: int, batch_size: int, dtype_bytes: int) -> int:
    """Rough memory of a stack while it trains: the weights four times (themselves, their
    gradients, the best epoch's copy, the update's temporaries), a chunk of uint8 pixels,
    each epoch's int32 orders, and the activations of an evaluation batch."""
    weights = 4 * count_parameters(sizes) * n_nets * dtype_bytes
    orders = 60_000 * 4 * n_nets
    chunk = STACK_CHUNK_SAMPLES * 784 * (1 + dtype_bytes) + n_nets * batch_size * 784 * dtype_bytes
    activations = 4 * EVAL_FLOATS * dtype_bytes
    return weights + orders + chunk + activations

"""Network k of a sweep is the scripts/train.py run with the same flags, up to rounding.

The reference is train.py's own path (``build_run`` + ``Trainer.fit``), one run per network,
on the 5,000 real images of the shared subset: float64 to 1e-10, float32 to 1e-4 relative.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import SHARED_MNIST, require_shared_data

from mlp_digits import cli
from mlp_digits.data import load_mnist
from mlp_digits.lightning.training import build_run
from mlp_digits.sweep import run as sweep
from mlp_digits.sweep.grid import Config, Network
from mlp_digits.sweep.stack import pixels


@pytest.fixture(autouse=True)
def shared_mnist() -> None:
    """Every test here reads the shared 5,000 images: skip without them, fail under CI."""
    require_shared_data(SHARED_MNIST)


SIZES = (784, 16, 16, 10)
NETS = [(0, 3.0), (1, 0.5), (2, 1.0)]  # (seed, η): three networks in one stack
COMMON = ["--data-dir", str(SHARED_MNIST), "--no-download", "--val-size", "500"]
COMMON += ["--max-epochs", "1", "--accelerator", "cpu"]


def train_py(
    tmp: Path, seed: int, lr: float, backprop: str, precision: str, batch: int = 10,
    activation: str = "sigmoid", init: str = "gaussian",
) -> dict:  # fmt: skip
    """train.py's run: its final weights and its test count (the best epoch is the only one)."""
    args = cli.train_parser().parse_args(
        [*COMMON, "--seed", str(seed), "--lr", str(lr), "--backprop", backprop,
         "--precision", precision, "--logdir", str(tmp / f"single{seed}"), "--images-every", "0",
         "--batch-size", str(batch), "--activation", activation, "--init", init]
    )  # fmt: skip
    run = build_run(args)
    run.trainer.fit(run.model, datamodule=run.datamodule)
    run.trainer.test(run.model, datamodule=run.datamodule, verbose=False)
    state = {k: v.clone() for k, v in run.model.state_dict().items()}
    return {"state": state, "test_correct": int(run.trainer.callback_metrics["test/correct"])}


def sweep_stack(
    tmp: Path, backprop: str, precision: str, batch: int = 10, configs: list[Config] | None = None
) -> dict:
    """The three networks trained as one stack by the sweep's own path."""
    args = cli.sweep_parser().parse_args(
        [*COMMON, "--backprop", backprop, "--precision", precision, "--logdir", str(tmp)]
    )
    configs = configs or [Config(SIZES, lr, batch) for _, lr in NETS]
    nets = [Network(i, c, seed) for i, (c, (seed, _)) in enumerate(zip(configs, NETS))]
    progress = sweep.SweepProgress(0, show_bar=False)
    stack_dir = tmp / "stack"
    stack_dir.mkdir()
    status = sweep.train_stack(args, nets, "stack", sweep.load_splits(args), stack_dir, progress)
    assert status == 0
    (record,) = sweep.load_stack_records(stack_dir)
    return record


@pytest.mark.parametrize("backprop", ["autograd", "manual"])
@pytest.mark.parametrize(
    ("precision", "relative", "tolerance"), [("64", False, 1e-10), ("32", True, 1e-4)]
)
def test_every_network_of_a_stack_equals_its_train_py_run(
    tmp_path: Path, backprop: str, precision: str, relative: bool, tolerance: float
) -> None:
    """float64: every weight within 1e-10; float32: within 1e-4 of the tensor's largest
    weight (an elementwise relative test would fail on weights that pass through zero)."""
    record = sweep_stack(tmp_path, backprop, precision)
    for k, (seed, lr) in enumerate(NETS):
        single = train_py(tmp_path, seed, lr, backprop, precision)
        for l, (w, b) in enumerate(record["best"]):  # one epoch: the best epoch is the last
            want_w = single["state"][f"layers.{l}.weight"]
            want_b = single["state"][f"layers.{l}.bias"]
            assert w.dtype == want_w.dtype
            for got, want in ((w[k], want_w), (b[k], want_b)):
                scale = float(want.abs().max()) if relative else 1.0
                assert float((got - want).abs().max()) <= tolerance * scale, (k, l)
            assert not torch.equal(w[k], w[(k + 1) % len(NETS)])  # the networks differ
        assert int(record["history"]["test_correct"][0, k]) == single["test_correct"]


def test_a_short_last_mini_batch_is_kept_as_train_py_keeps_it(tmp_path: Path) -> None:
    """4,500 training images in mini-batches of 7: 642 of 7, then one of 6."""
    record = sweep_stack(tmp_path, "manual", "64", batch=7)
    assert record["steps_per_epoch"] == 643
    for k, (seed, lr) in enumerate(NETS):
        single = train_py(tmp_path, seed, lr, "manual", "64", batch=7)
        for l, (w, b) in enumerate(record["best"]):
            assert float((w[k] - single["state"][f"layers.{l}.weight"]).abs().max()) <= 1e-10
            assert float((b[k] - single["state"][f"layers.{l}.bias"]).abs().max()) <= 1e-10


def test_uint8_pixels_become_exactly_load_mnists_floats() -> None:
    x, _ = load_mnist(SHARED_MNIST, "train")
    u8 = x.mul(255).round_().to(torch.uint8)
    assert torch.equal(pixels(u8, torch.float32), x)
    assert torch.equal(pixels(u8, torch.float64), x.double())  # what 64-true makes of x


def stack_against_train_py(tmp_path: Path, configs: list[Config]) -> dict:
    """float64, manual backprop: every weight of every network within 1e-10 of its train.py
    run, and the same test count."""
    record = sweep_stack(tmp_path, "manual", "64", configs=configs)
    for k, ((seed, _), c) in enumerate(zip(NETS, configs)):
        single = train_py(
            tmp_path, seed, c.lr, "manual", "64", activation=c.activation, init=c.init
        )
        for l, (w, b) in enumerate(record["best"]):
            assert float((w[k] - single["state"][f"layers.{l}.weight"]).abs().max()) <= 1e-10
            assert float((b[k] - single["state"][f"layers.{l}.bias"]).abs().max()) <= 1e-10
        assert int(record["history"]["test_correct"][0, k]) == single["test_correct"]
    return record


def test_a_relu_network_of_a_stack_equals_its_train_py_run(tmp_path: Path) -> None:
    """ReLU hidden layers from the scaled start. (From N(0, 1) a ReLU network of this size is
    so chaotic that a rounding difference of 1e-15 grows to 1e-2 within 200 steps: equal
    arithmetic, but no longer the same trajectory after an epoch; see the README.)"""
    configs = [Config(SIZES, lr, 10, activation="relu", init="scaled") for lr in (0.1, 0.3, 0.05)]
    record = stack_against_train_py(tmp_path, configs)
    assert record["hparams"]["activation"] == "relu"
    dead = record["history"]["dead_fraction"][-1]
    assert dead.shape == (3,) and bool(((dead >= 0) & (dead <= 1)).all())


def test_networks_of_a_stack_may_start_from_different_inits(tmp_path: Path) -> None:
    """Network 1 from the scaled start, the others from N(0, 1), in one stack, as a sweep
    with --init gaussian scaled has it."""
    inits = ["gaussian", "scaled", "gaussian"]
    configs = [Config(SIZES, lr, 10, init=init) for (_, lr), init in zip(NETS, inits)]
    record = stack_against_train_py(tmp_path, configs)
    assert record["hparams"]["init"] == inits

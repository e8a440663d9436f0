"""The core loop on tensors that claim another device than the CPU, without one.

Under ``FakeTensorMode`` a tensor made on ``cuda:0`` says it is there and holds no numbers: an
op that mixes it with a CPU tensor raises, as CUDA would, and so does anything that needs its
values. PyTorch's autograd engine asks the CUDA driver about a CUDA tensor's device even when
the tensor is fake, so the autograd backprop runs on ``meta`` instead: another device without
numbers, where a mix with the CPU raises too.

The host syncs the code means to make are recorded (``HostSyncs``): every read of a device
tensor's value by the host (``bool``, ``int``, ``float``, ``.item()``, ``.tolist()``, use
as an index) and every copy to the host, each named by the package function that made it.
Inside the training loop there are exactly these, per chunk of K SGD steps:

    chunked.check_finite: bool            the chunk's finite check, every chunk
    chunked.write_step_scalars: tolist    the step-level curves, at a chunk that has some

and none in ``sgd_step`` (one network or a stack, either backprop), the chunks' gather, the
stack's pixels or the epoch's order (drawn on the CPU, copied to the device without a sync).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import StopAfter, epoch_order, write_mnist
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily
from torch.utils._python_dispatch import TorchDispatchMode

import mlp_digits
from mlp_digits import cli, sgd
from mlp_digits.data import look_up, pixel_values, pixels
from mlp_digits.lightning.chunked import LOG_EVERY_N_STEPS, ChunkedSGD
from mlp_digits.lightning.datamodule import ChunkedBatches
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.lightning.training import build_run
from mlp_digits.network import initial_parameters, stacked_initial_parameters
from mlp_digits.sgd import EpochPermutation, epoch_seed
from mlp_digits.sweep.stack import StackBatches, StackedMLP, StackPermutations

PACKAGE = str(Path(mlp_digits.__file__).parent)
SIZES = (784, 16, 16, 10)
aten = torch.ops.aten
# (backprop, device): the autograd engine cannot run on fake CUDA tensors without a driver.
BACKPROPS_ON = [("manual", "cuda:0"), ("manual", "meta"), ("autograd", "meta")]
READS = {"__bool__": "bool", "__int__": "int", "__float__": "float", "__index__": "index"}
READS |= {"item": "item", "tolist": "tolist"}
CHECK_FINITE = "chunked.check_finite: bool"
WRITE_CURVES = "chunked.write_step_scalars: tolist"


def caller() -> str:
    """The package function (``module.function``) on the stack nearest to the caller."""
    frame = sys._getframe(2)
    while frame is not None and not frame.f_code.co_filename.startswith(PACKAGE):
        frame = frame.f_back
    if frame is None:
        return "the test"
    return f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_name}"


def placeholder(t: torch.Tensor, read: str) -> Any:
    """A value for a read of a tensor that holds none: a finite check passes, a list has the
    tensor's shape."""
    if read == "tolist":
        return np.zeros(t.shape).tolist()
    if read == "bool" or t.dtype == torch.bool:
        return True
    return 0.0 if t.dtype.is_floating_point or read == "float" else 0


class HostSyncs(TorchDispatchMode):
    """Records each point where the host would wait for the device, as ``"module.function:
    read"``:
    a read of a device tensor's value (through the Python methods, which hand back a
    placeholder), and a copy of one to the host (seen as the op it dispatches)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__()
        self.syncs: list[str] = []
        self.ops: list[tuple[Any, tuple]] = []
        for cls in (torch.Tensor, FakeTensor):  # FakeTensor has a tolist of its own
            for name, read in READS.items():
                if cls is torch.Tensor or name in vars(cls):
                    monkeypatch.setattr(cls, name, self.reader(getattr(cls, name), read))

    def reader(self, original: Any, read: str) -> Any:
        def read_value(t: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if t.device.type == "cpu":
                return original(t, *args, **kwargs)
            self.syncs.append(f"{caller()}: {read}")
            return placeholder(t, read)

        return read_value

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops.append((func, args))
        source = copied_to_host(func, args, kwargs)
        if source is not None:
            self.syncs.append(f"{caller()}: copy to the host")
            if source.is_meta:  # no numbers to copy
                return torch.empty(source.shape, dtype=kwargs.get("dtype") or source.dtype)
        return func(*args, **kwargs)


def copied_to_host(func: Any, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The device tensor that this op copies to the host, if it is such a copy."""
    if func is aten._to_copy.default:
        source, target = args[0], kwargs.get("device")
    elif func is aten.copy_.default:
        source, target = args[1], args[0].device
    else:
        return None
    to_cpu = target is not None and torch.device(target).type == "cpu"
    return source if to_cpu and source.device.type != "cpu" else None


@contextlib.contextmanager
def claiming(device: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostSyncs]:
    """Tensors made on ``device`` claim it; CPU tensors made outside may enter. Host syncs."""
    fake = FakeTensorMode(allow_non_fake_inputs=True) if device.startswith("cuda") else None
    syncs = HostSyncs(monkeypatch)
    with fake or contextlib.nullcontext(), syncs:
        yield syncs


def moved(model: ChunkedSGD, device: str) -> ChunkedSGD:
    """``model`` on ``device``. A move to a fake or meta device makes new Parameters (a real
    CUDA move keeps them), so DigitsMLP's lists of the layers' tensors are made again."""
    overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        model = model.to(device)
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(overwrite)
    if isinstance(model, DigitsMLP):
        model.weights = [layer.weight for layer in model.layers]
        model.biases = [layer.bias for layer in model.layers]
    return model


def on(device: str, *tensors: torch.Tensor) -> bool:
    return all(t.device == torch.device(device) for t in tensors)


def mini_batch(device: str, m: int = 10, nets: int | None = None) -> tuple[torch.Tensor, ...]:
    shape = (m,) if nets is None else (nets, m)
    x = torch.rand(*shape, 784, device=device)
    y = F.one_hot(torch.zeros(shape, dtype=torch.long, device=device), 10).to(x.dtype)
    return x, y


# --- sgd_step, the chunks' gather, the stack's pixels ------------------------------------


@pytest.mark.parametrize("device", ["cuda:0", "meta"])
def test_a_mix_of_devices_raises_and_a_read_is_recorded(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_the_cpu = torch.ones(3)  # made outside, as a model's weights before they move
    with claiming(device, monkeypatch) as record:
        x = torch.ones(3, device=device)
        with pytest.raises(RuntimeError, match="device"):
            x + on_the_cpu
        assert bool(x.sum() > 0) and x.tolist() == [0.0] * 3
        x.cpu()
    assert record.syncs == ["the test: bool", "the test: tolist", "the test: copy to the host"]


@pytest.mark.parametrize("keep_gradients", [True, False])
@pytest.mark.parametrize("nets", [None, 3])
@pytest.mark.parametrize(("backprop", "device"), BACKPROPS_ON)
def test_sgd_step_stays_on_its_device_without_a_host_sync(
    backprop: str, device: str, nets: int | None, keep_gradients: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """One network (η a number) or a stack of 3 (one η each, a tensor on the device)."""
    if nets is None:
        weights, biases = initial_parameters(SIZES, "gaussian", 0)
        eta = 3.0
    else:
        weights, biases = stacked_initial_parameters(SIZES, "gaussian", [0, 1, 2])
        eta = torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64)
    with claiming(device, monkeypatch) as record:
        weights, biases = [w.to(device) for w in weights], [b.to(device) for b in biases]
        eta = eta if nets is None else eta.to(device)
        x, y = mini_batch(device, nets=nets)
        step = sgd.sgd_step(weights, biases, x, y, eta, backprop, keep_gradients=keep_gradients)
    assert on(device, step.output, *weights, *biases, *step.nabla_w, *step.nabla_b)
    assert step.output.shape == ((10, 10) if nets is None else (3, 10, 10))
    assert record.syncs == []


@pytest.mark.parametrize("device", ["cuda:0", "meta"])
def test_the_chunks_are_gathered_on_the_device_without_a_host_sync(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """95 images in mini-batches of 10, 4 a chunk: chunks of 4, 4 and 1 mini-batches, then
    the short one of 5; a stack of 3 the same, one row per network."""
    with claiming(device, monkeypatch) as record:
        x = torch.zeros(95, 784, dtype=torch.uint8, device=device)
        targets = torch.zeros(95, dtype=torch.long, device=device)
        one = ChunkedBatches(x, targets, EpochPermutation(95, 0, device), 10, 4)
        stack = StackBatches(x, targets, StackPermutations(95, [0, 1, 2], device), 10, 4)
        chunks, stacked = list(one), list(stack)
    assert [tuple(xs.shape) for xs, _ in chunks] == [(4, 10, 784)] * 2 + [(1, 10, 784), (1, 5, 784)]
    assert [tuple(t.shape) for _, t in stacked] == [(4, 3, 10)] * 2 + [(1, 3, 10), (1, 3, 5)]
    assert on(device, *(t for chunk in chunks + stacked for t in chunk))
    assert record.syncs == []


def test_the_stacks_pixels_are_looked_up_on_the_device_not_divided(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CUDA divides by 255 as a multiplication by 1/255, one ulp off for some bytes."""
    with claiming("cuda:0", monkeypatch) as record:
        x = torch.zeros(3, 10, 784, dtype=torch.uint8, device="cuda:0")
        floats = pixels(x, torch.float64, pixel_values("cuda:0"))
    assert on("cuda:0", floats) and floats.dtype == torch.float64 and floats.shape == x.shape
    device_ops = [
        func for func, args in record.ops if any(getattr(a, "is_cuda", False) for a in args)
    ]
    assert aten.index_select.default in device_ops
    assert not [func for func in device_ops if "div" in str(func)]
    assert record.syncs == []


# --- a chunk of SGD steps: its host syncs --------------------------------------------------


def logger_of(steps: list[int]) -> SimpleNamespace:
    """A logger that keeps the step of every point of the step-level curves."""
    return SimpleNamespace(log_metrics=lambda metrics, step: steps.append(step))


def chunk_on(device: str, nets: int | None, steps: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (steps, 10) if nets is None else (steps, nets, 10)
    x = torch.zeros(*shape, 784, dtype=torch.float32 if nets is None else torch.uint8)
    return x.to(device), torch.zeros(shape, dtype=torch.long, device=device)


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize(("backprop", "device"), BACKPROPS_ON)
def test_a_chunk_of_sgd_steps_syncs_once_and_once_more_to_write_its_curve(
    backprop: str, device: str, stacked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two chunks of 5 steps; the curve's point falls in the second (LOG_EVERY_N_STEPS)."""
    if stacked:
        model = StackedMLP(SIZES, [3.0, 1.0], [0, 1], backprop=backprop)
    else:
        model = DigitsMLP(SIZES, backprop=backprop)
    steps: list[int] = []
    monkeypatch.setattr(ChunkedSGD, "logger", property(lambda self: logger_of(steps)))
    model.sgd_steps = LOG_EVERY_N_STEPS - 7
    model.next_log_step = LOG_EVERY_N_STEPS
    with claiming(device, monkeypatch) as record:
        model = moved(model, device)
        model.training_step(chunk_on(device, 2 if stacked else None), 0)
        first = list(record.syncs)
        model.training_step(chunk_on(device, 2 if stacked else None), 1)
    assert first == [CHECK_FINITE]
    assert record.syncs == [CHECK_FINITE, CHECK_FINITE, WRITE_CURVES]
    assert steps == [LOG_EVERY_N_STEPS + 3]
    assert on(device, *model.parameters(), *model.epoch_costs)


def test_the_live_gradient_check_adds_no_host_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """--check-gradients-every 2: its relative errors wait on the device for the curve."""
    model = DigitsMLP(SIZES, backprop="manual", check_gradients_every=2)
    monkeypatch.setattr(ChunkedSGD, "logger", property(lambda self: logger_of([])))
    model.next_log_step = 10**6
    with claiming("meta", monkeypatch) as record:
        model = moved(model, "meta")
        model.training_step(chunk_on("meta", None), 0)
    assert record.syncs == [CHECK_FINITE, WRITE_CURVES]


# --- the epoch's order: the CPU's, on every device ----------------------------------------


class CPUDraws:
    """``torch.randperm`` drawn for real (outside the fake mode) and recorded: the generator's
    device and seed, and the order; the code goes on with the order as a fake tensor."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.draws: list[tuple[torch.device, int, torch.Tensor]] = []
        self.fakes: list[torch.Tensor] = []
        self.randperm = torch.randperm
        monkeypatch.setattr(torch, "randperm", self.draw)

    def draw(self, n: int, *, generator: torch.Generator, device: Any = None, **kw: Any):
        with unset_fake_temporarily():
            order = self.randperm(n, generator=generator, device=device, **kw)
        self.draws.append((generator.device, generator.initial_seed(), order))
        mode = torch._guards.detect_fake_mode()
        self.fakes.append(mode.from_tensor(order) if mode is not None else order)
        return self.fakes[-1]

    def copied_to(self, device: str, ops: list[tuple[Any, tuple]]) -> list[torch.Tensor]:
        """The draws whose tensor was copied to ``device``."""
        return [
            order
            for (_, _, order), fake in zip(self.draws, self.fakes)
            if any(func is aten._to_copy.default and args[0] is fake for func, args in ops)
        ]


def test_an_epochs_order_on_a_device_is_the_cpus_order_copied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A generator on the CPU, seeded from (seed, epoch), whatever the device: rank 1 of 2
    of epoch 3 takes every other index of the order of train.py on the CPU."""
    cpu = CPUDraws(monkeypatch)
    with claiming("cuda:0", monkeypatch) as record:
        sampler = EpochPermutation(1001, 7, "cuda:0", rank=1, world_size=2)
        sampler.set_epoch(3)
        shard = sampler.indices()
    assert on("cuda:0", shard) and shard.shape == (500,)
    ((device, seed, order),) = cpu.draws
    assert device == torch.device("cpu") and seed == epoch_seed(7, 3)
    assert torch.equal(order, epoch_order(1001, 7, 3))
    assert [torch.equal(o, order) for o in cpu.copied_to("cuda:0", record.ops)] == [True]
    assert record.syncs == []


def test_a_stacks_orders_are_the_cpus_copied_to_the_device_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = CPUDraws(monkeypatch)
    with claiming("cuda:0", monkeypatch) as record:
        orders = StackPermutations(60, [0, 5, 9], torch.device("cuda:0")).permutations()
    assert on("cuda:0", orders) and orders.shape == (3, 60) and orders.dtype == torch.int32
    assert [(str(d), s) for d, s, _ in cpu.draws] == [("cpu", epoch_seed(k, 0)) for k in (0, 5, 9)]
    for (_, _, order), k in zip(cpu.draws, (0, 5, 9)):
        assert torch.equal(order, epoch_order(60, k, 0))
    copies = [args[0] for func, args in record.ops if func is aten._to_copy.default]
    assert [(tuple(c.shape), c.device.type) for c in copies] == [((3, 60), "cpu")]
    assert record.syncs == []


def test_a_cpu_checkpoint_resumed_on_another_device_keeps_its_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A train.py run on the CPU stopped mid-epoch; its data's state resumed where the
    data is on cuda:0: the same epoch's order (the CPU's), and the mini-batches left of it."""
    data = write_mnist(tmp_path / "data", n_train=300, n_test=50)
    run = build_run(cli.parse_train_args(
        ["--data-dir", str(data), "--val-size", "100", "--no-download", "--accelerator", "cpu",
         "--logdir", str(tmp_path), "--batch-size", "7", "--steps-per-chunk", "5"]
    ), extra_callbacks=[StopAfter(33)])  # fmt: skip
    with pytest.raises(Exception, match="SIGINT"):
        run.trainer.fit(run.model, datamodule=run.datamodule)
    saved = torch.load(tmp_path / "version_0/checkpoints/last.ckpt", weights_only=True)
    (state,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    steps_per_epoch = -(-200 // 7)  # 200 training images: 28 mini-batches of 7, one of 4
    assert state == {"epoch": 1, "steps_done": saved["sgd_steps"] - steps_per_epoch}

    cpu = CPUDraws(monkeypatch)
    with claiming("cuda:0", monkeypatch) as record:
        x = torch.zeros(200, 784, device="cuda:0")
        targets = torch.zeros(200, dtype=torch.long, device="cuda:0")
        sampler = EpochPermutation(200, 0, "cuda:0")
        sampler.set_epoch(state["epoch"])
        batches = ChunkedBatches(x, targets, sampler, 7, 5)
        batches.load_state_dict(state)
        chunks = [xs for xs, _ in batches]
    ((device, _, order),) = cpu.draws
    assert device == torch.device("cpu") and torch.equal(order, epoch_order(200, 0, 1))
    assert [torch.equal(o, order) for o in cpu.copied_to("cuda:0", record.ops)] == [True]
    left = 28 - state["steps_done"]
    assert sum(len(xs) for xs in chunks[:-1]) == left and chunks[-1].shape == (1, 4, 784)
    assert on("cuda:0", *chunks) and record.syncs == []


# --- the pixels: data.py's, bit for bit, on every device ------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_look_up_and_the_division_give_data_pys_pixels_for_every_byte(
    dtype: torch.dtype,
) -> None:
    """Every byte in a (2, 256, 3) block: the look-up (the device's way) and the CPU's
    division against NumPy's float32 division and float64's quotient rounded once to float32
    (exact, as 53 bits > 2 x 24 + 2), then the model's dtype."""
    x = torch.arange(256, dtype=torch.uint8).view(1, 256, 1).expand(2, 256, 3).contiguous()
    reference = x.numpy().astype(np.float32) / np.float32(255)
    assert np.array_equal(reference, (x.numpy() / 255.0).astype(np.float32))
    reference = torch.from_numpy(reference).to(dtype)
    assert torch.equal(pixels(x, dtype), reference)
    assert torch.equal(look_up(pixel_values(), x).to(dtype), reference)
    assert torch.equal(look_up(pixel_values().double(), x).to(dtype), reference)

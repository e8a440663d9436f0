"""The device check: what a GPU could change, run on one (docs/gpu.md has the command).

Skipped without CUDA; with ``GPU_CHECK=1`` a machine without a GPU fails every test instead,
so that the check cannot pass by skipping. Each test names its reference:

- 50 float64 SGD steps on the GPU equal the CPU's within 1e-12, over the same mini-batches;
- ``train.py --accelerator gpu``, one epoch on the shared 5,000 images, both backprops,
  precision 32 and 64; then ``evaluate.py``, ``predict.py`` and ``draw.py`` read its
  checkpoint on the CPU (``CUDA_VISIBLE_DEVICES=""``) and count what train.py counted;
- two GPU runs give the same weights; a stopped and resumed GPU run those of a straight one;
  a CPU checkpoint resumed on the GPU goes on with its data order (the CPU run's weights, to
  the rounding of other kernels);
- the sweep: the pixels bit for bit the CPU's, and every network of a stack its train.py run;
- ``compare_gradients.py --accelerator gpu`` passes in float32 and float64;
- no host sync inside a chunk but its finite check (``torch.cuda.set_sync_debug_mode``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, SHARED_MNIST, StopAfter, write_mnist
from PIL import Image

from mlp_digits import cli, sgd
from mlp_digits.data import load_mnist, load_mnist_uint8, pixel_values, pixels, split_indices
from mlp_digits.lightning.chunked import ChunkedSGD
from mlp_digits.lightning.datamodule import ChunkedBatches
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.lightning.training import build_run
from mlp_digits.network import initial_parameters
from mlp_digits.page.predict import image_to_mnist, load_model
from mlp_digits.sgd import EpochPermutation
from mlp_digits.sweep.stack import StackBatches, StackData, StackedMLP, StackPermutations

GPU_CHECK = os.environ.get("GPU_CHECK") == "1"
SIZES = (784, 16, 16, 10)
ON_THE_CPU = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
TIMEOUT = 300  # a safety net for a hang, not what a test asserts


@pytest.fixture(scope="module", autouse=True)
def cuda() -> None:
    if torch.cuda.is_available():
        return
    if GPU_CHECK:
        pytest.fail(
            "GPU_CHECK=1, but torch sees no CUDA GPU (torch.cuda.is_available() is False): "
            "run the device check on a machine with one, or unset GPU_CHECK",
            pytrace=False,
        )
    pytest.skip("no CUDA GPU here (GPU_CHECK=1 makes this a failure)")


@pytest.fixture(scope="module")
def mnist_5k() -> Path:
    if not SHARED_MNIST.exists():
        pytest.fail(f"{SHARED_MNIST} not present: the device check trains on it", pytrace=False)
    return SHARED_MNIST


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 training images (100 validate): 29 mini-batches of 7 an epoch."""
    return write_mnist(tmp_path_factory.mktemp("small"), n_train=300, n_test=50)


def script(name: str, *flags: str, env: dict | None = None) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / f"{name}.py"), *flags],
        capture_output=True, text=True, timeout=TIMEOUT, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def count_of_test(output: str) -> int:
    match = re.search(r"^Test: (\d+) / \d+ correct", output, re.MULTILINE)
    assert match, output
    return int(match.group(1))


def fit(data: Path, logdir: Path, *flags: str, callbacks: tuple = ()) -> DigitsMLP:
    args = cli.parse_train_args(
        ["--data-dir", str(data), "--val-size", "100", "--no-download", "--logdir", str(logdir),
         "--max-epochs", "2", "--batch-size", "7", "--steps-per-chunk", "5",
         "--images-every", "0", *flags]
    )  # fmt: skip
    run = build_run(args, extra_callbacks=callbacks)
    run.trainer.fit(run.model, datamodule=run.datamodule, ckpt_path=run.ckpt_path)
    return run.model


def weights(model: L.LightningModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


# --- the same arithmetic, the same order -----------------------------------------------------


@pytest.mark.parametrize("backprop", ["autograd", "manual"])
def test_fifty_float64_steps_on_the_gpu_equal_the_cpus(small: Path, backprop: str) -> None:
    x, targets = load_mnist(small, "train")

    def fifty_steps(device: str) -> list[torch.Tensor]:
        start = initial_parameters(SIZES, "gaussian", 0)
        ws, bs = ([t.to(device, torch.float64) for t in ts] for ts in start)
        xd, y = x.to(device, torch.float64), F.one_hot(targets, 10).to(device, torch.float64)
        order = EpochPermutation(len(x), 0, device).indices()
        for batch in order[:500].split(10):
            sgd.sgd_step(ws, bs, xd[batch], y[batch], 3.0, backprop)
        return [t.cpu() for t in ws + bs]

    cpu, gpu = fifty_steps("cpu"), fifty_steps("cuda")
    assert max(float((c - g).abs().max()) for c, g in zip(cpu, gpu)) <= 1e-12


def test_every_byte_becomes_the_cpus_pixel_on_the_gpu() -> None:
    x = torch.arange(256, dtype=torch.uint8).repeat(3, 1)
    for dtype in (torch.float32, torch.float64):
        on_gpu = pixels(x.cuda(), dtype, pixel_values("cuda")).cpu()
        assert torch.equal(on_gpu, pixels(x, dtype)), dtype
        assert torch.equal(pixels(x.cuda(), dtype).cpu(), pixels(x, dtype)), dtype


# --- train.py on the GPU, its checkpoint read on the CPU --------------------------------------


@pytest.mark.parametrize("precision", ["32", "64"])
@pytest.mark.parametrize("backprop", ["autograd", "manual"])
def test_a_gpu_run_is_read_on_the_cpu_with_the_same_count(
    mnist_5k: Path, tmp_path: Path, backprop: str, precision: str
) -> None:
    """One epoch; evaluate.py counts the test images train.py counted (in float32 a near tie
    of two outputs may round the other way on the CPU: one image either way)."""
    logs = ["--logdir", str(tmp_path / "logs")]
    trained = script(
        "train", "--accelerator", "gpu", "--data-dir", str(mnist_5k), "--no-download",
        "--val-size", "1000", "--max-epochs", "1", "--backprop", backprop,
        "--precision", precision, "--images-every", "0", *logs,
    )  # fmt: skip
    evaluated = script("evaluate", "--checkpoint", "best", *logs, env=ON_THE_CPU)
    assert abs(count_of_test(evaluated) - count_of_test(trained)) <= (0 if precision == "64" else 1)
    (checkpoint,) = (tmp_path / "logs").glob("version_0/checkpoints/last.ckpt")
    model = load_model(checkpoint)  # this process's CPU reading, the reference below

    images, labels = load_mnist_uint8(mnist_5k, "test")
    files = []
    for i in range(20):
        files.append(str(tmp_path / f"digit{i}.png"))
        Image.fromarray(images[i].view(28, 28).numpy()).save(files[-1])
    predicted = json.loads(script("predict", "--checkpoint", str(checkpoint), "--json", *files,
                                  env=ON_THE_CPU))  # fmt: skip
    with torch.no_grad():
        expected = model(torch.stack([image_to_mnist(Image.open(f)) for f in files])).argmax(1)
    assert [r["prediction"] for r in predicted] == expected.tolist()
    assert sum(r["prediction"] == int(t) for r, t in zip(predicted, labels)) == int(
        (expected == labels[:20]).sum()
    )

    page = tmp_path / "page.html"
    script("draw", "--checkpoint", str(checkpoint), "--output", str(page), "--no-open",
           env=ON_THE_CPU)  # fmt: skip
    data = re.search(r'<script type="application/json" id="network">(.*?)</script>',
                     page.read_text(), re.DOTALL)  # fmt: skip
    examples = json.loads(data.group(1).replace("<\\/", "</"))["examples"]
    x_test, _ = load_mnist(mnist_5k, "test")
    with torch.no_grad():
        read = model(x_test.to(model.dtype)).argmax(1)
    assert examples and all(e["predicted"] == int(read[e["index"]]) for e in examples)


# --- runs on the GPU: repeatable, resumable, and a CPU run goes on there ----------------------


def test_two_gpu_runs_give_the_same_weights(small: Path, tmp_path: Path) -> None:
    a = fit(small, tmp_path / "a", "--accelerator", "gpu")
    b = fit(small, tmp_path / "b", "--accelerator", "gpu")
    assert largest_difference(weights(a), weights(b)) == 0


@pytest.mark.parametrize("accelerator", ["gpu", "cpu"])
def test_a_run_stopped_and_resumed_on_the_gpu_equals_a_straight_one(
    small: Path, tmp_path: Path, accelerator: str
) -> None:
    """Stopped on the GPU, or on the CPU: resumed on the GPU, the epoch's order goes on, so
    the weights are the straight run's: bit for bit from the GPU, to float32's rounding of
    other kernels from the CPU (another order moves them by about 0.5 here)."""
    straight = fit(small, tmp_path / "straight", "--accelerator", accelerator)
    stopped = tmp_path / "stopped"
    with pytest.raises(Exception, match="SIGINT"):
        fit(small, stopped, "--accelerator", accelerator, callbacks=(StopAfter(33),))
    resumed = fit(small, stopped, "--accelerator", "gpu", "--resume", "last")
    assert resumed.sgd_steps == straight.sgd_steps == 58
    tolerance = 0 if accelerator == "gpu" else 1e-4
    assert largest_difference(weights(straight), weights(resumed)) <= tolerance


# --- the sweep on the GPU -------------------------------------------------------------------


def test_every_network_of_a_gpu_stack_equals_its_gpu_train_py_run(
    mnist_5k: Path, tmp_path: Path
) -> None:
    """float64, manual backprop, one epoch: within 1e-10 of each network's train.py run."""
    nets = [(0, 3.0), (1, 0.5), (2, 1.0)]
    x, targets = load_mnist_uint8(mnist_5k, "train")
    train, val = split_indices(len(x), 500)
    test = load_mnist_uint8(mnist_5k, "test")
    splits = {"train": (x[train], targets[train]), "val": (x[val], targets[val]), "test": test}
    seeds, lrs = [s for s, _ in nets], [lr for _, lr in nets]
    stack = StackedMLP(SIZES, lrs, seeds, backprop="manual")
    trainer = L.Trainer(
        accelerator="gpu", devices=1, precision="64-true", max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(stack, datamodule=StackData(splits, seeds, 10))
    for k, (seed, lr) in enumerate(nets):
        args = cli.parse_train_args(
            ["--data-dir", str(mnist_5k), "--no-download", "--val-size", "500", "--max-epochs",
             "1", "--accelerator", "gpu", "--precision", "64", "--backprop", "manual",
             "--seed", str(seed), "--lr", str(lr), "--images-every", "0",
             "--logdir", str(tmp_path / f"single{seed}")]
        )  # fmt: skip
        run = build_run(args)
        run.trainer.fit(run.model, datamodule=run.datamodule)
        single = weights(run.model)
        for l in range(len(SIZES) - 1):
            best_w, best_b = (t[k].cpu() for t in stack.best_parameters(l))
            assert float((best_w - single[f"layers.{l}.weight"]).abs().max()) <= 1e-10
            assert float((best_b - single[f"layers.{l}.bias"]).abs().max()) <= 1e-10


# --- the gradients check, and no host sync inside a chunk -------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compare_gradients_passes_on_the_gpu(dtype: str) -> None:
    output = script("compare_gradients", "--accelerator", "gpu", "--dtype", dtype)
    assert "PASS" in output


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("backprop", ["autograd", "manual"])
def test_a_chunk_makes_no_host_sync_but_its_finite_check(
    backprop: str, stacked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The epoch's order, the chunk's gather and its K steps under sync debug mode "error":
    a host sync raises. The finite check, the one sync the chunk means to make, is counted."""
    checks = []
    monkeypatch.setattr(ChunkedSGD, "check_finite", lambda self, costs, first: checks.append(1))
    n, device = 200, torch.device("cuda")
    if stacked:
        model = StackedMLP(SIZES, [3.0, 1.0], [0, 1], backprop=backprop).to(device)
        x = torch.randint(256, (n, 784), dtype=torch.uint8, device=device)
    else:
        model = DigitsMLP(SIZES, backprop=backprop).to(device)
        x = torch.rand(n, 784, device=device)
    model.next_log_step = 10**6
    targets = torch.randint(10, (n,), device=device)
    if stacked:
        batches = StackBatches(x, targets, StackPermutations(n, [0, 1], device), 10, 5)
    else:
        batches = ChunkedBatches(x, targets, EpochPermutation(n, 0, device), 10, 5)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i, chunk in enumerate(batches):
            model.training_step(chunk, i)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert len(checks) == len(batches) == 4

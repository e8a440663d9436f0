"""scripts/sweep.py: the grid, bad input, what a sweep writes, divergence, resuming."""

from __future__ import annotations

import contextlib
import csv
import io
import signal
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from conftest import REPO, write_mnist
from PIL import Image

from mlp_digits import cli
from mlp_digits.config import Settings
from mlp_digits.data import load_mnist
from mlp_digits.lightning.checkpoint import load_checkpoint
from mlp_digits.sgd import EpochPermutation
from mlp_digits.sweep import grid as sweep_grid
from mlp_digits.sweep import memory
from mlp_digits.sweep import report as sweep_report
from mlp_digits.sweep import run as sweep
from mlp_digits.sweep.records import load_stack_records
from mlp_digits.sweep.report import SETTINGS_COLUMNS
from mlp_digits.sweep.stack import StackBatches, StackedMLP, StackPermutations, stack_bytes


def parse(*flags: str):
    parser = cli.sweep_parser()
    return parser, parser.parse_args(list(flags))


# --- the grid -----------------------------------------------------------------------------


def test_seeds_take_ranges_and_single_values() -> None:
    assert sweep_grid.parse_seeds(["0-3", "7"]) == [0, 1, 2, 3, 7]


def test_grid_is_the_product_of_the_values_in_order() -> None:
    _, args = parse("--seeds", "0-1", "--lr", "1", "3", "--sizes", "784,30,10", "784,10")
    grid = sweep_grid.build_grid(args)
    assert len(grid) == 2 * 2 * 2
    assert [n.index for n in grid] == list(range(8))
    assert [(n.config.sizes, n.config.lr, n.seed) for n in grid[:3]] == [
        ((784, 30, 10), 1.0, 0),
        ((784, 30, 10), 1.0, 1),
        ((784, 30, 10), 3.0, 0),
    ]
    stacks = sweep_grid.group_stacks(grid)  # same sizes and batch size: one stack, whatever η
    assert [len(s) for s in stacks] == [4, 4]
    assert {n.config.sizes for n in stacks[1]} == {(784, 10)}


def test_chapter1_preset_is_the_books_table_with_five_seeds() -> None:
    _, args = parse("--preset", "chapter1")
    grid = sweep_grid.build_grid(args)
    assert len(grid) == 6 * 5
    configs = {(n.config.sizes, n.config.lr) for n in grid}
    assert ((784, 100, 10), 0.001) in configs and ((784, 10), 3.0) in configs
    assert len(sweep_grid.group_stacks(grid)) == 4  # 784-30-10, 784-100-10, 784-10, 784-16-16-10


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--seeds", "5-3"], "empty range"),
        (["--lr", "3", "3"], "listed twice"),
        (["--seeds", "0-2", "1"], "listed twice"),
        (["--sizes", "784,10", "784,10"], "listed twice"),
        (["--preset", "chapter9"], "invalid choice: 'chapter9'"),
        (["--preset", "chapter1", "--lr", "3"], "the preset wins: leave out"),
        (["--lr", "0"], "above 0"),
        (["--lr", "-1"], "above 0"),
        (["--lr", "nan"], "finite"),
        (["--lr", "inf"], "finite"),
        (["--batch-size", "501"], "larger than the training set (500 images)"),
        (["--sizes", "785,10"], "start with 784"),
        (["--sizes", "784,16"], "end with 10"),
        (["--sizes", "784"], "at least two"),
        (["--sizes", "784,a,10"], "give whole numbers"),
        (["--seeds", "x"], "whole numbers"),
    ],
)
def test_bad_grid_is_exit_2_with_one_line(
    tiny_mnist: Path, flags: list[str], says: str, capsys
) -> None:
    with pytest.raises(SystemExit) as exit:  # while parsing, or in the checks after it
        parser, args = parse(*flags, "--data-dir", str(tiny_mnist), "--val-size", "100")
        sweep.check_args(parser, args)
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("usage:")  # the usage line, then the one error
    assert says in err[1]


def test_a_sweep_that_does_not_fit_in_memory_is_refused_in_one_line_before_any_folder(
    tiny_mnist: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    asked = []

    def available(device: torch.device) -> int:
        asked.append(device)
        return 100 * 2**20

    monkeypatch.setattr(memory, "available_bytes", available)
    parser, args = parse(
        "--seeds", "0-999", "--sizes", "784,100,10", "--accelerator", "cpu", "--data-dir",
        str(tiny_mnist), "--no-download", "--val-size", "100", "--logdir", str(tmp_path / "logs"),
    )  # fmt: skip
    sweep.check_args(parser, args)
    assert asked == []  # no device is asked before the processes start
    with pytest.raises(SystemExit) as exit:
        sweep.run(args)
    assert exit.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: the sweep needs about") and "more than the 100 MB free" in line
    assert asked == [torch.device("cpu")]
    assert not (tmp_path / "logs").exists()


def test_the_memory_needed_counts_a_machines_processes_on_the_cpu_and_one_on_a_gpu() -> None:
    """On the CPU the processes of one machine share its memory; each GPU holds one process."""
    _, args = parse("--seeds", "0-99", "--sizes", "784,100,10", "--devices", "4", "--num-nodes",
                    "2", "--accelerator", "cpu")  # fmt: skip
    stacks = sweep_grid.group_stacks(sweep_grid.build_grid(args))
    one = stack_bytes((784, 100, 10), 13, 10, 4) + memory.DATA_BYTES  # 100 networks / 8: 13
    assert memory.sweep_bytes(stacks, "32", 8) == one
    assert memory.need_bytes(args, stacks, torch.device("cpu")) == 4 * one
    assert memory.need_bytes(args, stacks, torch.device("cuda", 3)) == one


# --- a whole sweep, in this process -------------------------------------------------------


POISONED_LR = 2.0
DRAWN: dict[str, plt.Figure] = {}  # the sweep's figures as drawn, to read their data back


def keep_figures(figures):
    """``report.figures``, keeping what it draws in DRAWN (they are closed, not lost)."""

    def kept(results):
        DRAWN.update(figures(results))
        return DRAWN

    return kept


@pytest.fixture(scope="module")
def diverging_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """Two seeds of η = 1 and of η = 2, 2 epochs, 2 stacks; in epoch 1 the η = 2 networks'
    first-layer weights become infinite, so their cost turns NaN.

    Sigmoid networks saturate rather than overflow (even η = 1e38 keeps the cost finite), so
    the overflow is made by hand here, inside the real training step.
    """
    root = tmp_path_factory.mktemp("sweep")
    data = write_mnist(root / "data")
    flags = ["--data-dir", str(data), "--no-download", "--val-size", "100", "--max-epochs", "2"]
    flags += ["--seeds", "0-1", "--lr", "1", str(POISONED_LR), "--sizes", "784,16,16,10"]
    flags += ["784,10", "--logdir", str(root / "logs"), "--accelerator", "cpu"]
    parser, args = parse(*flags)
    sweep.check_args(parser, args)
    sgd_step = StackedMLP.sgd_step

    def overflowing_sgd_step(self: StackedMLP, x: torch.Tensor, targets: torch.Tensor, *rest):
        if self.current_epoch == 1:
            with torch.no_grad():
                for k, lr in enumerate(self.hparams.lrs):
                    if lr == POISONED_LR:
                        self.weights[0][k].fill_(float("inf"))
        return sgd_step(self, x, targets, *rest)

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(StackedMLP, "sgd_step", overflowing_sgd_step)
        patch.setattr(sweep_report, "figures", keep_figures(sweep_report.figures))
        assert sweep.run(args) == 0
    return root / "logs" / "sweep" / "version_0", data, out.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_results_csv_has_one_row_per_network_and_its_columns(diverging_sweep) -> None:
    folder, _, _ = diverging_sweep
    rows = read_csv(folder / "results.csv")
    assert tuple(rows[0]) == sweep_report.CSV_COLUMNS
    assert [int(r["network"]) for r in rows] == list(range(8))
    assert {(r["sizes"], float(r["lr"]), int(r["seed"])) for r in rows} == {
        (s, lr, seed) for s in ("784-16-16-10", "784-10") for lr in (1.0, 2.0) for seed in (0, 1)
    }


def test_a_diverging_network_is_marked_and_the_others_go_on(diverging_sweep) -> None:
    folder, _, out = diverging_sweep
    rows = read_csv(folder / "results.csv")
    for r in rows:
        assert r["diverged"] == str(float(r["lr"]) == POISONED_LR), r
        if float(r["lr"]) == 1.0:
            assert r["diverged_at_step"] == ""
        else:
            assert int(r["diverged_at_step"]) == 50 + 1  # the first step of epoch 1
            assert int(r["best_epoch"]) == 0  # kept from before it diverged
    assert out.count("2 diverged; ") == 2  # the table's rows for η = 2, one per layer sizes
    assert out.count("diverged at SGD step 51: marked") == 4


def test_the_others_end_as_in_a_sweep_without_the_diverging_networks(
    diverging_sweep, tmp_path: Path
) -> None:
    folder, data, _ = diverging_sweep
    flags = ["--data-dir", str(data), "--no-download", "--val-size", "100", "--max-epochs", "2"]
    flags += ["--seeds", "0-1", "--lr", "1", "--sizes", "784,16,16,10", "784,10"]
    parser, args = parse(*flags, "--logdir", str(tmp_path), "--accelerator", "cpu")
    with contextlib.redirect_stdout(io.StringIO()):
        assert sweep.run(args) == 0
    alone = read_csv(tmp_path / "sweep" / "version_0" / "results.csv")
    beside = [r for r in read_csv(folder / "results.csv") if r["diverged"] == "False"]
    columns = [c for c in sweep_report.CSV_COLUMNS if c not in ("network", "name")]
    assert [[r[c] for c in columns] for r in beside] == [[r[c] for c in columns] for r in alone]


def test_the_exported_network_is_a_digitsmlp_checkpoint_with_the_csvs_accuracy(
    diverging_sweep,
) -> None:
    folder, data, out = diverging_sweep
    (path,) = (folder / "export").glob("*.ckpt")
    model = load_checkpoint(path)
    row = next(r for r in read_csv(folder / "results.csv") if r["name"] == path.stem)
    assert row["diverged"] == "False"
    rows = read_csv(folder / "results.csv")
    best_val = max(float(r["val_accuracy"]) for r in rows if r["diverged"] == "False")
    assert float(row["val_accuracy"]) == best_val  # the best by validation, by default
    x, targets = load_mnist(data, "test")
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == targets).double().mean() * 100
    assert f"{float(accuracy):.2f}" == row["test_accuracy"]  # the weights of its best epoch
    saved = torch.load(path, weights_only=True)  # train.py's best checkpoint of the same run
    assert saved["settings"]["val_size"] == 100 and saved["settings"]["max_epochs"] == 2
    assert saved["settings"]["lr"] == float(row["lr"]) and saved["settings"]["seed"] == 0
    assert saved["epoch"] == int(row["best_epoch"]) and saved["epochs_done"] == saved["epoch"] + 1
    assert saved["sgd_steps"] == (saved["epoch"] + 1) * 50  # 500 training images, batch 10


def test_the_csvs_settings_are_the_exported_runs_settings(diverging_sweep) -> None:
    """One Settings per network: its CSV row and its exported checkpoint hold the same."""
    folder, _, _ = diverging_sweep
    (path,) = (folder / "export").glob("*.ckpt")
    row = next(r for r in read_csv(folder / "results.csv") if r["name"] == path.stem)
    saved = Settings.from_dict(torch.load(path, weights_only=True)["settings"])
    assert {k: row[k] for k in SETTINGS_COLUMNS} == {
        k: "-".join(map(str, v)) if k == "sizes" else "" if v is None else str(v)
        for k, v in vars(saved).items()
    }  # (the csv module writes None as an empty field)


def test_export_k_writes_that_network(diverging_sweep, tmp_path: Path) -> None:
    folder, data, _ = diverging_sweep
    parser, args = parse("--resume", str(folder), "--export", "4", "--data-dir", str(data))
    assert sweep.run(args) == 0  # everything done: read back, reported, network 4 exported
    (path,) = (folder / "export").glob("net0004_*.ckpt")
    assert load_checkpoint(path).hparams.sizes == (784, 10)


def test_a_resumed_sweep_keeps_its_activation(tiny_mnist: Path, tmp_path: Path) -> None:
    """--resume reads the grid back from sweep.json, the hidden layers' activation too."""
    flags = ["--data-dir", str(tiny_mnist), "--no-download", "--val-size", "100"]
    flags += ["--max-epochs", "1", "--seeds", "0", "--sizes", "784,16,10", "--activation", "relu"]
    _, args = parse(*flags, "--logdir", str(tmp_path), "--accelerator", "cpu")
    with contextlib.redirect_stdout(io.StringIO()):
        assert sweep.run(args) == 0
        folder = tmp_path / "sweep" / "version_0"
        _, resumed = parse("--resume", str(folder), "--accelerator", "cpu")
        assert sweep.run(resumed) == 0  # everything done: read back and reported again
    assert [r["activation"] for r in read_csv(folder / "results.csv")] == ["relu"]


def test_figures_and_tensorboard_runs_are_written(diverging_sweep) -> None:
    folder, _, _ = diverging_sweep
    for name in ("accuracy_per_epoch", "spread", "accuracy_vs_lr"):
        with Image.open(folder / f"{name}.png") as png:  # the figure as drawn, at 100 dpi
            width, height = DRAWN[name].get_size_inches() * 100
            assert png.size == (round(width), round(height))
    runs = sorted(p.name for p in (folder / "tensorboard").iterdir())
    assert len(runs) == 8 + 1 and "summary" in runs


# --- stopping and resuming ----------------------------------------------------------------


def test_a_stopped_sweep_resumes_to_the_same_results(tmp_path: Path) -> None:
    data = write_mnist(tmp_path / "data", n_train=20_000, n_test=100)
    flags = ["--data-dir", str(data), "--no-download", "--val-size", "1000", "--max-epochs", "2"]
    flags += ["--seeds", "0-1", "--lr", "0.5", "--accelerator", "cpu"]
    script = [sys.executable, str(REPO / "scripts" / "sweep.py")]
    proc = subprocess.Popen(
        [*script, *flags, "--logdir", str(tmp_path / "a")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in proc.stdout:  # stop inside epoch 1
        if " epoch 0:" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "--resume last" in err.strip().splitlines()[-1]
    resumed = subprocess.run(
        [*script, "--resume", "last", "--logdir", str(tmp_path / "a"), "--data-dir", str(data)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = subprocess.run(
        [*script, *flags, "--logdir", str(tmp_path / "b")], capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert straight.returncode == 0, straight.stderr[-2000:]
    a, b = (tmp_path / x / "sweep" / "version_0" for x in "ab")
    assert read_csv(a / "results.csv") == read_csv(b / "results.csv")
    (ra,), (rb,) = (load_stack_records(x / "stacks" / "stack0") for x in (a, b))
    for (wa, ba), (wb, bb) in zip(ra["best"], rb["best"]):
        assert torch.equal(wa, wb) and torch.equal(ba, bb)  # bit-identical


@pytest.mark.parametrize("backprop", ["autograd", "manual"])
def test_a_stack_step_keeps_no_autograd_tape(backprop: str) -> None:
    """The outputs a step returns are kept until the chunk's costs: a tape on them would keep
    every step's activations (31 MB a step for 1,000 networks) alive."""
    model = StackedMLP((784, 16, 10), [3.0, 1.0], [0, 1], backprop=backprop)
    x = torch.randint(0, 256, (2, 10, 784), dtype=torch.uint8)
    y = model.one_hot(torch.randint(0, 10, (2, 10)))
    with torch.enable_grad():  # as in Lightning's training step
        outputs = model.sgd_step(x, y).output
    assert outputs.shape == (2, 10, 10)
    assert outputs.grad_fn is None and not outputs.requires_grad


# --- the figures' data ----------------------------------------------------------------------


def alive_rows(folder: Path) -> list[dict[str, str]]:
    return [r for r in read_csv(folder / "results.csv") if r["diverged"] == "False"]


def test_the_accuracy_per_epoch_lines_are_the_networks_test_accuracies(diverging_sweep) -> None:
    """One faint line per network that did not diverge, ending at its final test accuracy
    and peaking at its best, as results.csv says (plotting validation accuracy, or another
    network's, would not)."""
    folder, _, _ = diverging_sweep
    rows = alive_rows(folder)
    axes = DRAWN["accuracy_per_epoch"].axes[0]
    lines = [
        line for line in axes.lines if line.get_gid() == "network" and len(line.get_ydata()) == 2
    ]
    assert len(lines) == len(rows) == 4
    assert sorted(round(float(line.get_ydata()[-1]), 2) for line in lines) == sorted(
        float(r["final_test_accuracy"]) for r in rows
    )
    assert sorted(round(float(max(line.get_ydata())), 2) for line in lines) == sorted(
        float(r["best_test_accuracy"]) for r in rows
    )
    assert all(list(line.get_xdata()) == [0, 1] for line in lines)  # epochs from 0


def test_each_configuration_is_a_mean_line_in_a_colour_of_its_own(diverging_sweep) -> None:
    """The figure shows spread: per configuration, the mean over its networks that did not
    diverge, epoch by epoch, bold, with a band, each configuration in a distinct colour."""
    folder, _, _ = diverging_sweep
    rows = alive_rows(folder)
    axes = DRAWN["accuracy_per_epoch"].axes[0]
    means = [line for line in axes.lines if line.get_gid() == "mean"]
    by_config: dict[str, list[float]] = {}
    for r in rows:
        by_config.setdefault((r["sizes"], r["lr"]), []).append(float(r["final_test_accuracy"]))
    assert len(means) == len(by_config)
    finals = sorted(round(float(line.get_ydata()[-1]), 4) for line in means)
    expected = sorted(round(sum(v) / len(v), 4) for v in by_config.values())
    assert finals == pytest.approx(expected, abs=0.006)  # the CSV's figures are rounded
    assert len({tuple(line.get_color()) for line in means}) == len(means)
    assert all(line.get_linewidth() > 1.5 for line in means)
    assert len([c for c in axes.collections if c.get_gid() == "band"]) == len(means)


def test_the_spread_is_each_configurations_test_accuracy_at_its_best_epoch(
    diverging_sweep,
) -> None:
    """A row of points per configuration, in a colour of its own: the test accuracy at the
    best validation epoch of every network of it that did not diverge."""
    folder, _, _ = diverging_sweep
    rows = alive_rows(folder)
    ax = DRAWN["spread"].axes[0]
    drawn = [sorted(round(float(x), 2) for x, _ in c.get_offsets()) for c in ax.collections]
    assert all(len({float(y) for _, y in c.get_offsets()}) <= 1 for c in ax.collections)
    configs: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        configs.setdefault((r["sizes"], r["lr"]), []).append(float(r["test_accuracy"]))
    assert sorted(d for d in drawn if d) == sorted(sorted(v) for v in configs.values())
    colours = [tuple(c.get_facecolor()[0]) for c in ax.collections if len(c.get_offsets())]
    assert len(set(colours)) == len(colours)


def test_accuracy_against_lr_plots_each_network_at_its_own_lr(diverging_sweep) -> None:
    folder, _, _ = diverging_sweep
    rows = alive_rows(folder)
    ax = DRAWN["accuracy_vs_lr"].axes[0]
    points = [(float(x), round(float(y), 2)) for c in ax.collections for x, y in c.get_offsets()]
    assert sorted(points) == sorted((float(r["lr"]), float(r["test_accuracy"])) for r in rows)


# --- the stack's chunks: train.py's iterator, over one order per network -------------------


@pytest.mark.parametrize("steps_done", [None, 3, 9, 10])
def test_each_network_of_a_stack_gets_its_own_mini_batches_resumed_mid_epoch_too(
    steps_done: int | None,
) -> None:
    """95 images, batch 10, 4 steps a chunk: 9 full mini-batches of each network's own epoch
    order, then its short one of 5; a resume after ``steps_done`` steps goes on from there."""
    seeds, epoch, batch, steps = [7, 8], 2, 10, 4
    x, targets = torch.arange(95).unsqueeze(1), torch.arange(95)
    sampler = StackPermutations(95, seeds, torch.device("cpu"))
    stack = StackBatches(x, targets, sampler, batch, steps)
    sampler.set_epoch(epoch)
    if steps_done is not None:
        stack.load_state_dict({"epoch": epoch, "steps_done": steps_done})
    chunks = [images.squeeze(-1) for images, _ in stack]  # (K, N, B) each
    for k, seed in enumerate(seeds):  # the reference: network k's epoch order, sliced by hand
        order = EpochPermutation(95, seed, torch.device("cpu"))
        order.set_epoch(epoch)
        mini_batches = list(order.permutation().split(batch))[steps_done or 0 :]
        full = [b for b in mini_batches if len(b) == batch]
        expected = [full[i : i + steps] for i in range(0, len(full), steps)]
        expected += [[b] for b in mini_batches if len(b) < batch]
        got = [[row for row in chunk[:, k]] for chunk in chunks]
        assert [[b.tolist() for b in c] for c in got] == [[b.tolist() for b in c] for c in expected]

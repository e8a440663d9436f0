"""scripts/sweep.py (and train.py) in several processes: exactly the one-process results, or one
line and a non-zero exit; never silently wrong numbers, never a hang.

Each DDP start costs seconds here, so the runs share one small data set and one reference:
the same sweep in one process, float64.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import REPO, write_mnist

from mlp_digits import cli
from mlp_digits.sweep import grid as sweep_grid
from mlp_digits.sweep import run as sweep

SWEEP = str(REPO / "scripts" / "sweep.py")
TRAIN = str(REPO / "scripts" / "train.py")
TIMEOUT = 300  # a safety net for a hang, not what a test asserts
# Three networks: two processes hold two and one, so their slices (and speeds) differ.
GRID = ["--seeds", "0-2", "--lr", "3", "--max-epochs", "3", "--precision", "64"]


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 training images: an epoch of some 250 steps, long enough to be killed inside."""
    return write_mnist(tmp_path_factory.mktemp("mnist") / "data", n_train=3_000, n_test=200)


def flags(data: Path, logdir: Path) -> list[str]:
    return ["--data-dir", str(data), "--no-download", "--val-size", "500",
            "--accelerator", "cpu", "--logdir", str(logdir)]  # fmt: skip


# No address of the process running the tests leaks into the runs; one thread per process
# everywhere (Lightning gives each of two processes on one node its share of the cores, torchrun's
# one process per node would take them all, and more threads add up in another order).
ENV = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
ENV["OMP_NUM_THREADS"] = "1"


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=ENV)


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """results.csv of the sweep in one process."""
    logdir = tmp_path_factory.mktemp("one")
    one = run(sys.executable, SWEEP, *GRID, *flags(data, logdir))
    assert one.returncode == 0, one.stderr[-3000:]
    return read_csv(logdir / "sweep" / "version_0" / "results.csv")


def folders(logdir: Path) -> list[str]:
    return sorted(p.name for p in (logdir / "sweep").iterdir())


# --- two processes on one machine ----------------------------------------------------------


def test_two_processes_with_the_default_strategy_give_the_one_process_results(
    data: Path, reference: list[dict], tmp_path: Path
) -> None:
    """Lightning's plain DDP (the default --strategy with --devices 2) copied rank 0's
    initial weights into rank 1's networks; the sweep's own SplitDDP does not."""
    two = run(sys.executable, SWEEP, *GRID, *flags(data, tmp_path), "--devices", "2")
    assert two.returncode == 0, two.stderr[-3000:]
    assert "Traceback" not in two.stderr and "warn" not in two.stderr.lower(), two.stderr
    folder = tmp_path / "sweep" / "version_0"
    assert read_csv(folder / "results.csv") == reference
    stack = folder / "stacks" / "stack0"
    assert (stack / "split.json").read_text() == '{"processes": 2, "networks": [[0, 2], [1]]}'
    assert sorted(p.name for p in stack.glob("rank*/last.ckpt")) == ["last.ckpt"] * 2


@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_fork", "fsdp"])
def test_a_strategy_the_sweep_cannot_trust_is_refused_in_one_line(strategy: str, capsys) -> None:
    parser = cli.sweep_parser()
    args = parser.parse_args(["--strategy", strategy, "--devices", "2", "--accelerator", "cpu"])
    with pytest.raises(SystemExit) as exit_:
        sweep.check_args(parser, args)
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--strategy {strategy}:" in last and "use --strategy auto or ddp" in last


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_killed_process_ends_the_sweep_which_resumes_only_with_its_processes(
    data: Path, reference: list[dict], tmp_path: Path
) -> None:
    """SIGKILL to rank 1 in epoch 1: rank 0 stops at once, with a line saying why; `--resume
    last` finds the two-process sweep, refuses one process in one line, goes on with two."""
    proc = subprocess.Popen(
        [sys.executable, SWEEP, *GRID, *flags(data, tmp_path), "--devices", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    assert proc.stdout.readline().startswith("Sweep ")  # both processes have started
    (rank1,) = children(proc.pid)
    for line in proc.stdout:
        if " epoch 0:" in line:
            break
    os.kill(rank1, signal.SIGKILL)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode != 0 and "Traceback" not in err, err[-3000:]
    # Whichever comes first: rank 0's next collective fails (its line, exit 1), or Lightning's
    # watch over the process it started sees it gone and kills rank 0 (its line, SIGKILL).
    ours = [line for line in err.splitlines() if line.startswith("error:")]
    lightnings = [line for line in err.splitlines() if "terminated with code -9" in line]
    assert len(ours) + len(lightnings) >= 1 and len(ours) <= 1 and len(lightnings) <= 1, err
    assert len(err.strip().splitlines()) == len(ours) + len(lightnings), err
    for line in ours:
        assert line.startswith("error: stack 1/1") and "process 0 of 2 lost the others" in line
        assert "--resume last" in line and "--devices 2" in line
    assert not (tmp_path / "sweep" / "version_0" / "results.csv").exists()

    resume = [sys.executable, SWEEP, "--resume", "last", *flags(data, tmp_path)]
    one = run(*resume)
    assert one.returncode == 2, one.stderr[-3000:]
    (line,) = one.stderr.strip().splitlines()
    assert "stack 1/1" in line and "begun on 2 processes" in line and "not 1" in line

    two = run(*resume, "--devices", "2")
    assert two.returncode == 0, two.stderr[-3000:]
    assert " epoch 0:" not in two.stdout and " epoch 2:" in two.stdout  # went on, not over
    assert folders(tmp_path) == ["version_0"]
    assert read_csv(tmp_path / "sweep" / "version_0" / "results.csv") == reference


# --- the stack's records -------------------------------------------------------------------


def test_a_stack_is_done_only_when_its_records_hold_every_network(tmp_path: Path) -> None:
    nets = sweep_grid.build_grid(cli.sweep_parser().parse_args(["--seeds", "0-2"]))
    record = {"networks": [1], "history": {}}
    torch.save(record, tmp_path / "result-rank1.pt")  # an older sweep's file of one process
    assert sweep.load_stack_records(tmp_path, nets) is None
    torch.save([{"networks": [0, 2], "history": {}}, record], tmp_path / sweep.RECORDS_FILE)
    assert [r["networks"] for r in sweep.load_stack_records(tmp_path, nets)] == [[0, 2], [1]]


# --- torchrun: two machines of one process each, simulated on this one --------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(*argv: str) -> list[subprocess.CompletedProcess]:
    """``argv`` under torchrun as two nodes of one process each (node ranks 0 and 1)."""
    port = free_port()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                "--nproc-per-node", "1", "--master-addr", "127.0.0.1",
                "--master-port", str(port)]  # fmt: skip
    nodes = [
        subprocess.Popen(
            [*torchrun, "--node-rank", str(rank), *argv, "--devices", "1", "--num-nodes", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            start_new_session=True,  # a node's torchrun and its worker, ended together
        )
        for rank in (0, 1)
    ]
    with ThreadPoolExecutor(2) as pool:  # both read at once: neither waits on a full pipe
        outputs = list(pool.map(lambda node: finish(node, TIMEOUT), nodes))
    return [subprocess.CompletedProcess(n.args, n.returncode, *o) for n, o in zip(nodes, outputs)]


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Its output; past ``timeout``, its process group killed, and what it had said."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return out, err + "\n(killed: still running after the test's timeout)"


def test_the_sweep_on_two_torchrun_nodes_gives_the_one_process_results(
    data: Path, reference: list[dict], tmp_path: Path
) -> None:
    """Every process starts the script itself: rank 0 chooses the folder, the other gets it."""
    nodes = two_nodes(SWEEP, *GRID, *flags(data, tmp_path))
    for node in nodes:
        assert node.returncode == 0, node.stderr[-3000:]
    assert folders(tmp_path) == ["version_0"]
    assert read_csv(tmp_path / "sweep" / "version_0" / "results.csv") == reference
    assert "Sweep " in nodes[0].stdout and "Sweep " not in nodes[1].stdout


def test_train_on_two_torchrun_nodes_gives_the_weights_of_two_devices(
    data: Path, tmp_path: Path
) -> None:
    common = ["--max-epochs", "1", "--backprop", "manual", "--images-every", "0",
              "--data-dir", str(data), "--no-download", "--val-size", "500",
              "--accelerator", "cpu"]  # fmt: skip
    two = run(sys.executable, TRAIN, *common, "--logdir", str(tmp_path / "two"), "--devices", "2")
    assert two.returncode == 0, two.stderr[-3000:]
    for node in two_nodes(TRAIN, *common, "--logdir", str(tmp_path / "nodes")):
        assert node.returncode == 0, node.stderr[-3000:]
    a, b = (
        torch.load(tmp_path / x / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
        for x in ("two", "nodes")
    )
    assert a["sgd_steps"] == b["sgd_steps"] == 2_500 // 2 // 10  # each process's half
    for name, tensor in a["state_dict"].items():
        assert torch.equal(b["state_dict"][name], tensor), name


def test_devices_that_do_not_match_torchrun_are_one_line(monkeypatch, capsys) -> None:
    torchrun = {"TORCHELASTIC_RUN_ID": "t", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}
    for key, value in {**torchrun, "WORLD_SIZE": "4"}.items():
        monkeypatch.setenv(key, value)
    parser = cli.train_parser()
    args = parser.parse_args(["--devices", "1", "--accelerator", "cpu"])
    with pytest.raises(SystemExit) as exit_:
        cli.check_train_args(parser, args)
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "torchrun started 4 processes, 2 per node; give --devices 2 --num-nodes 2" in last

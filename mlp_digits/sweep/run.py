"""Run a sweep: the grid's stacks, one Trainer each, then the report.

    python scripts/sweep.py --seeds 0-19 --lr 0.1 0.3 1 3 10 --sizes 784,16,16,10 784,30,10
    python scripts/sweep.py --preset chapter1        # the book's chapter-1 table, 5 seeds each

Networks with the same sizes, batch size and activation train together as one ``StackedMLP``
(``grid.group_stacks``): one Trainer per stack, one stack after another, all on the same uint8
copy of the data; with several processes each trains its share of every stack
(``processes``, ``records``). Network k is the ``scripts/train.py`` run with its flags, up
to rounding (tests/test_sweep_exact.py). Everything goes to ``LOGDIR/NAME/version_N``:
``sweep.json`` (its settings, for ``--resume``), ``results.csv``, the figures, a TensorBoard
run per network, an exported network, and each stack's checkpoints and records.
"""

from __future__ import annotations

import argparse
import json
import sys
from argparse import Namespace
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from mlp_digits import cli
from mlp_digits.data import (
    DataError,
    check_idx,
    load_mnist_uint8,
    prepare_mnist,
    raw_folder,
    resolve_val_size,
    split_indices,
)
from mlp_digits.lightning.callbacks import Interrupted, StopOnSignal
from mlp_digits.lightning.checkpoint import SaveCheckpoints
from mlp_digits.lightning.training import TRAINER_PRECISION, quiet_lightning
from mlp_digits.sweep.grid import Network, build_grid, group_stacks, preset_epochs
from mlp_digits.sweep.memory import check_memory, sweep_bytes
from mlp_digits.sweep.processes import (
    PeersLost,
    SplitDDP,
    agreed,
    lost_peer,
    part,
    peers_lost,
    start_processes,
)
from mlp_digits.sweep.progress import SweepProgress, say
from mlp_digits.sweep.records import (
    ShareRecords,
    checkpoint_dir,
    load_stack_records,
    plan_stack,
    split_networks,
    write_split,
)
from mlp_digits.sweep.stack import StackData, StackedMLP

TRUSTED_STRATEGIES = ("auto", "ddp")  # both mean SplitDDP when there are several processes


def check_args(parser: argparse.ArgumentParser, args: Namespace) -> list[Network]:
    """Every check that needs neither training nor a device: one line and exit status 2 for
    each failure (the memory is checked once the processes have started, ``memory``)."""
    cli.check_device_args(parser, args)
    if args.strategy not in TRUSTED_STRATEGIES:
        parser.error(
            f"--strategy {args.strategy}: the sweep gives each process its own networks with "
            "its own DDP, and trusts no other strategy; use --strategy auto or ddp"
        )
    if args.resume:
        return []  # the grid is the resumed sweep's, checked when it started
    try:
        networks = build_grid(args)
    except ValueError as e:
        parser.error(str(e))
    images = raw_folder(args.data_dir) / "train-images-idx3-ubyte"
    if images.is_file():
        try:
            n = check_idx(images, "images")
            n_train = n - resolve_val_size(args.val_size, n)
        except DataError as e:
            parser.error(str(e))
        largest = max(net.config.batch_size for net in networks)
        if largest > n_train:
            parser.error(
                f"--batch-size {largest} is larger than the training set ({n_train} images); "
                "use a smaller batch size or a smaller --val-size"
            )
    return networks


def load_splits(args: Namespace) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The book's split as uint8 pixels: train, then the last ``--val-size`` images, test."""
    prepare_mnist(args.data_dir, not args.no_download)
    splits = {}
    for split in ("train", "test"):
        splits[split] = load_mnist_uint8(args.data_dir, split)
    x, targets = splits["train"]
    train, val = split_indices(len(x), resolve_val_size(args.val_size, len(x)))
    splits["train"], splits["val"] = (x[train], targets[train]), (x[val], targets[val])
    return splits


SETTINGS = ("seeds", "lr", "sizes", "batch_size", "preset", "activation", "init", "backprop",
            "precision", "max_epochs", "val_size")  # fmt: skip


def sweep_folder(args: Namespace) -> Path:
    """A new ``LOGDIR/NAME/version_N``, or for ``--resume`` the sweep to go on with (whose
    grid then replaces the flags')."""
    root = Path(args.logdir) / (args.name or "sweep")
    versions = sorted(
        (int(p.name.removeprefix("version_")), p)
        for p in root.glob("version_*")
        if p.name.removeprefix("version_").isdigit()
    )
    if not args.resume:  # made by run() once the data is known good, with its sweep.json
        return root / f"version_{versions[-1][0] + 1 if versions else 0}"
    if args.resume == "last":
        folders = [p for _, p in versions if (p / "sweep.json").is_file()]
        if not folders:
            raise DataError(f"--resume last: no sweep under {root}; check --logdir and --name")
        folder = folders[-1]
    else:
        folder = Path(args.resume)
        if not (folder / "sweep.json").is_file():
            raise DataError(f"--resume {folder}: not a sweep folder (it has no sweep.json)")
    settings = json.loads((folder / "sweep.json").read_text())
    for key in SETTINGS:
        setattr(args, key, settings[key])
    # The data: the sweep's own folder (stored resolved) unless --data-dir is given.
    given = getattr(args, "given", {"data_dir", "no_download"})
    if "data_dir" not in given:
        args.data_dir = settings["data_dir"]
    if "no_download" not in given:
        args.no_download = not settings["download"]
    return folder


def agreed_folder(args: Namespace, fabric: L.Fabric | None) -> Path:
    """The sweep's folder, chosen by rank 0; with ``--resume``, the sweep's settings too."""

    def choose() -> tuple[Path, dict]:
        folder = sweep_folder(args)  # with --resume, the sweep's own data folder too
        return folder, {key: getattr(args, key) for key in (*SETTINGS, "data_dir", "no_download")}

    folder, settings = agreed(fabric, choose)
    for key, value in settings.items():
        setattr(args, key, value)
    return folder


def write_settings(folder: Path, args: Namespace) -> None:
    """``sweep.json``: what ``--resume`` needs to go on with the same sweep."""
    settings = {key: getattr(args, key) for key in SETTINGS}
    settings |= {"data_dir": args.data_dir, "download": not args.no_download}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep.json").write_text(json.dumps(settings, indent=1))


# --- one stack ----------------------------------------------------------------------------


def stack_trainer(args: Namespace, callbacks: list[Callback]) -> L.Trainer:
    """A stack's Trainer: no logger (the report writes each network's TensorBoard run), the
    project's own checkpoints, the sweep's own DDP with several processes."""
    return L.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=SplitDDP() if cli.processes(args) > 1 else "auto",
        precision=TRAINER_PRECISION[str(args.precision)],
        max_epochs=args.max_epochs,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )


def stack_model(args: Namespace, mine: list[Network], progress: SweepProgress) -> StackedMLP:
    """This process's networks of a stack as one StackedMLP, which says when one diverges."""
    model = StackedMLP(
        sizes=mine[0].config.sizes,
        lrs=[n.config.lr for n in mine],
        seeds=[n.seed for n in mine],
        init=[n.config.init for n in mine],
        backprop=args.backprop,
        activation=mine[0].config.activation,
    )

    def diverged(k: int, step: int) -> None:
        progress.write(
            f"{mine[k].name} diverged at SGD step {step}: marked, stopped; the others go on"
        )

    model.on_diverged = diverged
    return model


def stack_data(splits: dict, mine: list[Network], nets: list[Network]) -> StackData:
    """This process's networks' data: their own orders, in the whole stack's chunks (a
    smaller slice would take longer ones), so that every process takes as many Lightning
    steps and their per-chunk collectives pair up."""
    batch_size = mine[0].config.batch_size
    data = StackData(splits, [n.seed for n in mine], batch_size)
    data.steps_per_chunk = StackData(splits, [n.seed for n in nets], batch_size).steps_per_chunk
    return data


def train_stack(
    args: Namespace,
    nets: list[Network],
    label: str,
    splits: dict,
    stack_dir: Path,
    progress: SweepProgress,
    split: list[list[int]] | None = None,
) -> int:
    """Train one stack, each process its networks of ``split`` (default ``split_networks``);
    rank 0 saves every network's record. Returns 0 or 128+signal; raises PeersLost."""
    saver = SaveCheckpoints(stack_dir, monitor=None)  # last.ckpt: the stack keeps its own best
    sharer = ShareRecords([], args.max_epochs)
    trainer = stack_trainer(args, [saver, StopOnSignal(saver), progress, sharer])
    rank, world = trainer.global_rank, trainer.world_size
    split = split or split_networks(nets, world)
    by_index = {n.index: n for n in nets}
    mine = [by_index[k] for k in split[rank]]
    sharer.networks = split[rank]
    if rank == 0:
        write_split(stack_dir, split)
    saver.dirpath = checkpoint_dir(stack_dir, rank, world)
    saver.dirpath.mkdir(parents=True, exist_ok=True)
    progress.label = label
    last = saver.dirpath / "last.ckpt"
    try:
        trainer.fit(
            stack_model(args, mine, progress),
            datamodule=stack_data(splits, mine, nets),
            ckpt_path=str(last) if last.is_file() else None,
            weights_only=True,
        )
    except Interrupted as stop:
        return 128 + stop.signum
    except Exception as e:
        if world > 1 and lost_peer(e):
            raise peers_lost(e, label, rank, world) from None
        raise
    if rank == 0:
        sharer.save(stack_dir)
    return 0


# --- the whole sweep ----------------------------------------------------------------------


def resume_command(args: Namespace) -> str:
    resume = f"python scripts/sweep.py --resume last --logdir {args.logdir}"
    resume += f" --name {args.name}" if args.name else ""
    if cli.processes(args) > 1:  # each process's last.ckpt holds its own networks
        resume += f" --devices {args.devices}"
        resume += f" --num-nodes {args.num_nodes}" if args.num_nodes > 1 else ""
    return resume


def run(args: Namespace) -> int:
    """Train the whole grid, stack after stack; print the table; write the results."""
    try:
        return run_sweep(args)
    except PeersLost as e:
        print(f"error: {e}; saved: {resume_command(args)}", file=sys.stderr, flush=True)
        return 1


def stack_labels(stacks: list[list[Network]]) -> list[str]:
    return [
        f"stack {i + 1}/{len(stacks)} ({c.layers}, batch {c.batch_size}, {len(nets)} nets)"
        for i, nets in enumerate(stacks)
        for c in [nets[0].config]
    ]


def train_stacks(
    args: Namespace,
    stacks: list[list[Network]],
    folder: Path,
    splits: dict,
    fabric: L.Fabric | None,
) -> tuple[int, list[dict]]:
    """Every stack not done before, one after another: (0 or 128+signal, rank 0's records)."""
    labels = stack_labels(stacks)
    stack_dirs = [folder / "stacks" / f"stack{i}" for i in range(len(stacks))]
    world = cli.processes(args)
    plans = agreed(fabric, lambda: [plan_stack(*x, world) for x in zip(stack_dirs, stacks, labels)])
    n_train = len(splits["train"][0])
    total = sum(len(s) * -(-n_train // s[0].config.batch_size) for s in stacks) * args.max_epochs
    rank0 = fabric is None or fabric.global_rank == 0
    progress = SweepProgress(total, show_bar=rank0)
    records: list[dict] = []
    try:
        for nets, label, stack_dir, split in zip(stacks, labels, stack_dirs, plans):
            stack_dir.mkdir(parents=True, exist_ok=True)
            if split is not None:
                status = train_stack(args, nets, label, splits, stack_dir, progress, split)
                if status:
                    print(
                        f"Stopped in {label}: saved; to go on: {resume_command(args)}",
                        file=sys.stderr,
                        flush=True,
                    )
                    return status, records
            elif rank0:
                say(f"{label}: done before, its results are read back")
            if rank0:
                records.extend(load_stack_records(stack_dir))
    finally:
        progress.close()
    return 0, records


def run_sweep(args: Namespace) -> int:
    """``run``, whose processes may lose one another (PeersLost)."""
    from mlp_digits.sweep import report as sweep_report  # its figures load matplotlib

    quiet_lightning()
    torch.set_num_threads(args.num_threads)
    if not args.resume:
        args.max_epochs = preset_epochs(args)  # the video preset's 60, unless --max-epochs
    fabric = start_processes(args)
    folder = agreed_folder(args, fabric)
    args.data_dir = str(Path(args.data_dir).expanduser().resolve())  # found from anywhere
    networks = build_grid(args)
    stacks = group_stacks(networks)
    check_memory(args, stacks, fabric)
    # The data first: a sweep that cannot start leaves no folder, so --resume last and the
    # next version number skip it.
    splits = load_splits(args)
    rank0 = fabric is None or fabric.global_rank == 0
    if rank0:
        if not args.resume:
            write_settings(folder, args)
        need = sweep_bytes(stacks, str(args.precision), cli.processes(args))
        say(
            f"Sweep {folder}: {len(networks)} networks in {len(stacks)} stack(s), "
            f"{args.max_epochs} epochs, about {need / 2**20:,.0f} MB"
        )
    status, records = train_stacks(args, stacks, folder, splits, fabric)
    part(fabric)
    if status or not rank0:
        return status
    sweep_report.report(folder, sweep_report.collect(networks, records), args)
    return 0

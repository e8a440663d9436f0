"""Run a sweep: the grid's stacks, one Trainer each, then the report.

    python scripts/sweep.py --seeds 0-19 --lr 0.1 0.3 1 3 10 --sizes 784,16,16,10 784,30,10
    python scripts/sweep.py --preset chapter1        # the book's chapter-1 table, 5 seeds each

Networks with the same sizes and batch size train together as one ``StackedMLP`` (one
Trainer per stack, one after another, all on the same uint8 copy of the data); network k is the
``scripts/train.py`` run with its flags, up to rounding (see the README). Everything goes
to ``LOGDIR/NAME/version_N``: ``results.csv``, the figures, a TensorBoard run per network,
and each stack's checkpoints.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import sys
import time
import warnings
from argparse import Namespace
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.strategies import DDPStrategy as FabricDDPStrategy
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import DDPStrategy

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
from mlp_digits.lightning.checkpoint import SaveCheckpoints, one_line
from mlp_digits.lightning.training import TRAINER_PRECISION, quiet_lightning
from mlp_digits.sweep.grid import Network, build_grid, group_stacks, preset_epochs
from mlp_digits.sweep.stack import StackData, StackedMLP, stack_bytes


def available_bytes(accelerator: str) -> int:
    if accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.cuda.mem_get_info()[0]
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def sweep_bytes(stacks: list[list[Network]], precision: str, world_size: int) -> int:
    """The largest stack's memory (stacks train one after another), plus the data."""
    dtype_bytes = 8 if precision == "64" else 4
    largest = max(
        stack_bytes(
            s[0].config.sizes, -(-len(s) // world_size), s[0].config.batch_size, dtype_bytes
        )
        for s in stacks
    )
    return largest + 70_000 * 784 * 2  # uint8 images, plus float32 while they load


TRUSTED_STRATEGIES = ("auto", "ddp")  # both mean SplitDDP when there are several processes


def check_args(parser: argparse.ArgumentParser, args: Namespace) -> list[Network]:
    """Every check that needs no training: one line and exit status 2 for each failure."""
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
    stacks = group_stacks(networks)
    need, have = (
        sweep_bytes(stacks, str(args.precision), cli.processes(args)),
        available_bytes(args.accelerator),
    )
    if need > have:
        parser.error(
            f"the sweep needs about {need / 2**20:,.0f} MB, more than the {have / 2**20:,.0f} MB "
            "free: use fewer seeds or values, or more --devices"
        )
    return networks


# --- the run ------------------------------------------------------------------------------


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


SETTINGS = ("seeds", "lr", "sizes", "batch_size", "preset", "init", "backprop", "precision",
            "max_epochs", "val_size")  # fmt: skip


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
    if "data_dir" not in given and settings.get("data_dir"):
        args.data_dir = settings["data_dir"]
    if "no_download" not in given and settings.get("download") is False:
        args.no_download = True
    return folder


def say(line: str) -> None:
    print(line, flush=True)


class SweepProgress(Callback):
    """One line per epoch of every stack; at a terminal also a bar over the whole sweep
    (SGD updates of all networks, with its ETA)."""

    def __init__(self, total_updates: int, show_bar: bool) -> None:
        self.bar = None
        if show_bar and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_updates, unit=" updates", unit_scale=True, dynamic_ncols=True
            )
        self.label = ""

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            say(line)

    def on_train_batch_end(self, trainer: L.Trainer, model: StackedMLP, outputs, chunk, *_) -> None:
        if self.bar is not None and trainer.is_global_zero:
            self.bar.update(chunk[0].shape[0] * chunk[0].shape[1] * trainer.world_size)

    def on_train_epoch_start(self, trainer: L.Trainer, model: StackedMLP) -> None:
        self.started = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, model: StackedMLP) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        seconds = time.monotonic() - getattr(self, "started", time.monotonic())
        accuracy = model.history["val_correct"][-1].double() / model.n_val * 100
        live = model.diverged_at.cpu() < 0
        shown = accuracy[live] if live.any() else accuracy
        self.write(
            f"{self.label} epoch {trainer.current_epoch}: validation accuracy "
            f"{float(shown.min()):.2f}-{float(shown.max()):.2f}% (mean {float(shown.mean()):.2f}%)"
            + (f", {int((~live).sum())} diverged" if not live.all() else "")
            + f", {seconds:.1f} s"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- several processes --------------------------------------------------------------------

PEER_TIMEOUT = timedelta(seconds=60)
# How long a process waits for the others in a collective before it gives up. A process that
# dies closes its connections, and the others' next collective fails at once (they meet after
# every chunk); this bounds the rest: a machine gone, a process stuck.


class SplitDDP(DDPStrategy):
    """DDP where each process trains its own slice of the networks: no weights broadcast at
    the start (the slices differ), no gradient exchange, and every process saves its own
    checkpoint (in its own folder). Lightning's own DDP would copy rank 0's initial weights
    into every other process's networks: results silently wrong."""

    def __init__(self) -> None:
        # Deprecated in torch, and still the only switch that keeps each process's buffers (its
        # networks' η, best weights) its own at every forward.
        warnings.filterwarnings("ignore", message=r"`broadcast_buffers` is deprecated")
        super().__init__(init_sync=False, broadcast_buffers=False, timeout=PEER_TIMEOUT)

    def save_checkpoint(self, checkpoint: dict, filepath, storage_options=None) -> None:
        self.checkpoint_io.save_checkpoint(checkpoint, filepath, storage_options=storage_options)


class PeersLost(Exception):
    """Another process of the sweep is gone (died, killed, unreachable)."""


class Refused(Exception):
    """A resume the sweep cannot do as asked: one line, exit status 2."""


def lost_peer(error: BaseException) -> bool:
    """A collective failed because another process is gone: torch's distributed errors, or
    gloo's (RuntimeErrors that name gloo's source file)."""
    return isinstance(error, torch.distributed.DistError) or "gloo" in str(error)


def peers_lost(error: BaseException, where: str, rank: int, world: int) -> PeersLost:
    return PeersLost(f"{where}: process {rank} of {world} lost the others ({one_line(error, 100)})")


def start_processes(args: Namespace) -> L.Fabric | None:
    """With several processes: Lightning starts the others on this machine (each runs the
    script from the start), or joins those that torchrun or the other machines started, and
    sets up the process group that every stack's Trainer then uses. None in one process."""
    if cli.processes(args) == 1:
        return None
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    # ...but say it when Lightning stops the sweep because a process it started has died.
    logging.getLogger("lightning.fabric.strategies.launchers").setLevel(logging.INFO)
    fabric = L.Fabric(
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=FabricDDPStrategy(timeout=PEER_TIMEOUT),
    )
    try:
        fabric.launch()
    except Exception as e:
        if not lost_peer(e):
            raise
        raise peers_lost(e, "starting", fabric.global_rank, fabric.world_size) from None
    return fabric


def agreed(fabric: L.Fabric | None, make: Callable[[], Any]) -> Any:
    """``make()`` computed by rank 0 alone, its value shared with every process: the choices
    that touch the sweep's folder (under torchrun every process starts the script itself).
    Its one-line error ends every process, rank 0 alone saying it."""
    value = error = None
    if fabric is None or fabric.global_rank == 0:
        try:
            value = make()
        except (DataError, Refused) as e:
            error = e
    if fabric is not None:
        try:
            value, error = fabric.broadcast((value, error), src=0)
        except Exception as e:
            if not lost_peer(e):
                raise
            raise peers_lost(e, "starting", fabric.global_rank, fabric.world_size) from None
    if error is None:
        return value
    status = 2 if isinstance(error, Refused) else 1
    if fabric is not None and fabric.global_rank != 0:
        raise SystemExit(status)
    if status == 2:
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    raise error


def agreed_folder(args: Namespace, fabric: L.Fabric | None) -> Path:
    """The sweep's folder, chosen by rank 0; with ``--resume``, the sweep's settings too."""

    def choose() -> tuple[Path, dict]:
        folder = sweep_folder(args)  # with --resume, the sweep's own data folder too
        return folder, {key: getattr(args, key) for key in (*SETTINGS, "data_dir", "no_download")}

    folder, settings = agreed(fabric, choose)
    for key, value in settings.items():
        setattr(args, key, value)
    return folder


SPLIT_FILE = "split.json"  # which networks each process trains: {"processes", "networks"}
RECORDS_FILE = "records.pt"  # every network's record, saved by rank 0 when the stack is done


def split_networks(nets: list[Network], world: int) -> list[list[int]]:
    """The grid indices each of ``world`` processes trains: every ``world``-th network."""
    return [[n.index for n in nets[rank::world]] for rank in range(world)]


def checkpoint_dir(stack_dir: Path, rank: int, world: int) -> Path:
    return stack_dir / f"rank{rank}" if world > 1 else stack_dir


def saved_step(path: Path) -> int | None:
    """The SGD step of a last.ckpt; None if there is none, or only part of one (a process
    killed while it wrote)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (OSError, RuntimeError, pickle.UnpicklingError):
        return None
    return checkpoint.get("sgd_steps")


def plan_stack(stack_dir: Path, nets: list[Network], label: str, world: int) -> list | None:
    """None if the stack is done; else the networks each process trains (``split_networks``).
    A stack begun and saved goes on only with its own number of processes: each process's
    last.ckpt holds its own networks."""
    if load_stack_records(stack_dir, nets) is not None:
        return None
    fresh = split_networks(nets, world)
    if not (stack_dir / SPLIT_FILE).is_file():
        return fresh
    begun = json.loads((stack_dir / SPLIT_FILE).read_text())["networks"]
    saved = [checkpoint_dir(stack_dir, r, len(begun)) / "last.ckpt" for r in range(len(begun))]
    steps = {saved_step(p) for p in saved}
    if steps == {None}:
        return fresh  # begun, nothing saved: split anew
    if len(begun) != world:
        raise Refused(
            f"{label} was begun on {len(begun)} processes, each with its own networks in its "
            f"last.ckpt; resume it with {len(begun)} processes (--devices x --num-nodes), "
            f"not {world}"
        )
    if len(steps) > 1:  # a process died after the others had saved, before it had
        say(f"{label}: its processes saved different steps ({steps}); it starts again")
        for path in saved:
            path.unlink(missing_ok=True)
        return fresh
    return begun


class ShareRecords(Callback):
    """At the end of a stack's fit, while the process group is still up, every process's
    record of its networks goes to rank 0 (``gathered``) by the strategy's collective."""

    def __init__(self, networks: list[int], max_epochs: int) -> None:
        self.networks, self.max_epochs = networks, max_epochs
        self.gathered: list[dict] = []

    def on_fit_end(self, trainer: L.Trainer, model: StackedMLP) -> None:
        record = {
            "networks": self.networks,
            "history": {k: torch.stack(v) for k, v in model.history.items()},
            "n_val": model.n_val,
            "n_test": model.n_test,
            "steps_per_epoch": model.sgd_steps // self.max_epochs,
            "best_epoch": model.best_epoch.cpu(),
            "diverged_at": model.diverged_at.cpu(),
            "hparams": dict(model.hparams),
            "best": [
                tuple(p.cpu() for p in model.best_parameters(l)) for l in range(len(model.weights))
            ],
        }
        if trainer.world_size == 1:
            self.gathered = [record]
            return
        gathered = [None] * trainer.world_size if trainer.is_global_zero else None
        torch.distributed.gather_object(record, gathered, dst=0)
        self.gathered = gathered or []


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
    stopper = StopOnSignal(saver)
    sharer = ShareRecords([], args.max_epochs)
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=SplitDDP() if cli.processes(args) > 1 else "auto",
        precision=TRAINER_PRECISION[str(args.precision)],
        max_epochs=args.max_epochs,
        logger=False,
        callbacks=[saver, stopper, progress, sharer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    rank, world = trainer.global_rank, trainer.world_size
    split = split or split_networks(nets, world)
    by_index = {n.index: n for n in nets}
    mine = [by_index[k] for k in split[rank]]
    sharer.networks = split[rank]
    if rank == 0:
        (stack_dir / SPLIT_FILE).write_text(json.dumps({"processes": world, "networks": split}))
    saver.dirpath = checkpoint_dir(stack_dir, rank, world)
    saver.dirpath.mkdir(parents=True, exist_ok=True)
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
    progress.label = label
    batch_size = mine[0].config.batch_size
    data = StackData(splits, model.hparams.seeds, batch_size)
    # The whole stack's chunks in every process (a smaller slice would take longer ones): as
    # many Lightning steps each, so that the processes' per-chunk collectives pair up.
    data.steps_per_chunk = StackData(splits, [n.seed for n in nets], batch_size).steps_per_chunk
    last = saver.dirpath / "last.ckpt"
    try:
        trainer.fit(
            model,
            datamodule=data,
            ckpt_path=str(last) if last.is_file() else None,
            weights_only=True,
        )
    except Interrupted as stop:
        return 128 + stop.signum
    except Exception as e:
        if world > 1 and lost_peer(e):
            raise peers_lost(e, label, rank, world) from None
        raise
    if rank == 0:  # written whole or not at all: the stack is done when the file is there
        torch.save(sharer.gathered, stack_dir / f"{RECORDS_FILE}.partial")
        os.replace(stack_dir / f"{RECORDS_FILE}.partial", stack_dir / RECORDS_FILE)
    return 0


def load_stack_records(stack_dir: Path, nets: list[Network] | None = None) -> list[dict] | None:
    """The stack's records, None before it is done; with ``nets``, None unless the records
    hold exactly the stack's networks. (Sweeps before ``records.pt`` left a file a process.)"""
    paths = [stack_dir / RECORDS_FILE] if (stack_dir / RECORDS_FILE).is_file() else []
    paths = paths or sorted(stack_dir.glob("result-rank*.pt"))
    records = []
    for path in paths:
        saved = torch.load(path, weights_only=True)
        records += saved if isinstance(saved, list) else [saved]
    held = sorted(k for record in records for k in record["networks"])
    if not records or (nets is not None and held != sorted(n.index for n in nets)):
        return None
    return records


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
    # The data first: a sweep that cannot start leaves no folder, so --resume last and the
    # next version number skip it.
    splits = load_splits(args)
    networks = build_grid(args)
    stacks = group_stacks(networks)
    rank0 = fabric is None or fabric.global_rank == 0
    if not args.resume and rank0:
        settings = {key: getattr(args, key) for key in SETTINGS}
        settings |= {"data_dir": args.data_dir, "download": not args.no_download}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sweep.json").write_text(json.dumps(settings, indent=1))
    need = sweep_bytes(stacks, str(args.precision), cli.processes(args))
    if rank0:
        say(
            f"Sweep {folder}: {len(networks)} networks in {len(stacks)} stack(s), "
            f"{args.max_epochs} epochs, about {need / 2**20:,.0f} MB"
        )
    labels = [
        f"stack {i + 1}/{len(stacks)} ({c.layers}, batch {c.batch_size}, {len(nets)} nets)"
        for i, nets in enumerate(stacks)
        for c in [nets[0].config]
    ]
    stack_dirs = [folder / "stacks" / f"stack{i}" for i in range(len(stacks))]
    world = cli.processes(args)
    plans = agreed(fabric, lambda: [plan_stack(*x, world) for x in zip(stack_dirs, stacks, labels)])
    n_train = len(splits["train"][0])
    total = sum(len(s) * -(-n_train // s[0].config.batch_size) for s in stacks) * args.max_epochs
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
                    return status
            elif rank0:
                say(f"{label}: done before, its results are read back")
            if rank0:
                records.extend(load_stack_records(stack_dir))
    finally:
        progress.close()
    if not rank0:
        return 0
    results = sweep_report.collect(networks, records)
    sweep_report.report(folder, results, args)
    return 0

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
import os
import sys
import time
from argparse import Namespace
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import DDPStrategy

from mlp_digits import cli
from mlp_digits.data import (
    DataError,
    check_idx,
    load_mnist,
    prepare_mnist,
    raw_folder,
    resolve_val_size,
    split_indices,
)
from mlp_digits.lightning.checkpoint import SaveCheckpoints
from mlp_digits.lightning.training import PRECISIONS, Interrupted, StopOnSignal, quiet_lightning
from mlp_digits.sweep.grid import Network, build_grid, group_stacks
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


def world_size(args: Namespace) -> int:
    return int(args.devices) if str(args.devices).isdigit() else 1


def check_args(parser: argparse.ArgumentParser, args: Namespace) -> list[Network]:
    """Every check that needs no training: one line and exit status 2 for each failure."""
    cli.check_device_args(parser, args)
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
        sweep_bytes(stacks, str(args.precision), world_size(args)),
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
        x, targets = load_mnist(args.data_dir, split)
        # Back to the file's bytes, in place: exact, since every pixel is k / 255 in float32.
        splits[split] = (x.mul_(255).round_().to(torch.uint8), targets)
        del x
    x, targets = splits["train"]
    train, val = split_indices(len(x), resolve_val_size(args.val_size, len(x)), "last", 0)
    splits["train"], splits["val"] = (x[train], targets[train]), (x[val], targets[val])
    return splits


SETTINGS = ("seeds", "lr", "sizes", "batch_size", "preset", "init", "backprop", "precision",
            "max_epochs", "val_size")  # fmt: skip


FOLDER_VARIABLE = "MLP_DIGITS_SWEEP_FOLDER"  # passed on to the processes DDP starts


def sweep_folder(args: Namespace) -> Path:
    """A new ``LOGDIR/NAME/version_N``, or for ``--resume`` the sweep to go on with (whose
    grid then replaces the flags')."""
    if os.environ.get(FOLDER_VARIABLE) and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(os.environ[FOLDER_VARIABLE])  # a DDP process started by rank 0's Trainer
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


class SplitDDP(DDPStrategy):
    """DDP where each process trains its own slice of the networks: no weights broadcast at
    the start (the slices differ), no gradient exchange, and every process saves its own
    checkpoint (in its own folder)."""

    def __init__(self) -> None:
        super().__init__(init_sync=False, broadcast_buffers=False)

    def save_checkpoint(self, checkpoint: dict, filepath, storage_options=None) -> None:
        self.checkpoint_io.save_checkpoint(checkpoint, filepath, storage_options=storage_options)


def result_path(stack_dir: Path, rank: int) -> Path:
    return stack_dir / f"result-rank{rank}.pt"


def train_stack(
    args: Namespace,
    nets: list[Network],
    label: str,
    splits: dict,
    stack_dir: Path,
    progress: SweepProgress,
) -> int:
    """Train one stack (this process's slice of it); save its record. Returns 0 or 128+signal."""
    strategy = SplitDDP() if args.strategy == "ddp" else args.strategy
    saver = SaveCheckpoints(stack_dir, monitor=None)  # last.ckpt: the stack keeps its own best
    stopper = StopOnSignal(saver)
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        strategy=strategy,
        precision=PRECISIONS[str(args.precision)],
        max_epochs=args.max_epochs,
        logger=False,
        callbacks=[saver, stopper, progress],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    rank, world = trainer.global_rank, trainer.world_size
    mine = nets[rank::world]
    saver.dirpath = stack_dir / f"rank{rank}" if world > 1 else stack_dir
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
    last = saver.dirpath / "last.ckpt"
    try:
        trainer.fit(
            model,
            datamodule=StackData(splits, model.hparams.seeds, mine[0].config.batch_size),
            ckpt_path=str(last) if last.is_file() else None,
            weights_only=True,
        )
    except Interrupted as stop:
        return 128 + stop.signum
    record = {
        "networks": [n.index for n in mine],
        "history": {k: torch.stack(v) for k, v in model.history.items()},
        "n_val": model.n_val,
        "n_test": model.n_test,
        "steps_per_epoch": model.sgd_steps // args.max_epochs,
        "best_epoch": model.best_epoch.cpu(),
        "diverged_at": model.diverged_at.cpu(),
        "hparams": dict(model.hparams),
        "best": [
            tuple(p.cpu() for p in model.best_parameters(l)) for l in range(len(model.weights))
        ],
    }
    torch.save(record, result_path(stack_dir, rank))
    # Rank 0 reports on every network: it waits for the other processes' records (files,
    # not a collective: Lightning may have closed the process group after fit).
    while rank == 0 and len(list(stack_dir.glob("result-rank*.pt"))) < world:
        time.sleep(0.1)
    return 0


def load_stack_records(stack_dir: Path) -> list[dict] | None:
    paths = sorted(stack_dir.glob("result-rank*.pt"))
    return [torch.load(p, weights_only=True) for p in paths] or None


def run(args: Namespace) -> int:
    """Train the whole grid, stack after stack; print the table; write the results."""
    from mlp_digits.sweep import report as sweep_report  # its figures load matplotlib

    quiet_lightning()
    torch.set_num_threads(args.num_threads)
    folder = sweep_folder(args)
    args.data_dir = str(Path(args.data_dir).expanduser().resolve())  # found from anywhere
    # The data first: a sweep that cannot start leaves no folder, so --resume last and the
    # next version number skip it.
    splits = load_splits(args)
    os.environ[FOLDER_VARIABLE] = str(folder)
    networks = build_grid(args)
    stacks = group_stacks(networks)
    rank0 = int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0
    if not args.resume and rank0:
        settings = {key: getattr(args, key) for key in SETTINGS}
        settings |= {"data_dir": args.data_dir, "download": not args.no_download}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sweep.json").write_text(json.dumps(settings, indent=1))
    need = sweep_bytes(stacks, str(args.precision), world_size(args))
    if rank0:
        say(
            f"Sweep {folder}: {len(networks)} networks in {len(stacks)} stack(s), "
            f"{args.max_epochs} epochs, about {need / 2**20:,.0f} MB"
        )
    n_train = len(splits["train"][0])
    total = sum(len(s) * -(-n_train // s[0].config.batch_size) for s in stacks) * args.max_epochs
    progress = SweepProgress(total, show_bar=rank0)
    records: list[dict] = []
    try:
        for i, nets in enumerate(stacks):
            stack_dir = folder / "stacks" / f"stack{i}"
            stack_dir.mkdir(parents=True, exist_ok=True)
            c = nets[0].config
            label = (
                f"stack {i + 1}/{len(stacks)} ({c.layers}, batch {c.batch_size}, {len(nets)} nets)"
            )
            done = load_stack_records(stack_dir)
            if done is None:
                status = train_stack(args, nets, label, splits, stack_dir, progress)
                if status:
                    resume = f"python scripts/sweep.py --resume last --logdir {args.logdir}"
                    resume += f" --name {args.name}" if args.name else ""
                    print(
                        f"Stopped in {label}: saved; to go on: {resume}",
                        file=sys.stderr,
                        flush=True,
                    )
                    return status
                done = load_stack_records(stack_dir)
            elif rank0:
                say(f"{label}: done before, its results are read back")
            records.extend(done)
    finally:
        progress.close()
    if not rank0:
        return 0
    results = sweep_report.collect(networks, records)
    sweep_report.report(folder, results, args)
    return 0

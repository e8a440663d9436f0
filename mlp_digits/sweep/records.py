"""A stack's files: which process trains which networks, their checkpoints, their records.

    stacks/stackI/split.json       the networks of each process, written when the stack starts
    stacks/stackI/[rankR/]last.ckpt  each process's checkpoint of its networks
    stacks/stackI/records.pt       every network's record, written by rank 0 when it is done

A stack is done when its ``records.pt`` holds every one of its networks; ``plan_stack`` says
what a resumed sweep does with a stack that is not.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from mlp_digits.sweep.grid import Network
from mlp_digits.sweep.processes import Refused
from mlp_digits.sweep.stack import StackedMLP

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
        print(
            f"{label}: its processes saved different steps ({steps}); it starts again", flush=True
        )
        for path in saved:
            path.unlink(missing_ok=True)
        return fresh
    return begun


def write_split(stack_dir: Path, split: list[list[int]]) -> None:
    (stack_dir / SPLIT_FILE).write_text(json.dumps({"processes": len(split), "networks": split}))


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

    def save(self, stack_dir: Path) -> None:
        """Rank 0's: written whole or not at all, so the stack is done when the file is there."""
        torch.save(self.gathered, stack_dir / f"{RECORDS_FILE}.partial")
        os.replace(stack_dir / f"{RECORDS_FILE}.partial", stack_dir / RECORDS_FILE)


def load_stack_records(stack_dir: Path, nets: list[Network] | None = None) -> list[dict] | None:
    """The stack's records, None before it is done; with ``nets``, None unless the records
    hold exactly the stack's networks."""
    path = stack_dir / RECORDS_FILE
    if not path.is_file():
        return None
    records = torch.load(path, weights_only=True)
    held = sorted(k for record in records for k in record["networks"])
    if not records or (nets is not None and held != sorted(n.index for n in nets)):
        return None
    return records

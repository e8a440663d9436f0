"""A sweep on several processes: how they start, agree, and notice that one is gone.

Each process trains its own share of every stack's networks (``records.split_networks``),
with its own DDP (``SplitDDP``): nothing of one network crosses to another process. What
they do share: the sweep's folder and plan, chosen by rank 0 (``agreed``), the memory check
(``all_pass``), and at the end of a stack every network's record (``records.ShareRecords``);
once every stack is trained they part (``part``), and rank 0 reports alone.
"""

from __future__ import annotations

import logging
import sys
import warnings
from argparse import Namespace
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NoReturn

import lightning as L
import torch
from lightning.fabric.strategies import DDPStrategy as FabricDDPStrategy
from lightning.pytorch.strategies import DDPStrategy

from mlp_digits import cli
from mlp_digits.data import DataError
from mlp_digits.lightning.checkpoint import one_line

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
    """What the sweep cannot do as asked: one line, exit status 2."""


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
    starting(fabric, fabric.launch)
    return fabric


def starting(fabric: L.Fabric, collective: Callable[[], Any]) -> Any:
    """``collective()`` while the sweep starts; another process gone is ``PeersLost``."""
    try:
        return collective()
    except Exception as e:
        if not lost_peer(e):
            raise
        raise peers_lost(e, "starting", fabric.global_rank, fabric.world_size) from None


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
        value, error = starting(fabric, lambda: fabric.broadcast((value, error), src=0))
    if error is not None:
        end_every_process(fabric, error)
    return value


def all_pass(fabric: L.Fabric | None, check: Callable[[], Refused | None]) -> None:
    """``check()`` in every process, each of its own device: the first process's refusal
    ends every process, rank 0 alone saying it."""
    refusal = check()
    if fabric is not None:
        refusals = [None] * fabric.world_size
        starting(fabric, lambda: torch.distributed.all_gather_object(refusals, refusal))
        refusal = next((r for r in refusals if r is not None), None)
    if refusal is not None:
        end_every_process(fabric, refusal)


def part(fabric: L.Fabric | None) -> None:
    """Once every stack is trained, the processes have nothing more to share: the group goes,
    so that what rank 0 does next (the report, the export's own Trainer and metrics) runs as
    in one process, waiting for no other."""
    if fabric is not None and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def end_every_process(fabric: L.Fabric | None, error: DataError | Refused) -> NoReturn:
    """Every process exits (2 for a refusal, 1 for the data); rank 0 says why in one line."""
    status = 2 if isinstance(error, Refused) else 1
    if fabric is not None and fabric.global_rank != 0:
        raise SystemExit(status)
    if status == 2:
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    raise error

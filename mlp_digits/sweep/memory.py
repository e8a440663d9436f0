"""Does the sweep fit? Its memory against what each process's device has free.

Stacks train one after another, so what a process needs is its share of the largest stack,
plus the data. Every process asks its own device only, once the processes have started: a
GPU's free memory is its own (asking another GPU would open a CUDA context there, hundreds
of MB that its own process then lacks), and on the CPU the processes of one machine share
its memory, so each counts them all. The first process short of memory ends them all,
rank 0 saying it in one line (``processes.all_pass``).
"""

from __future__ import annotations

from argparse import Namespace

import lightning as L
import torch

from mlp_digits import cli
from mlp_digits.sweep.grid import Network
from mlp_digits.sweep.processes import Refused, all_pass
from mlp_digits.sweep.stack import stack_bytes

DATA_BYTES = 70_000 * 784 * 2  # uint8 images, plus float32 while they load


def sweep_bytes(stacks: list[list[Network]], precision: str, world_size: int) -> int:
    """One process's memory: its share of the largest stack, plus the data."""
    dtype_bytes = 8 if precision == "64" else 4
    largest = max(
        stack_bytes(
            s[0].config.sizes, -(-len(s) // world_size), s[0].config.batch_size, dtype_bytes
        )
        for s in stacks
    )
    return largest + DATA_BYTES


def available_bytes(device: torch.device) -> int:
    """Free memory of a GPU, or available memory of this machine for the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def process_device(args: Namespace, fabric: L.Fabric | None) -> torch.device:
    """This process's device: Fabric's with several processes, else the Trainer's (GPU 0)."""
    if fabric is not None:
        return fabric.device
    gpu = args.accelerator == "gpu" or (args.accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda", 0) if gpu else torch.device("cpu")


def need_bytes(args: Namespace, stacks: list[list[Network]], device: torch.device) -> int:
    """What the processes on ``device`` need: one process a GPU, all of this machine's on
    the CPU."""
    world = cli.processes(args)
    sharing = 1 if device.type == "cuda" else world // args.num_nodes
    return sharing * sweep_bytes(stacks, str(args.precision), world)


def shortfall(args: Namespace, stacks: list[list[Network]], device: torch.device) -> Refused | None:
    """A refusal if ``device`` has less memory free than the sweep needs there."""
    need, have = need_bytes(args, stacks, device), available_bytes(device)
    if need <= have:
        return None
    return Refused(
        f"the sweep needs about {need / 2**20:,.0f} MB on {device}, more than the "
        f"{have / 2**20:,.0f} MB free: use fewer seeds or values, or more --devices"
    )


def check_memory(args: Namespace, stacks: list[list[Network]], fabric: L.Fabric | None) -> None:
    """Every process checks its own device; one short of memory ends the sweep (exit 2)."""
    all_pass(fabric, lambda: shortfall(args, stacks, process_device(args, fabric)))

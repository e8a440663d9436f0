"""The checks of the flags that need more than one flag, or the machine (each failure is one
line and exit 2), and ``run``: a data problem is one line and exit 1."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from mlp_digits.config import (
    lr_problem,
)


def check_accelerator(parser: argparse.ArgumentParser, accelerator: str) -> None:
    """--accelerator gpu on a machine without one: one line, exit 2 (in every script)."""
    if accelerator != "gpu":
        return
    import torch

    if not torch.cuda.is_available():
        parser.error("--accelerator gpu: this machine has no CUDA GPU; use --accelerator cpu")


def check_train_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks of train.py's flags that need more than one flag, or the machine; each failure
    is parser.error (exit 2)."""
    problem = lr_problem(args.lr, args.precision)
    if problem:
        parser.error(problem)
    check_device_args(parser, args)


def check_device_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--accelerator, --strategy, --devices against this machine and Lightning (else exit 2)."""
    check_accelerator(parser, args.accelerator)
    if args.devices != "auto" and not (args.devices.isdigit() and int(args.devices) >= 1):
        parser.error(f"--devices {args.devices}: give a number of devices (1, 2, ...) or auto")
    import torch
    from lightning.fabric.plugins.environments import TorchElasticEnvironment
    from lightning.pytorch.strategies import StrategyRegistry

    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if args.strategy not in strategies:
        parser.error(f"--strategy {args.strategy} is not one of: {', '.join(strategies)}")
    gpus = torch.cuda.device_count() if uses_gpu(args.accelerator) else None
    if gpus is not None and args.devices.isdigit() and int(args.devices) > gpus:
        parser.error(
            f"--devices {args.devices}: this machine has {gpus} GPU{'s' * (gpus != 1)}; "
            f"give --devices {gpus} or fewer"
        )
    if TorchElasticEnvironment.detect():  # torchrun started this process, and the others
        started, per_node = int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_WORLD_SIZE"])
        if processes(args) != started:
            parser.error(
                f"--devices {args.devices} --num-nodes {args.num_nodes}: torchrun started "
                f"{started} processes, {per_node} per node; give --devices {per_node} "
                f"--num-nodes {started // per_node}"
            )


def uses_gpu(accelerator: str) -> bool:
    """Whether ``--accelerator`` means the GPU on this machine (auto: if there is one)."""
    import torch

    return accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())


def processes(args: argparse.Namespace) -> int:
    """The run's processes: --devices on each of --num-nodes machines (Lightning's "auto"
    devices: every GPU, or one process on the CPU)."""
    if str(args.devices).isdigit():
        devices = int(args.devices)
    else:
        import torch

        devices = torch.cuda.device_count() if uses_gpu(args.accelerator) else 1
    return devices * args.num_nodes


def run(main: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Call ``main(args)``; a data problem becomes one line on stderr and exit status 1.

    A reader that stops early (``| head -2``) closes the pipe: that ends the output quietly,
    as it does for any command-line tool, not in a BrokenPipeError traceback.
    """
    from mlp_digits.data import DataError

    try:
        status = main(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here at the latest
        return status
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_status", 1)  # 2 for a flag's file of the wrong kind
    except BrokenPipeError:
        # Python flushes stdout again at exit; pointing it at devnull keeps that quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, the status of a tool the pipe stopped

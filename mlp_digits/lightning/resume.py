"""``train.py --resume``: the same run, from where it stopped, in its own folder.

The run's own ``Settings`` come back from its checkpoint, so that a bare ``--resume last``
continues the same run (its precision too), not a run with today's defaults. A flag the user
gave that the run overrides is named in one line; only ``--max-epochs``, when given, changes
the run (it counts from the run's start). A run that has trained all its epochs says so.
"""

from __future__ import annotations

import shlex
import sys
from argparse import Namespace
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from mlp_digits.config import Settings
from mlp_digits.data import DataError
from mlp_digits.lightning import runs
from mlp_digits.lightning.checkpoint import read_checkpoint


class Finished(Exception):
    """The run to resume has trained all its epochs; the message says so and what to do."""


@dataclass
class Resumed:
    """The checkpoint to go on from, and the run folder to log to (``logdir/version_N``)."""

    checkpoint: Path
    logdir: Path
    version: int


def settings_of(checkpoint: dict[str, Any], path: str | Path) -> Settings:
    """The run's ``Settings`` from one of its checkpoints. A network saved another way (a
    sweep's export, ``Trainer.save_checkpoint``) has only its own hyperparameters: the rest
    are the defaults, and the precision is its weights'."""
    if "settings" in checkpoint:
        return Settings.from_dict(checkpoint["settings"])
    weights = list(checkpoint["state_dict"].values())
    float64 = bool(weights) and weights[0].dtype == torch.float64
    try:
        network = Settings.from_dict(checkpoint.get("hyper_parameters", {}))
    except ValueError as e:
        raise DataError(f"checkpoint {path}: {e}") from None
    return network.replace(precision="64" if float64 else "32")


def run_settings_of(checkpoint: dict[str, Any], path: str | Path) -> Settings:
    """``settings_of`` for a checkpoint that ``--resume`` can go on from: train.py's own."""
    if "settings" not in checkpoint:
        raise DataError(
            f"checkpoint {path} holds a network but no run to go on with (it was not written "
            "by train.py); give a run's folder or its last.ckpt"
        )
    return settings_of(checkpoint, path)


def use_runs_data(args: Namespace, checkpoint: dict[str, Any]) -> None:
    """The run's own data folder and download setting into ``args``, unless given as flags.

    The folder is stored resolved, so it is found from any working directory; the data
    belongs to the machine rather than to the run, so ``--data-dir`` given still wins.
    """
    data = checkpoint.get("datamodule_hyper_parameters", {})
    given = getattr(args, "given", set())
    if "data_dir" not in given and data.get("data_dir"):
        args.data_dir = str(data["data_dir"])
    if "no_download" not in given and data.get("download") is False:
        args.no_download = True


def resume(args: Namespace) -> Resumed | None:
    """For ``--resume``: the run's settings into ``args``, and where it goes on; None without
    ``--resume``. Raises ``Finished`` for a run with nothing left to train."""
    if not args.resume:
        return None
    root = Path(args.logdir) / (args.name or "")
    path = runs.checkpoint_path("last" if args.resume == "last" else args.resume, root, "--resume")
    checkpoint = read_checkpoint(path)
    overridden = []
    for field in fields(Settings):
        key, value = field.name, getattr(run_settings_of(checkpoint, path), field.name)
        if key == "max_epochs" and key in args.given:
            continue
        if key in args.given and getattr(args, key) != value:
            overridden.append(f"--{key.replace('_', '-')} {getattr(args, key)} (run: {value})")
        setattr(args, key, value)
    use_runs_data(args, checkpoint)
    run = runs.run_of(path)
    done = checkpoint.get("epochs_done", 0)
    if run is not None and done >= args.max_epochs:
        raise Finished(
            f"{run} has trained all its {args.max_epochs} epochs; to train it longer, give "
            f"--max-epochs above {args.max_epochs} with --resume"
        )
    print(f"Resuming {path} at step {checkpoint.get('sgd_steps', 0)}", flush=True)
    if overridden:
        print(f"The run's own settings replace {', '.join(overridden)}", flush=True)
    if run is None:  # a checkpoint outside a run's folder: the resumed run gets a new one
        return Resumed(path, root, runs.next_version(root))
    return Resumed(path, run.parent, int(run.name.removeprefix("version_")))


def resume_command(run_dir: Path) -> str:
    """The command that goes on with the run in ``run_dir``: its settings and data folder
    come back from its checkpoint."""
    script = sys.argv[0] if Path(sys.argv[0]).name == "train.py" else "scripts/train.py"
    return shlex.join(["python", script, "--resume", str(run_dir)])

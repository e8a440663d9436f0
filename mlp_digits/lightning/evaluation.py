"""``evaluate.py``: test a saved network again, with the accuracy of every digit."""

from __future__ import annotations

from argparse import Namespace

import lightning as L
import torch

from mlp_digits.lightning import runs
from mlp_digits.lightning.callbacks import count_line
from mlp_digits.lightning.checkpoint import model_from_checkpoint, read_checkpoint
from mlp_digits.lightning.datamodule import MNISTDataModule
from mlp_digits.lightning.projector import write_evaluation_projector
from mlp_digits.lightning.resume import settings_of, use_runs_data
from mlp_digits.lightning.training import TRAINER_PRECISION, quiet_lightning


def evaluate(args: Namespace) -> int:
    """Test a saved model again: which checkpoint, the count line and a per-digit table."""
    quiet_lightning()
    path = runs.checkpoint_path(args.checkpoint, args.logdir)
    checkpoint = read_checkpoint(path)
    model = model_from_checkpoint(checkpoint, path)
    settings = settings_of(checkpoint, path)
    use_runs_data(args, checkpoint)
    datamodule = MNISTDataModule.from_settings(settings, args.data_dir, not args.no_download)
    trainer = L.Trainer(
        accelerator=args.accelerator,
        precision=TRAINER_PRECISION[settings.precision],
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    made = "the book's network2 JSON, no run behind it"  # book_format: it has no epoch
    if "epoch" in checkpoint:
        made = f"epoch {checkpoint['epoch']}, step {model.sgd_steps}"
    print(f"Checkpoint: {path} ({made})")
    if args.split == "test":
        trainer.test(model, datamodule=datamodule, verbose=False)
    else:
        trainer.validate(model, datamodule=datamodule, verbose=False)
    label = "Test" if args.split == "test" else "Validation"
    print(count_line(label, trainer.callback_metrics, args.split))
    print(per_digit_table(model.confusion_matrix))
    if args.projector:
        split = datamodule.splits[args.split]
        print(write_evaluation_projector(path, model, *split, args.split))
    return 0


def per_digit_table(confusion: torch.Tensor) -> str:
    """Rows of ``digit  correct / total  accuracy`` from a confusion matrix (true x predicted)."""
    lines = ["digit  correct /  total  accuracy"]
    for digit, row in enumerate(confusion.tolist()):
        correct, total = row[digit], sum(row)
        accuracy = f"{100 * correct / total:6.2f}%" if total else "     -"
        lines.append(f"{digit:>5}  {correct:>7} / {total:>6}  {accuracy:>8}")
    return "\n".join(lines)

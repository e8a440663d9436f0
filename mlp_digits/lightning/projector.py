"""The hidden layers in TensorBoard's PROJECTOR tab: every validation digit as a point.

Each hidden layer maps a digit to a point in as many dimensions as it has neurons (16 for the
video's network). Written as an embedding per layer, with each point's picture (a sprite) and
its label and the network's answer (metadata), PCA, t-SNE or UMAP in TensorBoard show how the
digits separate, layer by layer; colour the points by ``label`` or ``predicted``.

    hidden_activations(model, x)                      a⁽¹⁾ ... a⁽ᴸ⁻¹⁾ for pixels x
    write_projector(writer, model, x, targets, step)  one embedding per hidden layer
    write_evaluation_projector(checkpoint, model, ...) the same from evaluate.py --projector
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from mlp_digits import backprop as bp
from mlp_digits.lightning.model import DigitsMLP

SIDE = 28
# Points per embedding: enough for t-SNE to show ten clusters; TensorBoard's own sprite code
# takes about 0.4 s per layer for these, four times that for all 10,000 validation images.
MAX_IMAGES = 2_500
METADATA_HEADER = ["label", "predicted"]


@torch.no_grad()
def hidden_activations(model: DigitsMLP, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """The hidden layers' activations (m, n_l), as float32 on the CPU, and the answers (m,)."""
    weight = model.layers[0].weight
    activations, _ = bp.feedforward(
        model.weights, model.biases, x.to(weight.device, weight.dtype), model.activation
    )
    hidden = [a.float().cpu() for a in activations[1:-1]]
    return hidden, activations[-1].argmax(dim=1).cpu()


def tag(l: int) -> str:
    return f"hidden_layer_{l}"


def write_projector(
    writer: SummaryWriter,
    model: DigitsMLP,
    x: Tensor,
    targets: Tensor,
    step: int = 0,
    max_images: int = MAX_IMAGES,
) -> list[str]:
    """One embedding per hidden layer of the first ``max_images`` digits, at ``step``; returns
    the tags written (``hidden_layer_1``, ...). A network without hidden layers writes none."""
    x, targets = x[:max_images], targets[:max_images].cpu()
    hidden, predicted = hidden_activations(model, x)
    if not hidden or len(x) == 0:
        return []
    metadata = [[int(t), int(p)] for t, p in zip(targets, predicted)]
    sprites = x.detach().to("cpu", torch.float32).reshape(-1, 1, SIDE, SIDE)
    tags = []
    for l, a in enumerate(hidden, start=1):
        # add_embedding only warns about an older embedding in its folder, then mixes files
        # with it: the folder is this function's own, so it is written afresh.
        folder = Path(writer.get_logdir()) / f"{step:05}" / tag(l)
        if folder.is_dir():
            shutil.rmtree(folder)
        writer.add_embedding(
            a,
            metadata=metadata,
            label_img=sprites,
            global_step=step,
            tag=tag(l),
            metadata_header=METADATA_HEADER,
        )
        tags.append(tag(l))
    writer.flush()
    return tags


def evaluation_log_dir(checkpoint: str | os.PathLike, split: str) -> Path:
    """Where evaluate.py writes: beside the run's own logs (``version_N/projector-test``) for
    a checkpoint in a run's ``checkpoints`` folder, else beside the checkpoint."""
    path = Path(checkpoint)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return run_dir / f"projector-{split}"


def write_evaluation_projector(
    checkpoint: str | os.PathLike, model: DigitsMLP, x: Tensor, targets: Tensor, split: str
) -> str:
    """``write_projector`` into its own TensorBoard run for evaluate.py; returns the line to
    print, which says where and how to look."""
    log_dir = evaluation_log_dir(checkpoint, split)
    with SummaryWriter(log_dir=str(log_dir)) as writer:
        tags = write_projector(writer, model, x, targets)
    if not tags:
        return "Projector: the network has no hidden layer to show"
    return f"Projector: {', '.join(tags)} in {log_dir} (view: tensorboard --logdir {log_dir})"

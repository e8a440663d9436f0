"""mlp_digits.projector: the files TensorBoard's PROJECTOR tab reads, from a run and evaluate.

The projector reads ``projector_config.pbtxt`` in a run's folder, and for each embedding its
``tensors.tsv`` (one row of activations per digit), ``metadata.tsv`` (a header, then one row
per digit) and ``sprite.png`` (the digits' pictures in a square grid, row by row).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_mnist
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from torch.utils.tensorboard import SummaryWriter

from mlp_digits.cli import evaluate_parser, train_parser
from mlp_digits.data import load_mnist
from mlp_digits.lightning.evaluation import evaluate
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.lightning.projector import evaluation_log_dir, write_projector
from mlp_digits.lightning.training import train

SIDE = 28


def read_config(log_dir: Path) -> ProjectorConfig:
    return text_format.Parse((log_dir / "projector_config.pbtxt").read_text(), ProjectorConfig())


def read_embedding(log_dir: Path, info) -> tuple[np.ndarray, list[list[str]], np.ndarray]:
    """(activations (n, d), metadata rows with the header first, sprite as (H, W, 3) uint8)."""
    tensors = np.loadtxt(log_dir / info.tensor_path, delimiter="\t", ndmin=2)
    metadata = [row.split("\t") for row in (log_dir / info.metadata_path).read_text().splitlines()]
    sprite = np.asarray(Image.open(log_dir / info.sprite.image_path).convert("RGB"))
    return tensors, metadata, sprite


def reference_hidden(model: DigitsMLP, x: torch.Tensor) -> tuple[list[np.ndarray], np.ndarray]:
    """The hidden layers' activations and the answers, in float64 NumPy: σ(W a + b)."""
    a, hidden = x.double().numpy(), []
    for layer in model.layers:
        w, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
        a = 1 / (1 + np.exp(-(a @ w.T + b)))
        hidden.append(a)
    return hidden[:-1], hidden[-1].argmax(axis=1)


def sprite_tile(sprite: np.ndarray, n: int, k: int) -> np.ndarray:
    """The k-th picture of a sprite of n, in a grid of ceil(sqrt(n)) per row, gray in [0, 1]."""
    per_row = math.ceil(math.sqrt(n))
    row, col = divmod(k, per_row)
    return sprite[row * SIDE : (row + 1) * SIDE, col * SIDE : (col + 1) * SIDE, 0] / 255


def check_embeddings(
    log_dir: Path, model: DigitsMLP, x: torch.Tensor, targets: torch.Tensor, step: int
) -> None:
    """Every hidden layer's embedding holds the right activations, labels and pictures."""
    hidden, predicted = reference_hidden(model, x)
    config = read_config(log_dir)
    assert [e.tensor_name for e in config.embeddings] == [
        f"hidden_layer_{l}:{step:05}" for l in range(1, len(hidden) + 1)
    ]
    n = len(x)
    for info, expected in zip(config.embeddings, hidden):
        tensors, metadata, sprite = read_embedding(log_dir, info)
        np.testing.assert_allclose(tensors, expected, atol=1e-5, rtol=0)
        assert metadata[0] == ["label", "predicted"]
        assert [[int(v) for v in row] for row in metadata[1:]] == [
            [int(t), int(p)] for t, p in zip(targets, predicted)
        ]
        assert list(info.sprite.single_image_dim) == [SIDE, SIDE]
        side = math.ceil(math.sqrt(n)) * SIDE
        assert sprite.shape == (side, side, 3)
        for k in (0, n // 2, n - 1):
            pixels = x[k].reshape(SIDE, SIDE).numpy()
            np.testing.assert_allclose(sprite_tile(sprite, n, k), pixels, atol=1 / 255)


def digits(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 784, generator=generator), torch.randint(0, 10, (n,), generator=generator)


@pytest.mark.parametrize("sizes", [(784, 16, 16, 10), (784, 12, 7, 5, 10)])
def test_one_embedding_per_hidden_layer(tmp_path: Path, sizes: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = DigitsMLP(sizes=sizes, init="scaled")
    x, targets = digits(30)
    with SummaryWriter(tmp_path) as writer:
        tags = write_projector(writer, model, x, targets, step=7)
    assert tags == [f"hidden_layer_{l}" for l in range(1, len(sizes) - 1)]
    check_embeddings(tmp_path, model, x, targets, step=7)


def test_at_most_max_images_and_a_second_writer_replaces_the_first(tmp_path: Path) -> None:
    """As evaluate.py --projector run twice on one checkpoint: the same folders, rewritten."""
    model = DigitsMLP(init="scaled")
    x, targets = digits(40)
    with SummaryWriter(tmp_path) as writer:
        write_projector(writer, model, x[:5], targets[:5], step=3)
    with SummaryWriter(tmp_path) as writer:
        write_projector(writer, model, x, targets, step=3, max_images=20)
    check_embeddings(tmp_path, model, x[:20], targets[:20], step=3)


def test_no_hidden_layer_writes_nothing(tmp_path: Path) -> None:
    x, targets = digits(10)
    with SummaryWriter(tmp_path) as writer:
        assert write_projector(writer, DigitsMLP(sizes=(784, 10)), x, targets) == []
    assert not (tmp_path / "projector_config.pbtxt").exists()


def test_a_run_ends_with_its_validation_digits_and_evaluate_adds_the_test_digits(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = write_mnist(tmp_path / "data", n_train=300, n_test=50)
    logdir = tmp_path / "logs"
    flags = ["--data-dir", str(data), "--no-download", "--val-size", "60", "--logdir", str(logdir)]
    train_args = train_parser().parse_args([*flags, "--max-epochs", "1", "--accelerator", "cpu"])
    assert train(train_args) == 0
    run_dir = logdir / "version_0"
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    model = DigitsMLP.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    x, targets = load_mnist(data, "train")
    step = int(read_config(run_dir).embeddings[0].tensor_name.split(":")[1])
    check_embeddings(run_dir, model, x[-60:], targets[-60:], step)  # the book's split: the last

    args = evaluate_parser().parse_args(
        ["--checkpoint", str(checkpoint), "--data-dir", str(data), "--no-download", "--projector"]
    )
    assert evaluate(args) == 0
    log_dir = evaluation_log_dir(checkpoint, "test")
    assert log_dir == run_dir / "projector-test"
    assert f"Projector: hidden_layer_1, hidden_layer_2 in {log_dir}" in capsys.readouterr().out
    x, targets = load_mnist(data, "test")
    check_embeddings(log_dir, model, x, targets, step=0)

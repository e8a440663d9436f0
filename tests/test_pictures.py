"""The TensorBoard pictures: weight tiles, misclassified digits, confusion figure, callback.

Pixel-exact checks on small hand-made tensors, then one short real Lightning run whose
event file must hold every image and histogram tag.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import write_mnist
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor

from mlp_digits import cli
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.lightning.pictures import (
    CELL,
    LEFT,
    MISCLASSIFIED_PER_ROW,
    NEGATIVE,
    NEUTRAL,
    PADDING,
    POSITIVE,
    SIDE,
    TILE_HEIGHT,
    TILE_WIDTH,
    TOP,
    WEIGHT_ZOOM,
    ConfusionPicture,
    TensorBoardPictures,
    confusion_title,
    grid_size,
    misclassified_grid,
    weight_tiles,
    write_histogram,
)
from mlp_digits.lightning.training import build_run

IMAGE_TAGS = {"images/first_layer_weights", "images/misclassified", "images/confusion_matrix"}
PARAMETERS = [f"layers.{i}.{kind}" for i in range(3) for kind in ("weight", "bias")]


def pixel(grid: Tensor, tile: int, index: int, nrow: int) -> Tensor:
    """The RGB of pixel ``index`` (0..783) of weight tile ``tile`` in a make_grid grid."""
    row, col = divmod(tile, nrow)
    y = PADDING + row * (SIDE + PADDING) + index // SIDE
    x = PADDING + col * (SIDE + PADDING) + index % SIDE
    return grid[:, y, x]


def rgb(*values: float) -> Tensor:
    return torch.tensor(values)


# --- weight_tiles -------------------------------------------------------------------------


def test_16_tiles_make_a_4_by_4_grid_of_the_make_grid_size() -> None:
    tiles = weight_tiles(torch.randn(16, 784))
    assert tiles.shape == (3, *grid_size(16, SIDE, SIDE, nrow=4))
    assert tiles.shape == (3, 4 * 28 + 5 * 2, 4 * 28 + 5 * 2) == (3, 122, 122)
    assert tiles.dtype == torch.float32
    assert tiles.min() >= 0 and tiles.max() <= 1


def test_nrow_sets_tiles_per_row() -> None:
    assert weight_tiles(torch.randn(16, 784), nrow=8).shape == (3, 2 * 30 + 2, 8 * 30 + 2)
    assert weight_tiles(torch.randn(30, 784)).shape == (3, *grid_size(30, SIDE, SIDE, nrow=6))


def test_zero_weight_is_exactly_the_neutral_colour() -> None:
    weight = torch.randn(16, 784, generator=torch.Generator().manual_seed(0))
    weight[5, 300] = 0.0
    assert torch.equal(pixel(weight_tiles(weight), 5, 300, nrow=4), rgb(*NEUTRAL))


def test_all_zero_weights_are_all_neutral_not_nan() -> None:
    tiles = weight_tiles(torch.zeros(16, 784))
    assert torch.equal(pixel(tiles, 0, 0, 4), rgb(*NEUTRAL))
    assert torch.equal(pixel(tiles, 15, 783, 4), rgb(*NEUTRAL))
    assert not tiles.isnan().any()


def test_positive_and_negative_weights_get_the_two_end_colours() -> None:
    weight = torch.zeros(16, 784)
    weight[0, 10], weight[0, 11], weight[1, 12], weight[1, 13] = 2.0, -2.0, 1.0, -1.0
    tiles = weight_tiles(weight)
    assert POSITIVE != NEGATIVE
    assert torch.equal(pixel(tiles, 0, 10, 4), rgb(*POSITIVE))  # +max|w|: full blue
    assert torch.equal(pixel(tiles, 0, 11, 4), rgb(*NEGATIVE))  # -max|w|: full red
    assert torch.equal(pixel(tiles, 1, 12, 4), rgb(0.5, 0.5, 1.0))  # half way to blue
    assert torch.equal(pixel(tiles, 1, 13, 4), rgb(1.0, 0.5, 0.5))  # half way to red


def test_scale_is_symmetric_and_shared_by_all_tiles() -> None:
    # The largest magnitude is negative and in tile 3; every tile is scaled by it.
    weight = torch.zeros(16, 784)
    weight[3, 0], weight[7, 0], weight[9, 0], weight[9, 1] = -4.0, 2.0, 2.0, -2.0
    tiles = weight_tiles(weight)
    assert torch.equal(pixel(tiles, 3, 0, 4), rgb(*NEGATIVE))
    # +2 is half of max|w| = 4 in either tile, although it is the largest value of both
    assert torch.equal(pixel(tiles, 7, 0, 4), rgb(0.5, 0.5, 1.0))
    assert torch.equal(pixel(tiles, 9, 0, 4), pixel(tiles, 7, 0, 4))
    assert torch.equal(pixel(tiles, 9, 1, 4), rgb(1.0, 0.5, 0.5))


def test_padding_is_not_a_colour_of_the_map() -> None:
    tiles = weight_tiles(torch.randn(16, 784))
    border = tiles[:, 0, 0]
    assert border[0] == border[1] == border[2] and 0 < border[0] < 1


# --- misclassified_grid -------------------------------------------------------------------


def digits(n: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 784, generator=generator), torch.arange(n) % 10


def test_no_misclassified_digit_gives_none() -> None:
    x, targets = digits(50)
    assert misclassified_grid(x, targets, F.one_hot(targets, 10).float()) is None


@pytest.mark.parametrize("n_wrong, n_tiles", [(1, 1), (5, 5), (9, 9), (40, 32)])
def test_grid_holds_one_tile_per_misclassified_digit_up_to_32(n_wrong: int, n_tiles: int) -> None:
    x, targets = digits(60)
    predicted = targets.clone()
    predicted[:n_wrong] = (targets[:n_wrong] + 1) % 10
    grid = misclassified_grid(x, targets, F.one_hot(predicted, 10).float())
    expected = grid_size(n_tiles, TILE_HEIGHT, TILE_WIDTH, nrow=MISCLASSIFIED_PER_ROW)
    assert grid.shape == (3, *expected)
    assert grid.min() >= 0 and grid.max() <= 1


def test_tiles_show_the_misclassified_digits_themselves() -> None:
    x, targets = digits(20)
    predicted = targets.clone()
    predicted[[3, 7]] = (targets[[3, 7]] + 4) % 10
    grid = misclassified_grid(x, targets, F.one_hot(predicted, 10).float())
    zoom = TILE_WIDTH // SIDE
    for tile, index in enumerate([3, 7]):
        left = PADDING + tile * (TILE_WIDTH + PADDING)
        shown = grid[0, PADDING : PADDING + SIDE * zoom : zoom, left : left + SIDE * zoom : zoom]
        assert torch.allclose(shown, x[index].reshape(SIDE, SIDE), atol=1 / 255)
        label = grid[0, PADDING + SIDE * zoom : PADDING + TILE_HEIGHT, left : left + TILE_WIDTH]
        assert label.max() > 0.5  # the "true → predicted" text is drawn


# --- the confusion picture ----------------------------------------------------------------


def a_confusion(seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 20, (10, 10), generator=generator) + torch.diag(
        torch.randint(900, 1100, (10,), generator=generator)
    )


def cell(picture: np.ndarray, true: int, predicted: int) -> np.ndarray:
    top, left = TOP + true * CELL, LEFT + predicted * CELL
    return picture[top : top + CELL, left : left + CELL]


def test_each_cell_is_coloured_by_its_count_on_the_blues_map() -> None:
    confusion = a_confusion(2)
    picture = ConfusionPicture(10).draw(confusion)
    blues = matplotlib.colormaps["Blues"]
    peak = int(confusion.max())
    for true in range(10):
        for predicted in range(10):
            corner = cell(picture, true, predicted)[2, 2]  # away from the count's text
            expected = np.array(blues(int(confusion[true, predicted]) / peak)[:3]) * 255
            assert np.abs(corner.astype(float) - expected).max() <= 2


def test_every_count_is_written_in_its_cell_in_a_contrasting_ink() -> None:
    confusion = a_confusion(2)
    picture = ConfusionPicture(10).draw(confusion)
    for true in range(10):
        for predicted in range(10):
            pixels = cell(picture, true, predicted).reshape(-1, 3).astype(int)
            background = pixels[0]
            ink = np.abs(pixels - background).sum(axis=1) > 200  # the count's strokes
            assert ink.sum() >= 5, (true, predicted)
            dark_cell = true == predicted  # the diagonal holds the largest counts
            assert (pixels[ink].mean() > 128) == dark_cell  # white on dark, black on light


def test_title_is_the_accuracy_with_its_counts() -> None:
    confusion = a_confusion(2)
    correct, total = confusion.trace().item(), confusion.sum().item()
    assert confusion_title(confusion) == (
        f"accuracy {100 * correct / total:.2f}% ({correct} / {total})"
    )
    assert confusion_title(torch.zeros(10, 10, dtype=torch.long)) == "no images"


def test_a_picture_shows_its_own_matrix_only_whatever_was_drawn_before() -> None:
    first, second = a_confusion(3), a_confusion(4)
    callback = TensorBoardPictures()
    callback.confusion_picture(first)
    redrawn = callback.confusion_picture(second)
    assert redrawn.dtype == np.uint8
    assert np.array_equal(redrawn, ConfusionPicture(10).draw(second))
    assert not np.array_equal(redrawn, ConfusionPicture(10).draw(first))


# --- TensorBoardPictures ------------------------------------------------------------------


def fake_trainer(**overrides) -> SimpleNamespace:
    fields = dict(
        sanity_checking=False, is_global_zero=True, logger=None, current_epoch=0, max_epochs=10
    )
    return SimpleNamespace(**{**fields, **overrides})


def val_trainer(x: Tensor, targets: Tensor) -> SimpleNamespace:
    return SimpleNamespace(datamodule=SimpleNamespace(splits={"val": (x, targets)}))


@pytest.mark.parametrize("wrong", [None, [10, 2500, 4999]])
def test_callback_finds_the_same_misclassified_digits_as_a_full_pass(wrong) -> None:
    """Stopping early at 32 misclassified digits, or finding fewer, changes nothing."""
    torch.manual_seed(0)
    model = DigitsMLP()
    x = torch.rand(5000, 784)
    with torch.inference_mode():
        outputs = model(x)
    if wrong is None:  # random targets: most digits are misclassified
        targets = torch.randint(0, 10, (5000,))
    else:  # right everywhere but at three digits in different slices
        targets = outputs.argmax(dim=1)
        targets[wrong] = (targets[wrong] + 1) % 10
    found = TensorBoardPictures.misclassified(val_trainer(x, targets), model)
    assert torch.equal(found, misclassified_grid(x, targets, outputs))


def test_every_n_epochs_counts_from_epoch_0_and_always_includes_the_last() -> None:
    callback = TensorBoardPictures(every_n_epochs=3)
    due = [callback.due(fake_trainer(current_epoch=e, max_epochs=8)) for e in range(8)]
    assert [e for e, d in enumerate(due) if d] == [0, 3, 6, 7]
    with pytest.raises(ValueError):
        TensorBoardPictures(every_n_epochs=0)


def test_nothing_is_written_without_a_tensorboard_logger(monkeypatch) -> None:
    callback = TensorBoardPictures()
    monkeypatch.setattr(callback, "write", lambda *a: pytest.fail("wrote without TensorBoard"))
    callback.on_validation_end(fake_trainer(logger=None), pl_module=None)
    callback.on_validation_end(fake_trainer(logger=object()), pl_module=None)


def test_real_run_writes_every_image_and_histogram_at_each_epoch(tmp_path: Path) -> None:
    data_dir = write_mnist(tmp_path / "data")
    args = cli.train_parser().parse_args(
        [
            *("--data-dir", str(data_dir), "--val-size", "100", "--max-epochs", "2"),
            *("--logdir", str(tmp_path / "logs"), "--no-download", "--accelerator", "cpu"),
            *("--lr", "0.1"),  # too small to learn in 2 epochs: there are misclassified digits
        ]
    )
    run = build_run(args)  # --images-every 1 by default
    assert sum(isinstance(c, TensorBoardPictures) for c in run.trainer.callbacks) == 1
    run.trainer.fit(run.model, datamodule=run.datamodule)

    events = EventAccumulator(run.logger.log_dir, size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    assert set(tags["images"]) == IMAGE_TAGS
    histograms = {f"{kind}/{name}" for kind in ("weights", "gradients") for name in PARAMETERS}
    assert set(tags["histograms"]) == histograms
    # one record per epoch, at the global step in SGD updates: 500 images / batch 10 = 50
    for tag in IMAGE_TAGS:
        assert [e.step for e in events.Images(tag)] == [50, 100]
    for tag in histograms:
        assert [e.step for e in events.Histograms(tag)] == [50, 100]
    weights = events.Images("images/first_layer_weights")[0]
    side = SIDE * WEIGHT_ZOOM
    assert (weights.height, weights.width) == grid_size(16, side, side, nrow=4)
    bias = events.Histograms("weights/layers.2.bias")[-1].histogram_value
    assert bias.num == 10
    assert bias.sum == pytest.approx(run.model.layers[2].bias.sum().item(), rel=1e-5, abs=1e-6)
    # Lightning sets .grad to None before validating: these are the callback's own copies
    gradient = events.Histograms("gradients/layers.0.weight")[-1].histogram_value
    assert gradient.num == 16 * 784 and gradient.sum_squares > 0


class RecordingWriter:
    def __init__(self) -> None:
        self.records: dict[str, dict] = {}

    def add_histogram_raw(self, tag: str, **record) -> None:
        self.records[tag] = record


def test_histogram_record_summarises_the_values() -> None:
    writer = RecordingWriter()
    values = torch.tensor([[-1.0, 0.0, 0.5], [2.0, 2.0, 3.0]])
    write_histogram(writer, "h", values, step=7, bins=4)
    record = writer.records["h"]
    assert (record["min"], record["max"], record["num"]) == (-1.0, 3.0, 6)
    assert record["sum"] == pytest.approx(6.5) and record["sum_squares"] == pytest.approx(18.25)
    assert record["bucket_limits"] == [0.0, 1.0, 2.0, 3.0]  # right edges of 4 equal buckets
    assert record["bucket_counts"] == [1.0, 2.0, 0.0, 3.0]
    assert record["global_step"] == 7


def test_histogram_of_a_constant_tensor_has_one_full_bucket() -> None:
    writer = RecordingWriter()
    write_histogram(writer, "h", torch.full((5,), 0.25), step=0)
    record = writer.records["h"]
    assert (record["min"], record["max"]) == (0.25, 0.25)
    assert sum(record["bucket_counts"]) == 5 and max(record["bucket_counts"]) == 5

"""Pictures of what the network learned, for TensorBoard's IMAGES and HISTOGRAMS tabs.

The videos ask what the first hidden layer "looks for"; its 16 weight vectors, each shown
as a 28x28 image, are the answer. Next to them: the digits the network gets wrong, the
confusion matrix, and histograms of every weight, bias and last gradient.

    weight_tiles(weight)                  first-layer weight vectors as one coloured grid
    misclassified_grid(x, targets, out)   wrong digits, each labelled "7 → 1"
    ConfusionPicture(n).draw(confusion)   the 10x10 matrix with its counts, as a picture
    write_histogram(writer, tag, values)  add_histogram's record, ten times cheaper
    TensorBoardPictures(every_n_epochs)   a Lightning callback writing all of these
"""

from __future__ import annotations

import math

import lightning as L
import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

SIDE = 28  # MNIST images are SIDE x SIDE
PADDING = 2  # pixels between tiles of a grid
PAD_VALUE = 0.75  # light gray: not a colour of the weight map, so tile edges stay visible
POSITIVE = (0.0, 0.0, 1.0)  # blue: a lit pixel here raises the neuron's weighted sum
NEGATIVE = (1.0, 0.0, 0.0)  # red: a lit pixel here lowers it
NEUTRAL = (1.0, 1.0, 1.0)  # white: the pixel does not matter
# TensorBoard shows a picture as wide as its card, and a card is at least SHOWN_WIDTH pixels
# wide (its time-series grid: minmax(335px, 1fr)); a wider picture is shrunk to fit. So the
# text in a picture is sized against the picture's width: FONT_SIZE in pictures about
# SHOWN_WIDTH wide (the mistakes), CONFUSION_FONT in the confusion matrix (twice as wide: its
# cells hold four digits), where 11-pixel text in 400-pixel pictures shrank until "95" read
# as "35".
SHOWN_WIDTH = 335
FONT_SIZE = 22
WEIGHT_ZOOM = 4  # first-layer weights: each drawn 4x4, a 4x4 grid of 112-pixel tiles
MAX_MISCLASSIFIED = 32
ZOOM = 3  # misclassified digits are drawn ZOOM times larger, so their labels are readable
LABEL_HEIGHT = 28  # pixels of the text strip under each misclassified digit
TILE_HEIGHT, TILE_WIDTH = SIDE * ZOOM + LABEL_HEIGHT, SIDE * ZOOM
MISCLASSIFIED_PER_ROW = 4  # 4 x 86 pixels: about SHOWN_WIDTH, shown nearly at full size
EVAL_SLICE = 2000  # validation images per forward pass when looking for misclassified ones
HISTOGRAM_BINS = 30
ARROW_LENGTH, ARROW_GAP, ARROW_HEAD = 18, 5, 6  # pixels of the "→" between the two digits


def grid_size(n: int, tile_height: int, tile_width: int, nrow: int) -> tuple[int, int]:
    """(H, W) of ``tile_grid`` for n tiles, ``nrow`` per row, PADDING around every tile."""
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    return rows * (tile_height + PADDING) + PADDING, cols * (tile_width + PADDING) + PADDING


def tile_grid(tiles: Tensor, nrow: int) -> Tensor:
    """``make_grid`` of tiles (n, 3, h, w), padded the same way for any n.

    ``make_grid`` returns a single tile as it is, without its border; we add it back.
    """
    if len(tiles) == 1:
        return F.pad(tiles[0], (PADDING,) * 4, value=PAD_VALUE)
    return make_grid(tiles, nrow=nrow, padding=PADDING, pad_value=PAD_VALUE)


def diverging_colors(values: Tensor) -> Tensor:
    """RGB (3, *values.shape) for values in [-1, 1]: red at -1, white at 0, blue at +1.

    Linear in each half, so 0 is exactly white and equal magnitudes are equally intense.
    """
    v = values.clamp(-1.0, 1.0)
    pos, neg = v.clamp(min=0.0), (-v).clamp(min=0.0)
    # From white (1, 1, 1) at zero, each channel fades linearly toward the end colour.
    return torch.stack([1 - pos * (1 - p) - neg * (1 - n) for p, n in zip(POSITIVE, NEGATIVE)])


def weight_tiles(weight: Tensor, nrow: int | None = None, zoom: int = 1) -> Tensor:
    """The rows of ``weight`` (n_hidden, 784) as 28x28 tiles in one (3, H, W) grid in [0, 1].

    All tiles share one symmetric scale, ±max|w|, so that colours compare across neurons
    and a weight's sign, not the tile's range, decides its colour. ``nrow`` tiles per row;
    by default a square-ish grid (4x4 for 16 neurons). Each weight is ``zoom`` x ``zoom``
    pixels.
    """
    w = weight.detach().to("cpu", torch.float32).reshape(-1, SIDE, SIDE)
    scale = w.abs().max().item()
    rgb = diverging_colors(w / (scale if scale > 0 else 1.0))  # (3, n, 28, 28)
    rgb = rgb.repeat_interleave(zoom, dim=2).repeat_interleave(zoom, dim=3)
    nrow = nrow or math.ceil(math.sqrt(len(w)))
    return tile_grid(rgb.transpose(0, 1), nrow)


def draw_label(
    draw: ImageDraw.ImageDraw, true: int, predicted: int, top: int, font: ImageFont.FreeTypeFont
) -> None:
    """Centre "7 → 1" (true 7, predicted 1) in the strip from ``top`` down.

    The arrow is drawn as lines: PIL's built-in font has no glyph for "→".
    """
    first, second = str(true), str(predicted)
    (l1, t1, r1, b1), (l2, _, r2, _) = (
        draw.textbbox((0, 0), s, font=font) for s in (first, second)
    )
    width = (r1 - l1) + ARROW_GAP + ARROW_LENGTH + ARROW_GAP + (r2 - l2)
    x = (TILE_WIDTH - width) // 2
    y = top + (LABEL_HEIGHT - (b1 - t1)) // 2 - t1
    draw.text((x - l1, y), first, fill=255, font=font)
    start = x + (r1 - l1) + ARROW_GAP
    tip, middle = start + ARROW_LENGTH - 1, y + (t1 + b1) // 2
    draw.line([(start, middle), (tip, middle)], fill=255, width=2)
    back = tip - ARROW_HEAD
    draw.polygon(
        [(tip, middle), (back, middle - ARROW_HEAD), (back, middle + ARROW_HEAD)], fill=255
    )
    draw.text((tip + 1 + ARROW_GAP - l2, y), second, fill=255, font=font)


def labelled_digit(
    pixels: Tensor, true: int, predicted: int, font: ImageFont.FreeTypeFont
) -> Tensor:
    """One misclassified digit, ZOOM times larger, white on black above its "7 → 1" label."""
    digit = (pixels.reshape(SIDE, SIDE).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    tile = Image.new("L", (TILE_WIDTH, TILE_HEIGHT), 0)
    tile.paste(Image.fromarray(digit).resize((TILE_WIDTH, SIDE * ZOOM), Image.NEAREST))
    draw_label(ImageDraw.Draw(tile), true, predicted, top=SIDE * ZOOM, font=font)
    return torch.from_numpy(np.asarray(tile, dtype=np.float32) / 255.0).expand(3, -1, -1)


def misclassified_grid(
    x: Tensor, targets: Tensor, outputs: Tensor, max_images: int = MAX_MISCLASSIFIED
) -> Tensor | None:
    """The first ``max_images`` digits whose output's largest activation is not the target.

    x: (n, 784) pixels in [0, 1]; outputs: (n, 10) activations. Returns a (3, H, W) grid in
    [0, 1], MISCLASSIFIED_PER_ROW tiles per row, or None when every digit is right.
    """
    predicted = outputs.detach().argmax(dim=1).cpu()
    targets = targets.detach().cpu()
    wrong = (predicted != targets).nonzero().flatten()[:max_images]
    if len(wrong) == 0:
        return None
    pixels = x.detach()[wrong.to(x.device)].to("cpu", torch.float32)
    font = ImageFont.load_default(size=FONT_SIZE)  # once: each load parses the font again
    tiles = [
        labelled_digit(p, int(targets[i]), int(predicted[i]), font) for p, i in zip(pixels, wrong)
    ]
    return tile_grid(torch.stack(tiles), MISCLASSIFIED_PER_ROW)


CELL = 62  # pixels per cell of the confusion picture: room for "1088" at CONFUSION_FONT
CONFUSION_FONT = 25  # its counts: the largest that leaves them 8 pixels tall at SHOWN_WIDTH
LEFT, TOP, BOTTOM = 58, 38, 62  # its margins: tick labels and axis names, title, ticks
LABEL_STRIP = 28  # the rotated "true digit"
INK, PAPER = (0, 0, 0), (255, 255, 255)


def confusion_title(confusion: Tensor) -> str:
    """``accuracy 97.12% (9712 / 10000)``: the trace over the total, or ``no images``."""
    correct, total = int(confusion.trace()), int(confusion.sum())
    return f"accuracy {100 * correct / total:.2f}% ({correct} / {total})" if total else "no images"


class ConfusionPicture:
    """The confusion matrix as RGB (H, W, 3) uint8: rows the true digit, columns the predicted
    one, each cell coloured by its count (matplotlib's "Blues", from 0 to the largest count)
    with the count written in it, white on dark cells and black on light ones.

    Drawn with Pillow on a copy of a background made once (tick labels, axis names): a few
    milliseconds a matrix, where a matplotlib figure took ~70 ms, and it is drawn after every
    validation epoch.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.font = ImageFont.load_default(size=CONFUSION_FONT)
        self.colors = (np.asarray(matplotlib.colormaps["Blues"](np.linspace(0, 1, 256)))[:, :3]
                       * 255).round().astype(np.uint8)  # fmt: skip
        side = n * CELL
        self.background = Image.new("RGB", (LEFT + side + 8, TOP + side + BOTTOM), PAPER)
        draw = ImageDraw.Draw(self.background)
        for k in range(n):
            middle = LEFT + k * CELL + CELL // 2, TOP + k * CELL + CELL // 2
            draw.text((middle[0], TOP + side + 4), str(k), fill=INK, font=self.font, anchor="mt")
            draw.text((LEFT - 6, middle[1]), str(k), fill=INK, font=self.font, anchor="rm")
        draw.text((LEFT + side // 2, TOP + side + 32), "predicted digit", INK, self.font, "mt")
        label = Image.new("RGB", (side, LABEL_STRIP), PAPER)
        ImageDraw.Draw(label).text((side // 2, 0), "true digit", INK, self.font, "mt")
        self.background.paste(label.rotate(90, expand=True), (4, TOP))

    def cell_color(self, count: int, peak: int) -> tuple[int, int, int]:
        return tuple(int(c) for c in self.colors[round(255 * count / peak)])

    def draw(self, confusion: Tensor) -> np.ndarray:
        counts = confusion.detach().cpu().to(torch.int64).tolist()
        peak = max(max(map(max, counts)), 1)
        picture = self.background.copy()
        draw = ImageDraw.Draw(picture)
        for true, row in enumerate(counts):
            for predicted, count in enumerate(row):
                left, top = LEFT + predicted * CELL, TOP + true * CELL
                draw.rectangle([left, top, left + CELL - 1, top + CELL - 1],
                               fill=self.cell_color(count, peak))  # fmt: skip
                ink = PAPER if count > peak / 2 else INK
                middle = (left + CELL // 2, top + CELL // 2)
                draw.text(middle, str(count), fill=ink, font=self.font, anchor="mm")
        side = self.n * CELL
        draw.text((LEFT + side // 2, TOP - 8), confusion_title(confusion), INK, self.font, "ms")
        return np.asarray(picture)


def write_histogram(
    writer: SummaryWriter, tag: str, values: Tensor, step: int, bins: int = HISTOGRAM_BINS
) -> None:
    """``writer.add_histogram`` of ``values`` in ``bins`` equal buckets, counted by torch.

    The same record as ``add_histogram``, at a tenth of its cost: that one counts in NumPy
    into TensorFlow's ~1500 exponential buckets, which TensorBoard re-buckets to ~30 anyway.
    """
    v = values.detach().flatten().to("cpu", torch.float64)
    smallest, largest = low, high = v.min().item(), v.max().item()
    if low == high:  # one value: a bucket of width 1 around it
        low, high = low - 0.5, high + 0.5
    writer.add_histogram_raw(
        tag,
        min=smallest,
        max=largest,
        num=v.numel(),
        sum=v.sum().item(),
        sum_squares=v.dot(v).item(),
        bucket_limits=torch.linspace(low, high, bins + 1)[1:].tolist(),
        bucket_counts=torch.histc(v, bins=bins, min=low, max=high).tolist(),
        global_step=step,
    )


class TensorBoardPictures(L.Callback):
    """After each validation epoch, write the pictures and histograms to TensorBoard.

    Runs in ``on_validation_end``, after the module's ``on_validation_epoch_end`` has set
    ``pl_module.confusion_matrix``. Everything is written at the model's SGD step,
    the x-axis of the scalars. Only rank 0 writes, only with a ``TensorBoardLogger``, every
    ``every_n_epochs`` epochs (from epoch 0) and at the last epoch.

        images/first_layer_weights    weight_tiles of the first layer
        images/misclassified          misclassified_grid of the validation images (if any)
        images/confusion_matrix       ConfusionPicture of the validation epoch
        weights/<name>                every parameter, e.g. weights/layers.0.weight
        gradients/<name>              its gradient from the epoch's last SGD step
    """

    def __init__(self, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be at least 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.confusion: ConfusionPicture | None = None  # made at the first write

    def due(self, trainer: L.Trainer) -> bool:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 == trainer.max_epochs
        return epoch % self.every_n_epochs == 0 or last

    def writes(self, trainer: L.Trainer) -> bool:
        """Whether this process writes for this epoch."""
        return (
            trainer.is_global_zero
            and isinstance(trainer.logger, TensorBoardLogger)
            and self.due(trainer)
        )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self.writes(trainer):
            self.write(trainer.logger.experiment, trainer, pl_module)

    def write(
        self, writer: SummaryWriter, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> None:
        """Write every picture and histogram with ``writer`` (a torch SummaryWriter)."""
        step = pl_module.sgd_steps
        weight = pl_module.layers[0].weight
        tiles = weight_tiles(weight, zoom=WEIGHT_ZOOM)
        writer.add_image("images/first_layer_weights", tiles, step)
        grid = self.misclassified(trainer, pl_module)
        if grid is not None:
            writer.add_image("images/misclassified", grid, step)
        confusion = getattr(pl_module, "confusion_matrix", None)
        if confusion is not None:
            picture = self.confusion_picture(confusion)
            writer.add_image("images/confusion_matrix", picture, step, dataformats="HWC")
        for name, param in pl_module.named_parameters():
            write_histogram(writer, f"weights/{name}", param, step)
        last = pl_module.last_step
        for kind, grads in zip(("weight", "bias"), (last.nabla_w, last.nabla_b) if last else ()):
            for l, grad in enumerate(grads):
                write_histogram(writer, f"gradients/layers.{l}.{kind}", grad, step)
        pl_module.last_step = None  # written once: a validation without training has none

    def confusion_picture(self, confusion: Tensor) -> np.ndarray:
        """``ConfusionPicture`` of the matrix, the picture's background kept between calls."""
        if self.confusion is None or self.confusion.n != len(confusion):
            self.confusion = ConfusionPicture(len(confusion))
        return self.confusion.draw(confusion)

    @staticmethod
    def misclassified(trainer: L.Trainer, pl_module: L.LightningModule) -> Tensor | None:
        """``misclassified_grid`` of the validation digits, or None without a ``val`` split."""
        splits = getattr(trainer.datamodule, "splits", {})
        if "val" not in splits:
            return None
        x, targets = splits["val"]
        weight = pl_module.layers[0].weight
        outputs, n_wrong = [], 0
        # Slice by slice, stopping at MAX_MISCLASSIFIED: a trained network gets them within
        # the first slice or two, so most of the 10,000 images need no second forward pass.
        with torch.inference_mode():
            for start in range(0, len(x), EVAL_SLICE):
                out = pl_module(x[start : start + EVAL_SLICE].to(weight.device, weight.dtype))
                outputs.append(out)
                wrong = out.argmax(dim=1).cpu() != targets[start : start + EVAL_SLICE].cpu()
                n_wrong += int(wrong.sum())
                if n_wrong >= MAX_MISCLASSIFIED:
                    break
        n = sum(map(len, outputs))
        return misclassified_grid(x[:n], targets[:n], torch.cat(outputs))

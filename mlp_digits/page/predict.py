"""Read a digit from an image file: load a checkpoint, make the image look like MNIST, run it.

The network only knows MNIST's conventions, so a user's picture is converted the way MNIST's
own images were made: upright (a phone photo's EXIF orientation applied), grayscale, a white
digit on black, the digit scaled (aspect ratio kept) to fit a 20x20 box, then placed in a
28x28 field with its centre of mass at the centre. A picture that skips this (black ink on
white paper, a digit filling the frame, a big photo) is outside what the network was trained
on and gets near-random answers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from mlp_digits.config import mnist_problem
from mlp_digits.data import DataError
from mlp_digits.lightning.checkpoint import load_checkpoint, one_line
from mlp_digits.lightning.model import DigitsMLP

FIELD = 28  # MNIST images are 28x28 ...
BOX = 20  # ... with the digit scaled to fit 20x20 ...
CENTRE = 14.0  # ... and its centre of mass at pixel (14, 14), row and column index
INK = 0.1  # a pixel brighter than this (after background removal) is part of the digit
MIN_CONTRAST = 0.05  # less difference than this between digit and background: a blank image
BAR_WIDTH = 40  # characters of bar for an activation of 1
EIGHTHS = " ▏▎▍▌▋▊▉█"  # a bar ends in eighths of a character: small changes still show
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as Pillow's "L"
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
BLANK_NOTE = " (the image is blank: no digit found, so this is the answer to an empty field)"


def load_model(path: str | os.PathLike) -> DigitsMLP:
    """The network of a checkpoint, in eval mode, checked to read MNIST: 784 inputs, 10 outputs."""
    model = load_checkpoint(path)
    problem = mnist_problem(model.hparams.sizes)
    if problem:
        raise DataError(f"checkpoint {path}: {problem}")
    return model.eval()


# --- the image ----------------------------------------------------------------------------


def grayscale(image: Image.Image) -> np.ndarray:
    """Brightness in [0, 1] as float32 (h, w), from an image of any mode.

    Pillow's own ``convert("L")`` clips 16- and 32-bit pixels at 255 instead of scaling them,
    so those modes are scaled here. Transparent pixels are laid on the backdrop that contrasts
    with the visible ones: black strokes on a transparent canvas become black on white, white
    strokes become white on black; compositing on white always would erase white strokes.
    """
    if image.mode in SIXTEEN_BIT or image.mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float32)
        peak = float(pixels.max()) if pixels.size else 0.0
        # "I" and "F" say nothing of their range: take the smallest usual one that holds it.
        ranges = {"I": (255.0, 65535.0), "F": (1.0, 255.0, 65535.0)}.get(image.mode, (65535.0,))
        top = next((t for t in ranges if peak <= t), peak)
        return np.clip(pixels / top, 0.0, 1.0)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255
        gray, alpha = rgba[..., :3] @ LUMA, rgba[..., 3]
        if alpha.min() < 1:
            visible = float((gray * alpha).sum() / alpha.sum()) if alpha.sum() > 0 else 0.0
            backdrop = 1.0 if visible < 0.5 else 0.0
            gray = alpha * gray + (1 - alpha) * backdrop
        return gray
    if image.mode not in ("L", "1", "RGB", "P"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...: through RGB, as Pillow can
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def white_on_black(gray: np.ndarray) -> np.ndarray | None:
    """The digit as ink in [0, 1] on a background of 0, or None when there is no digit.

    The border says what the background is: a light border means dark ink on light paper,
    which is inverted. The background's level is then subtracted and the ink stretched to
    reach 1, as MNIST's strokes do: grey paper and a grey pencil look like MNIST too.
    """
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 0.5:
        gray = 1.0 - gray
    background = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    peak = float(gray.max())
    if peak - background < MIN_CONTRAST:
        return None
    return np.clip((gray - background) / (peak - background), 0.0, 1.0)


def fit_box(ink: np.ndarray) -> np.ndarray | None:
    """The digit cropped to its bounding box and scaled so that its longer side is 20 pixels."""
    rows, cols = np.nonzero(ink > INK)
    if len(rows) == 0:
        return None
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Lanczos widens its kernel when it shrinks, so a big photo is averaged, not sampled.
    resized = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32)).resize(
        size, Image.Resampling.LANCZOS
    )
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def centre_by_mass(box: np.ndarray) -> np.ndarray:
    """The box pasted into a 28x28 field so that its centre of mass lands on pixel (14, 14).

    The shift is rounded to whole pixels, and whatever would fall outside the field is cut.
    """
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    mass = float(box.sum())
    if mass <= 0:
        return field
    rows, cols = np.indices(box.shape)
    top = int(np.floor(CENTRE - float((rows * box).sum()) / mass + 0.5))
    left = int(np.floor(CENTRE - float((cols * box).sum()) / mass + 0.5))
    h, w = box.shape
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + h, FIELD), min(left + w, FIELD)
    if r0 < r1 and c0 < c1:
        field[r0:r1, c0:c1] = box[r0 - top : r1 - top, c0 - left : c1 - left]
    return field


def image_to_mnist(image: Image.Image) -> Tensor:
    """An image of any size and mode as MNIST pixels: (784,) float32 in [0, 1].

    A blank image (no digit to be found) gives all zeros, an input the network can still take.
    """
    if image.width == 0 or image.height == 0:
        return torch.zeros(FIELD * FIELD)
    image = ImageOps.exif_transpose(image)  # a phone photo's pixels may lie on their side
    ink = white_on_black(grayscale(image))
    box = None if ink is None else fit_box(ink)
    if box is None:
        return torch.zeros(FIELD * FIELD)
    return torch.from_numpy(centre_by_mass(box).reshape(-1))


def read_image(path: str | os.PathLike) -> Tensor:
    """``image_to_mnist`` of an image file; an unreadable file is a one-line DataError."""
    try:
        with Image.open(path) as image:
            image.load()  # the pixels are decoded here: a truncated file fails here
            return image_to_mnist(image)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise DataError(f"{path} is not an image file that Pillow can read") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot read the image ({one_line(e)})") from e


# --- prediction and its display -----------------------------------------------------------


@torch.no_grad()
def predict_files(model: DigitsMLP, paths: Iterable[str | os.PathLike]) -> list[dict]:
    """``{"file", "prediction", "activations", "blank"}`` for each image file, in order.

    Every file is read before the network runs, so a bad file stops the run before any output.
    ``blank``: no digit was found, and the network answered for an empty field.
    """
    paths = [str(p) for p in paths]
    if not paths:
        return []
    x = torch.stack([read_image(p) for p in paths])
    device, dtype = model.layers[0].weight.device, model.layers[0].weight.dtype
    activations = model.eval()(x.to(device, dtype)).cpu().double()
    return [
        {"file": p, "prediction": int(a.argmax()), "activations": a.tolist(), "blank": blank}
        for p, a, blank in zip(paths, activations, (x == 0).all(dim=1).tolist())
    ]


def bar(value: float, width: int = BAR_WIDTH) -> str:
    """A bar of ``value * width`` characters, to the nearest eighth of a character."""
    eighths = round(min(max(value, 0.0), 1.0) * width * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (EIGHTHS[rest] if rest else "")).ljust(width)


def bar_chart(activations: Sequence[float], prediction: int) -> str:
    """The output layer as the video draws it: each digit's activation as a bar, brightest wins.

    One line per digit, ``7  0.981 |████...|  <- 7``: the predicted digit is marked.
    """
    lines = []
    for digit, value in enumerate(activations):
        mark = f"  <- {digit}" if digit == prediction else ""
        lines.append(f"{digit}  {value:.3f} |{bar(value)}|{mark}")
    return "\n".join(lines)


def format_results(results: Sequence[dict]) -> str:
    """Each file's ``name: digit`` line and bar chart, files separated by a blank line."""
    return "\n\n".join(
        f"{r['file']}: {r['prediction']}{BLANK_NOTE if r.get('blank') else ''}\n"
        f"{bar_chart(r['activations'], r['prediction'])}"
        for r in results
    )

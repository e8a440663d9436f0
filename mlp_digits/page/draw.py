"""Watch it think, and learn: a trained network as one web page where you draw a digit, see
it read, and watch backpropagation and gradient descent change it.

The page is one self-contained HTML file: the weights (float32, base64), a handful of real
test digits, and (for "Train it here") the first training and test digits of the run's data
as grayscale PNG sprites, all as JSON; the script and the style inline. It asks no server
for anything, so it works offline, from a course page, or from ``--serve`` on a remote
machine. In the browser it converts the drawing as ``mlp_digits.predict`` converts an image
file, and runs the network, its backpropagation (BP1-BP4) and SGD in float64, so the page and
Python agree to rounding; with the run's hidden activation, σ or ReLU (the outputs are σ).

    build_page(model, examples, title, learn)  the HTML text
    pick_examples(model, x, targets)           real test digits, some the network gets wrong
    learning_data(data_dir, n_train, n_test)   digits for "Train it here", PNG-compressed
    write_page(checkpoint, output, ...)        checkpoint in, HTML file out
    serve(path, port, ready)                   the file on http://127.0.0.1:PORT/ until Ctrl-C
    show(path, port, open_browser)             draw.py's last step: open it, or serve it

The checkpoint may also be a network in the book's network2 JSON (``mlp_digits.book_format``):
sigmoid, with DigitsMLP's default η for the page's steps.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import html
import io
import json
import os
import re
import signal
import sys
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from mlp_digits.config import DATA_DIR, DEFAULTS, PAGE_TEST_DIGITS, PAGE_TRAIN_DIGITS
from mlp_digits.data import DataError, load_mnist
from mlp_digits.lightning.checkpoint import one_line, read_checkpoint
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.page.predict import load_model

N_RIGHT = 10  # test digits the network reads right: the first of each digit
N_WRONG = 8  # ... and the first ones it gets wrong
BOOK_TRAIN = 50_000  # the book trains on the first 50,000 of the training file
MAX_PAGE_BYTES = 20_000_000
SPRITE_ROWS = 8192  # digits per PNG: one a row, and browsers cap a canvas side near 32,767
SCRIPTS = ("draw_page.js", "draw_page_learn.js", "draw_page_network2.js")  # in this order
HOST = "127.0.0.1"


# --- what goes into the page --------------------------------------------------------------


def float32_base64(t: Tensor) -> str:
    """A tensor's float32 values, row-major and little-endian, as base64: full precision."""
    return base64.b64encode(t.detach().cpu().float().numpy().astype("<f4").tobytes()).decode()


@torch.no_grad()
def pick_examples(
    model: DigitsMLP, x: Tensor, targets: Tensor, n_right: int = N_RIGHT, n_wrong: int = N_WRONG
) -> list[dict]:
    """The first test digit of each class that the network reads right, then the first
    ``n_wrong`` it reads wrong: ``{"index", "label", "predicted", "pixels"}`` (uint8, base64)."""
    weight = model.layers[0].weight
    predicted = model(x.to(weight.dtype)).argmax(dim=1)
    right = [
        int(i)
        for digit in range(10)
        for i in ((targets == digit) & (predicted == digit)).nonzero().flatten()[:1]
    ][:n_right]
    wrong = (predicted != targets).nonzero().flatten()[:n_wrong].tolist()
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return [
        {
            "index": i,
            "label": int(targets[i]),
            "predicted": int(predicted[i]),
            "pixels": base64.b64encode(pixels[i].tobytes()).decode(),
        }
        for i in right + wrong
    ]


class FlagError(DataError):
    """A digit count the data cannot give or the page cannot hold: the user's flag, exit 2."""

    exit_status = 2


def png_sprites(x: Tensor) -> list[str]:
    """Digits (n, 784) in [0, 1] as base64 grayscale PNGs, one digit a row of 784 pixels.

    Lossless: the page reads back the uint8 pixels that MNIST stores, at about a fifth of
    their size."""
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    sprites = []
    for start in range(0, len(pixels), SPRITE_ROWS):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels[start : start + SPRITE_ROWS]), "L").save(
            buffer, "PNG", optimize=True
        )
        sprites.append(base64.b64encode(buffer.getvalue()).decode())
    return sprites


def digits(x: Tensor, targets: Tensor) -> dict:
    return {
        "count": len(x),
        "sprites": png_sprites(x) if len(x) else [],
        "labels": base64.b64encode(targets.to(torch.uint8).numpy().tobytes()).decode(),
    }


def learning_data(
    data_dir: str | os.PathLike, n_train: int | None = None, n_test: int | None = None
) -> dict:
    """The first ``n_train`` digits of the book's training part (the first 50,000 of the
    training file) and the first ``n_test`` of the test file, for "Train it here"; None:
    ``PAGE_TRAIN_DIGITS`` and ``PAGE_TEST_DIGITS``, or all there are when the folder has fewer.

    A count asked for that the folder does not have is a FlagError; missing files are a
    DataError."""
    x_train, y_train = load_mnist(data_dir, "train")
    x_test, y_test = load_mnist(data_dir, "test")
    have_train = min(len(x_train), BOOK_TRAIN)
    n_train = min(PAGE_TRAIN_DIGITS, have_train) if n_train is None else n_train
    n_test = min(PAGE_TEST_DIGITS, len(x_test)) if n_test is None else n_test
    if n_train > have_train:
        raise FlagError(
            f"--train-digits {n_train}: {data_dir} has {have_train} training digits "
            f"(the book trains on the first {BOOK_TRAIN:,}); give at most {have_train}"
        )
    if n_test > len(x_test):
        raise FlagError(
            f"--test-digits {n_test}: {data_dir} has {len(x_test)} test digits; "
            f"give at most {len(x_test)}"
        )
    return {
        "train": digits(x_train[:n_train], y_train[:n_train]),
        "test": digits(x_test[:n_test], y_test[:n_test]),
    }


def activation_of(model: DigitsMLP) -> str:
    """The hidden layers' activation function of the model: "sigmoid" or "relu"."""
    return model.activation


def page_data(model: DigitsMLP, examples: list[dict], learn: dict | None = None) -> dict:
    """Everything the page knows. ``learn``: the digits of "Train it here" (None: no data),
    and the run's own η and mini-batch size as the page's defaults. ``activation``: the hidden
    layers' function, "sigmoid" or "relu"."""
    return {
        "sizes": list(model.hparams.sizes),
        "activation": activation_of(model),
        "weights": [float32_base64(layer.weight) for layer in model.layers],
        "biases": [float32_base64(layer.bias) for layer in model.layers],
        "examples": examples,
        "eta": float(model.hparams.lr),
        "learn": learn,
    }


def build_page(
    model: DigitsMLP, examples: list[dict], title: str, learn: dict | None = None
) -> str:
    """The page's HTML: the template with the network's data, script and title filled in."""
    package = resources.files("mlp_digits.page")
    template = (package / "draw_page.html").read_text(encoding="utf-8")
    script = "\n".join((package / name).read_text(encoding="utf-8") for name in SCRIPTS)
    # Inside <script>, "</" could end the element early; JSON allows "<\/" for it.
    data = json.dumps(page_data(model, examples, learn), separators=(",", ":")).replace(
        "</", "<\\/"
    )
    fills = {"__TITLE__": html.escape(title), "__SCRIPT__": script, "__NETWORK__": data}
    # One pass, so that no filled-in text is searched for the other markers.
    return re.sub("|".join(fills), lambda m: fills[m.group(0)], template)


def data_hparams(checkpoint: str | os.PathLike) -> dict:
    """What the checkpoint's run recorded of its data: ``data_dir``, ``batch_size``, ..."""
    return read_checkpoint(checkpoint).get("datamodule_hyper_parameters", {})


def data_dir_of(checkpoint: str | os.PathLike) -> str | None:
    """The ``--data-dir`` the checkpoint's run was trained with, if it recorded one."""
    return data_hparams(checkpoint).get("data_dir")


def default_output(checkpoint: str | os.PathLike) -> Path:
    """Beside the checkpoint: ``last.ckpt`` -> ``last.html``."""
    return Path(checkpoint).with_suffix(".html")


def write_page(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    warn: Callable[[str], None] = print,
    n_train: int | None = None,
    n_test: int | None = None,
) -> Path:
    """Read the checkpoint, pick test digits from ``data_dir`` (default: the run's own), write
    the page and return its path. Without test images the page has none and no "Train it
    here"; ``warn`` says so. ``n_train``, ``n_test``: the digits for "Train it here" (see
    ``learning_data``; 0: none). Counts the data lacks, or a page over 20 MB: FlagError."""
    model = load_model(checkpoint)
    hparams = data_hparams(checkpoint)
    data_dir = data_dir or hparams.get("data_dir") or DATA_DIR
    try:
        x, targets = load_mnist(data_dir, "test")
    except DataError as e:
        warn(
            f"warning: no test digits and no Train it here in the page ({e}); "
            "give --data-dir to add them"
        )
        examples, learn = [], None
    else:
        examples = pick_examples(model, x, targets)
        learn = None
        try:
            learn = learning_data(data_dir, n_train, n_test) if 0 not in (n_train, n_test) else None
        except FlagError:
            raise
        except DataError as e:
            warn(f"warning: no Train it here in the page ({e}); give --data-dir to add it")
        if learn is not None:
            learn["batchSize"] = int(hparams.get("batch_size", DEFAULTS.batch_size))
    output = Path(output) if output else default_output(checkpoint)
    title = f"{Path(checkpoint).name}, {'-'.join(map(str, model.hparams.sizes))}"
    if activation_of(model) == "relu":
        title += ", ReLU hidden layers"
    text = build_page(model, examples, title, learn)
    size = len(text.encode("utf-8"))
    if size > MAX_PAGE_BYTES:
        raise FlagError(
            f"the page would be {size / 1e6:.1f} MB, over the limit of "
            f"{MAX_PAGE_BYTES / 1e6:g} MB; give fewer --train-digits or --test-digits"
        )
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot write {output} ({one_line(e)})") from None
    return output


# --- serving it to a browser on another machine ------------------------------------------


def serve(path: Path, port: int, ready: Callable[[str], None] = print) -> None:
    """Serve the page at ``http://127.0.0.1:PORT/`` until Ctrl-C; ``ready(url)`` once listening.

    Only the loopback interface: from another machine, forward the port (``ssh -L``). A port
    already in use is a one-line DataError naming it.
    """
    page = path.read_bytes()
    names = {"/", f"/{path.name}"}

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            if self.path.split("?")[0] not in names:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a line per request would bury the URL

    try:
        server = ThreadingHTTPServer((HOST, port), Page)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise DataError(
                f"port {port} on {HOST} is in use; choose another --serve PORT"
            ) from None
        raise DataError(f"cannot serve on {HOST}:{port} ({one_line(e)})") from None
    # Ctrl-C is the way to stop, not an error; a shell that starts us as a background job
    # ignores SIGINT in its children, and Ctrl-C (or kill -INT) must stop the server all the same.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with server:
        ready(f"http://{HOST}:{server.server_address[1]}/")
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


def has_display() -> bool:
    """Whether a browser window could appear: always on macOS and Windows, else with X/Wayland."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def show(path: Path, port: int | None, open_browser: bool) -> None:
    """The written page opened in a browser (when there is a display and ``open_browser``), or
    with ``port`` served until Ctrl-C, its URL printed once it listens."""
    open_browser = open_browser and has_display()
    if port is None:
        if open_browser:
            webbrowser.open(path.resolve().as_uri())
        return

    def ready(url: str) -> None:
        print(f"Serving {url} (Ctrl-C to stop)", flush=True)
        if open_browser:
            webbrowser.open(url)

    serve(path, port, ready)
    print("Stopped.", flush=True)

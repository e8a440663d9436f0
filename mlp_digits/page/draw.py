"""Watch it think: a trained network as one web page where you draw a digit and see it read.

The page is one self-contained HTML file: the weights (float32, base64) and a handful of real
test digits as JSON, the script and the style inline. It asks no server for anything, so it
works offline, from a course page, or from ``--serve`` on a remote machine. In the browser it
converts the drawing as ``mlp_digits.predict`` converts an image file and runs the network in
float64, so the page and Python agree to rounding.

    build_page(model, examples, title)   the HTML text
    pick_examples(model, x, targets)     real test digits, some the network gets wrong
    write_page(checkpoint, output, ...)  checkpoint in, HTML file out
    serve(path, port, ready)             the file on http://127.0.0.1:PORT/ until Ctrl-C
"""

from __future__ import annotations

import base64
import contextlib
import errno
import html
import json
import os
import re
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from mlp_digits.data import DataError, load_mnist
from mlp_digits.lightning.checkpoint import one_line, read_checkpoint
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.page.predict import load_model

N_RIGHT = 10  # test digits the network reads right: the first of each digit
N_WRONG = 8  # ... and the first ones it gets wrong
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


def page_data(model: DigitsMLP, examples: list[dict]) -> dict:
    return {
        "sizes": list(model.hparams.sizes),
        "weights": [float32_base64(layer.weight) for layer in model.layers],
        "biases": [float32_base64(layer.bias) for layer in model.layers],
        "examples": examples,
    }


def build_page(model: DigitsMLP, examples: list[dict], title: str) -> str:
    """The page's HTML: the template with the network's data, script and title filled in."""
    package = resources.files("mlp_digits")
    template = (package / "draw_page.html").read_text(encoding="utf-8")
    script = (package / "draw_page.js").read_text(encoding="utf-8")
    # Inside <script>, "</" could end the element early; JSON allows "<\/" for it.
    data = json.dumps(page_data(model, examples), separators=(",", ":")).replace("</", "<\\/")
    fills = {"__TITLE__": html.escape(title), "__SCRIPT__": script, "__NETWORK__": data}
    # One pass, so that no filled-in text is searched for the other markers.
    return re.sub("|".join(fills), lambda m: fills[m.group(0)], template)


def data_dir_of(checkpoint: str | os.PathLike) -> str | None:
    """The ``--data-dir`` the checkpoint's run was trained with, if it recorded one."""
    hparams = read_checkpoint(checkpoint).get("datamodule_hyper_parameters", {})
    return hparams.get("data_dir")


def default_output(checkpoint: str | os.PathLike) -> Path:
    """Beside the checkpoint: ``last.ckpt`` -> ``last.html``."""
    return Path(checkpoint).with_suffix(".html")


def write_page(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    warn: Callable[[str], None] = print,
) -> Path:
    """Read the checkpoint, pick test digits from ``data_dir`` (default: the run's own), write
    the page and return its path. Without test images the page has none; ``warn`` says so."""
    model = load_model(checkpoint)
    data_dir = data_dir or data_dir_of(checkpoint) or "data"
    try:
        x, targets = load_mnist(data_dir, "test")
        examples = pick_examples(model, x, targets)
    except DataError as e:
        warn(f"warning: no test digits in the page ({e}); give --data-dir to add them")
        examples = []
    output = Path(output) if output else default_output(checkpoint)
    try:
        title = f"{Path(checkpoint).name}, {'-'.join(map(str, model.hparams.sizes))}"
        output.write_text(build_page(model, examples, title), encoding="utf-8")
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
    with server:
        ready(f"http://{HOST}:{server.server_address[1]}/")
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the way to stop, not an error
            server.serve_forever()

"""mlp_digits.predict and scripts/predict.py: images in, digits and output activations out.

A network trained here on MNIST must read a 28x28 MNIST test image saved as a PNG the way it
reads the image's tensor, and still (mostly) do so for the image inverted or enlarged; every
bad file must end in one line on stderr, a hostile checkpoint without running its code.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    REPO,
    SHARED_MNIST,
    load_script,
    needs_shared_data,
    save_checkpoint,
    separable_digits,
    train_by_sgd,
)
from PIL import Image, ImageDraw, ImageFilter
from PIL.ImageOps import invert

from mlp_digits import book_format, cli
from mlp_digits.data import DataError, load_mnist
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.page.predict import (
    bar_chart,
    image_to_mnist,
    load_model,
    predict_files,
    read_image,
)

SCRIPT = REPO / "scripts" / "predict.py"
ORIENTATION = 0x0112  # EXIF's tag: how the stored pixels must turn to stand upright
HAVE_MNIST = (SHARED_MNIST / "MNIST" / "raw").is_dir()
# A separable digit's class is the height of its band, which MNIST's centring removes by
# design: only real digits can show that a converted picture still reads as its tensor.
needs_mnist = needs_shared_data(SHARED_MNIST / "MNIST" / "raw")
N_IMAGES = 200


# --- a small trained network and its checkpoint ------------------------------------------


def training_images() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST training images when shared, else 600 separable digits."""
    if HAVE_MNIST:
        return load_mnist(SHARED_MNIST, "train")
    images, labels = separable_digits(600, seed=0)
    return torch.from_numpy(images).reshape(-1, 784).float() / 255, torch.from_numpy(labels).long()


def train_small_model(epochs: int = 3) -> DigitsMLP:
    """784-30-10, the book's network2 start, plain SGD: about 90% on MNIST's test set in ~1 s."""
    torch.manual_seed(0)
    model = DigitsMLP(sizes=(784, 30, 10), lr=3.0, init="scaled")
    return train_by_sgd(model, *training_images(), epochs=epochs)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("predict")


@pytest.fixture(scope="module")
def checkpoint(files: Path) -> Path:
    return save_checkpoint(train_small_model(), files / "digits.ckpt")


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> DigitsMLP:
    return load_model(checkpoint)


def test_checkpoint_loads_as_the_trained_network(checkpoint: Path, model: DigitsMLP) -> None:
    assert isinstance(model, DigitsMLP) and not model.training
    assert list(model.hparams.sizes) == [784, 30, 10]
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0)


# --- the scripts' runs, started together so that their imports overlap ------------------


class Evil:
    """Unpickling this calls ``open(marker, "w")``: a checkpoint that creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable, tuple[str, str]]:
        return open, (str(self.marker), "w")


def write_png(pixels: np.ndarray, path: Path) -> str:
    Image.fromarray(pixels).save(path)
    return str(path)


def bad_inputs(files: Path, checkpoint: Path, images: list[str]) -> dict[str, list[str]]:
    """Each bad file, and the command line that meets it."""
    bad = files / "bad"
    bad.mkdir()
    (bad / "corrupt.png").write_bytes(np.random.default_rng(0).bytes(2000))
    (bad / "text.ckpt").write_text("a checkpoint? no\n")
    torch.save({"weights": torch.zeros(3, 3)}, bad / "unrelated.ckpt")
    save_checkpoint(DigitsMLP(sizes=(784, 16, 9)), bad / "nine_outputs.ckpt")
    save_checkpoint(DigitsMLP(sizes=(100, 10)), bad / "hundred_inputs.ckpt")
    torch.save({"state_dict": {}, "x": Evil(bad / "marker")}, bad / "evil.ckpt")
    good = ["--checkpoint", str(checkpoint)]
    return {
        "missing_image": [*good, images[0], str(bad / "no_such.png")],
        "corrupt_image": [*good, str(bad / "corrupt.png")],
        "text_checkpoint": ["--checkpoint", str(bad / "text.ckpt"), images[0]],
        "unrelated_checkpoint": ["--checkpoint", str(bad / "unrelated.ckpt"), images[0]],
        "nine_outputs": ["--checkpoint", str(bad / "nine_outputs.ckpt"), images[0]],
        "hundred_inputs": ["--checkpoint", str(bad / "hundred_inputs.ckpt"), images[0]],
        "evil_checkpoint": ["--checkpoint", str(bad / "evil.ckpt"), images[0]],
    }


@pytest.fixture(scope="module", autouse=True)
def runs(files: Path, checkpoint: Path) -> Iterator[dict[str, tuple[list[str], subprocess.Popen]]]:
    """Every run of the script, started at once: each spends seconds importing torch."""
    images, _ = separable_digits(3, seed=5)
    pngs = [write_png(pixels, files / f"digit_{i}.png") for i, pixels in enumerate(images)]
    argvs = {
        "json": ["--checkpoint", str(checkpoint), "--json", *pngs],
        "chart": ["--checkpoint", str(checkpoint), *pngs[:2]],
        **bad_inputs(files, checkpoint, pngs),
    }
    procs = {
        name: (
            argv,
            subprocess.Popen(
                [sys.executable, str(SCRIPT), *argv],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for name, argv in argvs.items()
    }
    yield procs
    for _, proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def transposed_network2(path: Path) -> str:
    """The network2 JSON at ``path`` with its last weight matrix transposed."""
    data = json.loads(path.read_text())
    data["weights"][-1] = [list(column) for column in zip(*data["weights"][-1])]
    return json.dumps(data)


def finish(
    runs: dict[str, tuple[list[str], subprocess.Popen]], name: str
) -> tuple[list[str], int, str, str]:
    """The argv, exit status, stdout and stderr of one run, once it has ended."""
    argv, proc = runs[name]
    stdout, stderr = proc.communicate(timeout=180)
    return argv, proc.returncode, stdout, stderr


# --- the conversion of an image to MNIST pixels -----------------------------------------


def drawn_seven(size: tuple[int, int] = (100, 60)) -> Image.Image:
    """A black 7 drawn on a white RGB canvas, off centre and not square."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.line([(20, 8), (50, 8), (32, 52)], fill="black", width=5)
    return image


def ink_box(pixels: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(pixels > 0)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def centre_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(pixels.shape)
    return float((rows * pixels).sum() / pixels.sum()), float((cols * pixels).sum() / pixels.sum())


def test_a_drawn_digit_becomes_white_on_black_in_20x20_centred_by_mass() -> None:
    pixels = image_to_mnist(drawn_seven())
    assert pixels.shape == (784,) and pixels.dtype == torch.float32
    assert float(pixels.min()) >= 0 and float(pixels.max()) == pytest.approx(1, abs=0.05)
    field = pixels.reshape(28, 28).numpy()
    border = np.concatenate([field[0], field[-1], field[:, 0], field[:, -1]])
    assert np.median(border) == 0 and (field == 0).mean() > 0.6  # bright ink, black background
    assert field.sum() < 0.35 * 20 * 20  # a stroke, not a filled box
    height, width = ink_box(field)
    assert max(height, width) == 20 and min(height, width) < 20  # aspect ratio kept
    cy, cx = centre_of_mass(field)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


def grey_levels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"))


MODES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "L": lambda im: im.convert("L"),
    "1": lambda im: im.convert("L").point(lambda v: 255 if v > 127 else 0).convert("1"),
    "P": lambda im: im.convert("P"),
    "I;16": lambda im: Image.fromarray(grey_levels(im).astype(np.uint16) * 257),
    "I": lambda im: im.convert("I"),
    "F": lambda im: Image.fromarray(grey_levels(im).astype(np.float32) / 255),
    "CMYK": lambda im: im.convert("CMYK"),
    # black strokes on a transparent canvas, and white strokes on one
    "RGBA black": lambda im: Image.merge("RGBA", [*Image.new("RGB", im.size).split(), invert(im)]),
    "LA white": lambda im: Image.merge("LA", [Image.new("L", im.size, 255), invert(im)]),
}


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_the_same_pixels(mode: str) -> None:
    seven = drawn_seven().convert("L")
    expected = image_to_mnist(seven)
    converted = MODES[mode](seven)
    assert converted.mode == mode.split()[0]
    tolerance = 0.6 if mode == "1" else 0.02  # "1" has lost the antialiased edge
    torch.testing.assert_close(image_to_mnist(converted), expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (28, 28), 0),
        Image.new("RGB", (100, 60), "white"),
        Image.new("L", (50, 50), 128),
        Image.new("RGBA", (40, 30), (0, 0, 0, 0)),
        Image.new("I;16", (10, 10), 65535),
        Image.new("L", (1, 1), 255),
        Image.new("L", (0, 0)),
    ],
    ids=["black", "white", "grey", "transparent", "white 16-bit", "one pixel", "empty"],
)
def test_a_blank_image_gives_zeros(image: Image.Image) -> None:
    torch.testing.assert_close(image_to_mnist(image), torch.zeros(784), rtol=0, atol=0)


def test_a_big_photo_of_a_small_digit() -> None:
    """Ink far smaller than the frame, on grey paper: found, cropped and scaled up."""
    image = Image.new("L", (1200, 900), 200)
    ImageDraw.Draw(image).line([(600, 400), (640, 400), (615, 470)], fill=40, width=6)
    field = image_to_mnist(image).reshape(28, 28).numpy()
    assert max(ink_box(field)) == 20 and field.max() == pytest.approx(1, abs=0.05)
    assert all(abs(c - 14) <= 1 for c in centre_of_mass(field))


def test_a_darker_digit_on_light_grey_paper_reads_as_the_same_digit_white_on_black() -> None:
    """Light grey paper (180) and a dark grey pencil (60): the converter inverts it, takes the
    paper's level away and stretches the pencil to 1, so the 28x28 input is that of the same
    strokes drawn white on black. Without the background removal the paper would stay at
    0.29 and the strokes at 0.76."""
    strokes = Image.new("L", (100, 60), 0)  # where the pencil went: 255, with soft edges
    ImageDraw.Draw(strokes).line([(20, 8), (50, 8), (32, 52)], fill=255, width=5)
    strokes = strokes.filter(ImageFilter.GaussianBlur(1))
    mask = np.asarray(strokes, dtype=np.float64) / 255
    paper = Image.fromarray(np.round(180 + (60 - 180) * mask).astype(np.uint8))

    expected = image_to_mnist(strokes)
    converted = image_to_mnist(paper)
    assert float(expected.max()) == pytest.approx(1, abs=1e-6)
    torch.testing.assert_close(converted, expected, rtol=0, atol=0.02)
    field = converted.reshape(28, 28)
    assert float(field[0].abs().max()) == 0 and float(field[:, 0].abs().max()) == 0  # no paper


FILE_KINDS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "transparent.png": lambda im: Image.merge(
        "RGBA", [*Image.new("RGB", im.size).split(), invert(im.convert("L"))]
    ),
    "16-bit.png": lambda im: Image.fromarray(grey_levels(im).astype(np.uint16) * 257),
    "cmyk.jpg": lambda im: im.convert("CMYK"),
    "palette.gif": lambda im: im.convert("P"),
    "8000x8000.png": lambda im: big_canvas(im, 8000),
}


def big_canvas(image: Image.Image, side: int) -> Image.Image:
    """``image`` enlarged (pixels repeated) to the width of a white square ``side`` wide."""
    scale = side // image.width
    big = Image.new("L", (side, side), 255)
    big.paste(image.convert("L").resize((side, image.height * scale), Image.Resampling.NEAREST))
    return big


@pytest.mark.parametrize("name", FILE_KINDS)
def test_image_files_of_every_kind_read_as_the_picture(name: str, files: Path) -> None:
    """Saved as a file and read back, each kind is the same seven (JPEG: to its loss)."""
    seven = drawn_seven()
    path = files / name
    FILE_KINDS[name](seven).save(path, compress_level=1)  # PNG's fastest: 64 M pixels
    assert Image.open(path).format == {"png": "PNG", "jpg": "JPEG", "gif": "GIF"}[path.suffix[1:]]
    torch.testing.assert_close(read_image(path), image_to_mnist(seven), rtol=0, atol=0.05)


def photo_of(pixels: np.ndarray, path: Path, orientation: int | None = None) -> Path:
    """An MNIST digit as a phone photo: dark ink on white paper, 280x280, JPEG; with an EXIF
    ``orientation``, the pixels stored turned as that tag says to turn them back."""
    upright = Image.fromarray(255 - pixels).resize((280, 280), Image.Resampling.BICUBIC)
    upright = upright.convert("RGB")
    if orientation is None:
        upright.save(path, quality=95)
        return path
    # Tag 8: the stored pixels stand upright once turned 90° anticlockwise, so they are stored
    # turned 90° clockwise (PIL's ROTATE_270 is 270° anticlockwise).
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    upright.transpose(Image.Transpose.ROTATE_270).save(path, quality=95, exif=exif)
    return path


@needs_mnist
def test_a_photo_stored_sideways_reads_upright_by_its_exif_orientation(
    model: DigitsMLP, test_digits: tuple[np.ndarray, torch.Tensor], files: Path
) -> None:
    """A 3 stored turned with orientation tag 8 is the picture of the upright 3, and reads
    as one; without the tag the same pixels are another picture."""
    images, pixels = test_digits
    _, targets = load_mnist(SHARED_MNIST, "test")
    with torch.no_grad():
        read = model(pixels).argmax(1)
    for i in (i for i in range(N_IMAGES) if targets[i] == 3 and read[i] == 3):
        upright = photo_of(images[i], files / f"three_{i}.jpg")  # the first 3 whose upright
        if predict_files(model, [upright])[0]["prediction"] == 3:  # photo reads as a 3
            break
    else:
        pytest.fail("no upright photo of a test 3 reads as a 3")
    tagged = photo_of(images[i], files / "three_tag8.jpg", orientation=8)
    untagged = photo_of(images[i], files / "three_tag1.jpg", orientation=1)
    assert Image.open(tagged).getexif()[ORIENTATION] == 8
    torch.testing.assert_close(read_image(tagged), read_image(upright), rtol=0, atol=0.1)
    assert (read_image(tagged) - read_image(upright)).abs().mean() < 0.01
    assert (read_image(untagged) - read_image(upright)).abs().mean() > 0.05  # turned: another
    assert predict_files(model, [tagged])[0]["prediction"] == 3


# --- predictions on MNIST test images saved as PNG files --------------------------------


@pytest.fixture(scope="module")
def test_digits() -> tuple[np.ndarray, torch.Tensor]:
    """The first 200 MNIST test images: as 28x28 uint8 arrays and as the network's input."""
    pixels, _ = load_mnist(SHARED_MNIST, "test")
    pixels = pixels[:N_IMAGES]
    return (pixels.reshape(-1, 28, 28) * 255).round().to(torch.uint8).numpy(), pixels


VARIANTS: dict[str, tuple[Callable[[Image.Image], Image.Image], float]] = {
    "plain": (lambda im: im, 0.98),
    "inverted": (lambda im: Image.fromarray(255 - np.asarray(im)), 0.98),
    "upscaled": (lambda im: im.resize((280, 280), Image.Resampling.BICUBIC), 0.90),
}


@needs_mnist
@pytest.mark.parametrize("variant", VARIANTS)
def test_png_files_read_as_their_tensors(
    variant: str, model: DigitsMLP, test_digits: tuple[np.ndarray, torch.Tensor], files: Path
) -> None:
    images, pixels = test_digits
    transform, least = VARIANTS[variant]
    folder = files / variant
    folder.mkdir()
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"{i}.png")
        transform(Image.fromarray(image)).save(paths[-1])
    results = predict_files(model, paths)
    assert [r["file"] for r in results] == [str(p) for p in paths]
    with torch.no_grad():
        expected = model(pixels).argmax(1).tolist()
    agreement = np.mean([r["prediction"] == e for r, e in zip(results, expected)])
    assert agreement >= least, f"{variant}: {agreement:.1%} agree with the tensors"


@needs_mnist
def test_the_network_reads_mnist(
    model: DigitsMLP, test_digits: tuple[np.ndarray, torch.Tensor]
) -> None:
    _, targets = load_mnist(SHARED_MNIST, "test")
    with torch.no_grad():
        predictions = model(test_digits[1]).argmax(1)
    assert (predictions == targets[:N_IMAGES]).float().mean() >= 0.8


def test_a_bad_image_file_is_a_data_error_naming_it(model: DigitsMLP, files: Path) -> None:
    (files / "notes.png").write_text("not a picture")
    for path in (files / "absent.png", files / "notes.png", files):
        with pytest.raises(DataError, match=str(path).replace("\\", "\\\\")):
            predict_files(model, [path])


def test_no_files_no_results(model: DigitsMLP) -> None:
    assert predict_files(model, []) == []


# --- the bar chart ------------------------------------------------------------------------


def test_bar_chart_has_a_line_per_digit_and_marks_the_prediction() -> None:
    activations = [0.0, 0.01, 0.5, 0.02, 0.0, 0.0, 0.0, 1.0, 0.25, 0.003]
    lines = bar_chart(activations, 7).splitlines()
    assert len(lines) == 10
    assert [line.split()[:2] for line in lines] == [
        [str(d), f"{a:.3f}"] for d, a in enumerate(activations)
    ]
    assert [i for i, line in enumerate(lines) if "<-" in line] == [7]
    bars = [line.split("|")[1] for line in lines]
    assert {len(b) for b in bars} == {40}
    assert bars[7] == "█" * 40 and bars[2] == "█" * 20 + " " * 20 and bars[0] == " " * 40
    assert bars[8].rstrip() == "█" * 10


# --- the script ---------------------------------------------------------------------------


def test_script_json_has_an_object_per_file(runs: dict, model: DigitsMLP, files: Path) -> None:
    argv, code, stdout, stderr = finish(runs, "json")
    assert code == 0, stderr
    results = json.loads(stdout)
    pngs = argv[3:]
    assert [r["file"] for r in results] == pngs
    for r in results:
        assert set(r) == {"file", "prediction", "activations", "blank"}
        assert len(r["activations"]) == 10
        assert all(isinstance(a, float) and 0 <= a <= 1 for a in r["activations"])
        assert r["prediction"] == int(np.argmax(r["activations"]))
    in_process = predict_files(model, pngs)
    assert [r["prediction"] for r in results] == [r["prediction"] for r in in_process]


def test_script_prints_a_chart_per_file(runs: dict) -> None:
    argv, code, stdout, stderr = finish(runs, "chart")
    assert code == 0, stderr
    blocks = stdout.strip("\n").split("\n\n")
    assert len(blocks) == 2
    for png, block in zip(argv[2:], blocks):
        header, *chart = block.splitlines()
        name, digit = header.rsplit(": ", 1)
        assert name == png
        assert [line.split()[0] for line in chart] == [str(d) for d in range(10)]
        assert [line.split()[0] for line in chart if "<-" in line] == [digit]


def run_main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """predict.py's main in this process, as its ``__main__`` calls it: (status, out, err)."""
    script = load_script("predict")
    capsys.readouterr()
    code = cli.run(script.main, cli.predict_parser().parse_args(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_script_reads_the_network_saved_in_the_books_format(
    runs: dict, files: Path, capsys: pytest.CaptureFixture
) -> None:
    """The checkpoint's network written as network2 JSON: the same digits, the same outputs
    to float32's rounding (the JSON is read as float64)."""
    argv, code, stdout, stderr = finish(runs, "json")
    assert code == 0, stderr
    book_format.save_model(load_model(argv[1]), files / "digits.json")
    code, stdout2, stderr = run_main(
        ["--checkpoint", str(files / "digits.json"), *argv[2:]], capsys
    )
    assert code == 0, stderr
    from_ckpt, from_json = json.loads(stdout), json.loads(stdout2)
    assert [r["prediction"] for r in from_json] == [r["prediction"] for r in from_ckpt]
    np.testing.assert_allclose(
        [r["activations"] for r in from_json], [r["activations"] for r in from_ckpt], atol=1e-6
    )


def test_script_a_json_that_is_not_the_books_network_is_one_line_exit_2(
    model: DigitsMLP, files: Path, capsys: pytest.CaptureFixture
) -> None:
    book_format.save_model(model, files / "good.json")
    (files / "transposed.json").write_text(transposed_network2(files / "good.json"))
    image = write_png(separable_digits(1, seed=5)[0][0], files / "one.png")
    code, stdout, stderr = run_main(["--checkpoint", str(files / "transposed.json"), image], capsys)
    assert (code, stdout) == (2, "") and stderr.count("\n") == 1
    assert stderr.startswith("error: ") and "weights[1] must be 10 rows of 30 numbers" in stderr
    assert "(transposed?)" in stderr


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("missing_image", "no_such.png: no such file"),
        ("corrupt_image", "corrupt.png is not an image file"),
        ("text_checkpoint", "text.ckpt is not a DigitsMLP checkpoint"),
        ("unrelated_checkpoint", "unrelated.ckpt is not a DigitsMLP checkpoint"),
        ("nine_outputs", "takes 784 inputs and gives 9 outputs; MNIST needs 784 inputs and 10"),
        ("hundred_inputs", "takes 100 inputs and gives 10 outputs; MNIST needs 784 inputs and 10"),
        ("evil_checkpoint", "outside torch's safe set"),
    ],
)
def test_script_bad_input_is_one_line(runs: dict, name: str, says: str) -> None:
    _, code, stdout, stderr = finish(runs, name)
    assert code == 1
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr and says in stderr
    assert stdout == ""  # nothing printed for the good file before the bad one


def test_an_evil_checkpoint_runs_nothing(runs: dict, files: Path) -> None:
    """The marker appears only when the file is unpickled unrestricted: the payload is live."""
    finish(runs, "evil_checkpoint")
    marker = files / "bad" / "marker"
    assert not marker.exists()
    torch.load(files / "bad" / "evil.ckpt", weights_only=False)  # what must never happen
    assert marker.exists()


def test_script_flag_errors_exit_2() -> None:
    spec = importlib.util.spec_from_file_location("predict_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for argv in ([], ["--checkpoint", "m.ckpt"], ["image.png"]):
        with pytest.raises(SystemExit) as e:
            cli.predict_parser().parse_args(argv)
        assert e.value.code == 2

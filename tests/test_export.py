"""mlp_digits.book_format and scripts/export.py: the book's network2 JSON, out and in.

A checkpoint exported and read back tests to the same count in evaluate.py; the book's own
NumPy network (mlp_digits.book), trained here and saved with ``book_format.save``, tests in
evaluate.py to the count it makes itself; every file that is not the book's network ends in
one line and exit status 2 in each script that takes ``--checkpoint``.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO, load_script, save_checkpoint, train_by_sgd, write_mnist

from mlp_digits import book, book_format, cli
from mlp_digits.config import DEFAULTS
from mlp_digits.data import load_mnist
from mlp_digits.lightning.checkpoint import load_checkpoint
from mlp_digits.lightning.evaluation import evaluate
from mlp_digits.lightning.model import DigitsMLP

KEYS = ["sizes", "weights", "biases", "cost"]  # network2.py's save(), in its order


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def data_dir(files: Path) -> Path:
    return write_mnist(files / "data", n_train=600, n_test=200)


def trained(data_dir: Path, sizes: tuple[int, ...] = (784, 16, 16, 10), **kw: str) -> DigitsMLP:
    """The book's SGD (η 3.0, mini-batches of 10) for one epoch on the written digits."""
    torch.manual_seed(0)
    return train_by_sgd(DigitsMLP(sizes=sizes, **kw), *load_mnist(data_dir, "train"), 1)


@pytest.fixture(scope="module")
def float64_checkpoint(files: Path, data_dir: Path) -> Path:
    """A network whose checkpoint holds float64 weights (as --precision 64's): read as the
    JSON is, so that both are tested with the same arithmetic."""
    return save_checkpoint(trained(data_dir).double(), files / "net64.ckpt")


@pytest.fixture(scope="module")
def float32_checkpoint(files: Path, data_dir: Path) -> Path:
    return save_checkpoint(trained(data_dir), files / "net32.ckpt")


def run(script: str, argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """A script's main in this process, as its ``__main__`` calls it: (status, out, err)."""
    capsys.readouterr()
    if script == "evaluate":
        code = cli.run(evaluate, cli.parse_evaluate_args(argv))
    else:
        module = load_script(script)
        parser = getattr(cli, f"{script}_parser")()
        code = cli.run(module.main, parser.parse_args(argv))
    out, err = capsys.readouterr()
    return code, out, err


def count_of(checkpoint: Path, data_dir: Path, capsys: pytest.CaptureFixture) -> int:
    """The digits evaluate.py's Test: line says the network reads right."""
    argv = ["--checkpoint", str(checkpoint), "--data-dir", str(data_dir), "--no-download"]
    code, out, err = run("evaluate", argv, capsys)
    assert code == 0, err
    return int(re.search(r"^Test: (\d+) / 200 correct", out, re.MULTILINE)[1])


def export(checkpoint: Path, output: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code, out, err = run(
        "export", ["--checkpoint", str(checkpoint), "--output", str(output)], capsys
    )
    return code, out + err


# --- out and back in ------------------------------------------------------------------------


def test_a_checkpoint_exported_and_read_back_tests_to_the_same_count(
    float64_checkpoint: Path, data_dir: Path, files: Path, capsys: pytest.CaptureFixture
) -> None:
    output = files / "net64.json"
    assert export(float64_checkpoint, output, capsys) == (
        0,
        f"{output}: 784-16-16-10, the book's network2 format\n",
    )
    model = load_checkpoint(float64_checkpoint)  # float64 weights stay float64, bit for bit
    saved = torch.load(float64_checkpoint, weights_only=True)["state_dict"]
    for name, tensor in model.state_dict().items():
        assert tensor.dtype == saved[name].dtype and torch.equal(tensor, saved[name]), name
    x, targets = load_mnist(data_dir, "test")
    with torch.no_grad():
        own = int((model(x.double()).argmax(1) == targets).sum())  # the network's own count
    counts = count_of(float64_checkpoint, data_dir, capsys), count_of(output, data_dir, capsys)
    print(f"the network's own count {own}; evaluate.py: checkpoint {counts[0]}, JSON {counts[1]}")
    assert counts == (own, own)
    data = json.loads(output.read_text())
    for l, layer in enumerate(model.layers):
        np.testing.assert_array_equal(np.array(data["weights"][l]), layer.weight.detach().numpy())
        np.testing.assert_array_equal(np.array(data["biases"][l])[:, 0], layer.bias.detach())


def test_a_float32_checkpoint_exports_every_weight_exactly(
    float32_checkpoint: Path, files: Path, capsys: pytest.CaptureFixture
) -> None:
    """float32 values written as float64 decimals: read back and rounded to float32, each
    weight is the checkpoint's own bits; the model read from the JSON is float64."""
    output = files / "net32.json"
    assert export(float32_checkpoint, output, capsys)[0] == 0
    saved = torch.load(float32_checkpoint, weights_only=True)["state_dict"]
    data = json.loads(output.read_text())
    assert list(data) == KEYS and data["sizes"] == [784, 16, 16, 10]
    assert data["cost"] == "QuadraticCost"
    for l in range(3):
        weights, biases = np.array(data["weights"][l]), np.array(data["biases"][l])
        assert weights.shape == tuple(saved[f"layers.{l}.weight"].shape)  # n_out rows of n_in
        assert biases.shape == (len(saved[f"layers.{l}.bias"]), 1)  # a column
        assert np.array_equal(weights.astype(np.float32), saved[f"layers.{l}.weight"].numpy())
        assert np.array_equal(biases[:, 0].astype(np.float32), saved[f"layers.{l}.bias"].numpy())
    model = load_checkpoint(output)
    assert model.layers[0].weight.dtype == torch.float64
    assert (model.hparams.lr, model.hparams.activation) == (DEFAULTS.lr, "sigmoid")


def test_the_json_exported_again_is_the_same_file(
    float32_checkpoint: Path, files: Path, capsys: pytest.CaptureFixture
) -> None:
    first, again = files / "first.json", files / "again.json"
    assert export(float32_checkpoint, first, capsys)[0] == 0
    assert export(first, again, capsys)[0] == 0
    assert again.read_bytes() == first.read_bytes()


def test_the_books_numpy_network_saved_tests_to_its_own_count(
    data_dir: Path, files: Path, capsys: pytest.CaptureFixture
) -> None:
    """book.Network from N(0, 1), one epoch of its own update_mini_batch (η 3.0, m = 10):
    saved with book_format.save, evaluate.py counts what the NumPy network counts, and the
    model read from the file gives its outputs."""
    rng = np.random.default_rng(0)
    sizes = [784, 30, 10]
    net = book.Network(
        [rng.standard_normal((n_out, n_in)) for n_in, n_out in zip(sizes, sizes[1:])],
        [rng.standard_normal((n_out, 1)) for n_out in sizes[1:]],
    )
    x, labels = load_mnist(data_dir, "train")
    training = book.examples(x.numpy().astype(np.float64), labels.numpy())
    for k in range(0, len(training), 10):
        net.update_mini_batch(training[k : k + 10], 3.0)
    x_test, targets = load_mnist(data_dir, "test")
    outputs = net.feedforward(x_test.numpy().astype(np.float64).T)  # (10, m): a column each
    own = int((outputs.argmax(axis=0) == targets.numpy()).sum())

    book_format.save(net, files / "book.json")
    counted = count_of(files / "book.json", data_dir, capsys)
    print(f"book.Network's own evaluate: {own} / 200; evaluate.py on its JSON: {counted} / 200")
    assert counted == own
    model = load_checkpoint(files / "book.json")
    with torch.no_grad():
        np.testing.assert_allclose(model(x_test.double()).numpy(), outputs.T, rtol=0, atol=1e-12)


def test_save_takes_any_object_with_the_books_lists(files: Path) -> None:
    """Biases as the book's (n, 1) columns or flat (n,); what JSON or the format cannot hold
    is a ValueError naming the array."""
    rng = np.random.default_rng(1)
    weights = [rng.standard_normal((5, 784)), rng.standard_normal((10, 5))]
    net = SimpleNamespace(weights=weights, biases=[rng.standard_normal(5), np.zeros((10, 1))])
    book_format.save(net, files / "any.json")
    data = json.loads((files / "any.json").read_text())
    assert list(data) == KEYS and data["sizes"] == [784, 5, 10]
    assert [np.array(b).shape for b in data["biases"]] == [(5, 1), (10, 1)]
    np.testing.assert_array_equal(np.array(data["weights"][1]), weights[1])
    network = book_format.read(files / "any.json")
    np.testing.assert_array_equal(network.biases[0][:, 0], net.biases[0])
    for bad, says in [
        (SimpleNamespace(weights=[weights[0], weights[0]], biases=net.biases), "weights\\[1\\]"),
        (SimpleNamespace(weights=[weights[0].T, weights[1]], biases=net.biases), "biases\\[0\\]"),
        (SimpleNamespace(weights=weights, biases=net.biases[:1]), "2 weight matrices and 1"),
        (SimpleNamespace(weights=[weights[0] * np.nan, weights[1]], biases=net.biases), "NaN"),
    ]:
        with pytest.raises(ValueError, match=says):
            book_format.save(bad, files / "bad.json")


def test_relu_and_diverged_networks_are_refused_in_one_line_exit_2(
    data_dir: Path, files: Path, capsys: pytest.CaptureFixture
) -> None:
    relu = save_checkpoint(trained(data_dir, (784, 16, 10), activation="relu"), files / "r.ckpt")
    nan = trained(data_dir, (784, 16, 10))
    with torch.no_grad():
        nan.layers[1].weight[3, 4] = float("nan")
    nan = save_checkpoint(nan, files / "nan.ckpt")
    for checkpoint, says in [(relu, "ReLU hidden layers"), (nan, "weights[1] holds NaN")]:
        code, err = export(checkpoint, files / "refused.json", capsys)
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and says in err
        assert not (files / "refused.json").exists()


# --- files that are not the book's network ---------------------------------------------------


def transpose_last(data: dict) -> None:
    data["weights"][-1] = [list(column) for column in zip(*data["weights"][-1])]


def edit(change: Callable[[dict], object]) -> Callable[[dict], str]:
    def broken(data: dict) -> str:
        data = copy.deepcopy(data)
        change(data)
        return json.dumps(data)  # Python's json writes NaN and Infinity, as network2.py would

    return broken


BROKEN: dict[str, tuple[Callable[[dict], str], str]] = {
    "not JSON": (lambda data: json.dumps(data)[:-40], "is not JSON (Expecting"),
    "a JSON array": (lambda data: json.dumps([data]), "holds a JSON array, not network2's"),
    "no biases": (edit(lambda d: d.pop("biases")), "lacks biases: network2's save() writes"),
    "cross-entropy": (
        edit(lambda d: d.update(cost="CrossEntropyCost")),
        'the cost is "CrossEntropyCost"; this project trains and tests with the quadratic',
    ),
    "sizes as text": (edit(lambda d: d.update(sizes="784 16 16 10")), "sizes must be a list"),
    "not 784 -> 10": (
        edit(lambda d: d["sizes"].__setitem__(-1, 9)),
        "sizes 784-16-16-9: the network takes 784 inputs and gives 9 outputs",
    ),
    "shapes that do not chain": (
        edit(lambda d: d["sizes"].__setitem__(1, 20)),
        "weights[0] must be 20 rows of 784 numbers for sizes 784-20-16-10; found 16 rows",
    ),
    "a weight matrix transposed": (edit(transpose_last), "found 16 rows of 10 (transposed?)"),
    "a layer missing": (edit(lambda d: d["biases"].pop()), "need 3 biases arrays; found 2"),
    "flat biases": (
        edit(lambda d: d["biases"].__setitem__(0, [b for [b] in d["biases"][0]])),
        "biases[0] must be a column of 16 rows of one for sizes 784-16-16-10; found a flat",
    ),
    "a weight as text": (
        edit(lambda d: d["weights"][1][2].__setitem__(3, "0.5")),
        'found "0.5" at row 2, column 3, which is not a number',
    ),
    "NaN": (
        edit(lambda d: d["weights"][2][4].__setitem__(5, float("nan"))),
        "weights[2] holds NaN at row 4, column 5: the network had diverged",
    ),
    "infinity": (
        edit(lambda d: d["biases"][1][7].__setitem__(0, float("inf"))),
        "biases[1] holds an infinity at row 7, column 0",
    ),
}


@pytest.fixture(scope="module")
def good(float32_checkpoint: Path, files: Path) -> dict:
    book_format.save_model(load_checkpoint(float32_checkpoint), files / "good.json")
    return json.loads((files / "good.json").read_text())


@pytest.mark.parametrize("case", BROKEN)
def test_a_file_that_is_not_the_books_network_is_one_line_exit_2_in_every_script(
    case: str, good: dict, files: Path, data_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    broken, says = BROKEN[case]
    path = files / f"{case.replace(' ', '_')}.json"
    path.write_text(broken(good))
    image = files / "seven.png"
    image.write_bytes(b"")  # never opened: the checkpoint is read first
    checkpoint = ["--checkpoint", str(path)]
    for script, argv in {
        "evaluate": [*checkpoint, "--data-dir", str(data_dir), "--no-download"],
        "predict": [*checkpoint, str(image)],
        "draw": [*checkpoint, "--data-dir", str(data_dir), "--output", str(files / "x.html")],
        "export": [*checkpoint, "--output", str(files / "x.json")],
    }.items():
        code, out, err = run(script, argv, capsys)
        assert (code, out) == (2, ""), f"{script}: {err}"
        assert err.startswith(f"error: {path}") and err.count("\n") == 1, f"{script}: {err}"
        assert says in err, f"{script}: {err}"
    assert not (files / "x.html").exists() and not (files / "x.json").exists()


def test_each_script_ends_a_broken_file_in_one_line_and_exit_2(
    good: dict, files: Path, data_dir: Path
) -> None:
    """The same, as the scripts run from a shell (all at once: each imports torch)."""
    path = files / "diverged.json"
    path.write_text(BROKEN["NaN"][0](good))
    commands = {
        "evaluate.py": ["--data-dir", str(data_dir), "--no-download"],
        "predict.py": [str(files / "never_read.png")],
        "draw.py": ["--output", str(files / "y.html"), "--no-open"],
        "export.py": ["--output", str(files / "y.json")],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / name), "--checkpoint", str(path), *argv],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name, argv in commands.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert (proc.returncode, out) == (2, ""), f"{name}: {err}"
        assert err == f"error: {path}: {BROKEN['NaN'][1]} (a smaller η trains it)\n", name

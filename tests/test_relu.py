"""ReLU hidden layers: BP1–BP4 with ReLU'(z) in BP2, against independent references.

The references share no code with ``mlp_digits.backprop``: autograd over a forward pass
written here, float64 central finite differences of the cost, and the NumPy network.py of
``mlp_digits.book`` with ReLU hidden layers. The output layer is σ in all of them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, save_checkpoint, train_by_sgd, write_mnist
from PIL import Image
from torch import Tensor

from mlp_digits import backprop as bp
from mlp_digits import book, cli, sgd
from mlp_digits.data import load_mnist
from mlp_digits.lightning.model import DigitsMLP
from mlp_digits.network import initial_parameters
from mlp_digits.page.predict import image_to_mnist, load_model, predict_files

SIZES = (784, 16, 16, 10)


def problem(m: int = 10, seed: int = 0) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor]:
    """Scaled float64 weights (a ReLU net of N(0, 1) weights saturates its σ outputs), pixels
    and one-hot targets."""
    weights, biases = ([p.double() for p in ps] for ps in initial_parameters(SIZES, "scaled", 3))
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(m, SIZES[0], generator=g, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.randint(0, 10, (m,), generator=g), 10).double()
    return weights, biases, x, y


def cost_of(weights: list[Tensor], biases: list[Tensor], x: Tensor, y: Tensor) -> Tensor:
    """C = 1/(2m) Σ ‖y − a‖², ReLU hidden layers and a σ output, written out here."""
    a = x
    for l, (w, b) in enumerate(zip(weights, biases)):
        z = a @ w.T + b
        a = torch.sigmoid(z) if l == len(weights) - 1 else torch.clamp(z, min=0)
    return ((y - a) ** 2).sum() / (2 * len(x))


def test_relu_backprop_matches_autograd_of_an_independent_forward_pass() -> None:
    weights, biases, x, y = problem()
    nabla_w, nabla_b = bp.backprop(weights, biases, x, y, activation="relu")

    leaves = [p.clone().requires_grad_() for p in weights + biases]
    reference = torch.autograd.grad(cost_of(leaves[:3], leaves[3:], x, y), leaves)

    for manual, auto in zip(nabla_w + nabla_b, reference, strict=True):
        torch.testing.assert_close(manual, auto, rtol=1e-10, atol=1e-13)
    hidden = bp.feedforward(weights, biases, x, "relu")[0][1]
    assert (hidden == 0).any() and (hidden > 1).any()  # real ReLUs: some off, some past 1


def test_relu_backprop_matches_float64_finite_differences() -> None:
    """∂C/∂w for 30 weights of every layer, against (C(w + ε) − C(w − ε)) / 2ε."""
    weights, biases, x, y = problem(m=4, seed=1)
    nabla_w, _ = bp.backprop(weights, biases, x, y, activation="relu")
    g = torch.Generator().manual_seed(2)
    eps = 1e-6
    for l, w in enumerate(weights):
        for _ in range(30):
            i, j = (int(torch.randint(0, n, (1,), generator=g)) for n in w.shape)
            original = float(w[i, j])
            w[i, j] = original + eps
            up = float(cost_of(weights, biases, x, y))
            w[i, j] = original - eps
            down = float(cost_of(weights, biases, x, y))
            w[i, j] = original
            numeric = (up - down) / (2 * eps)
            assert abs(float(nabla_w[l][i, j]) - numeric) <= 1e-7 + 1e-6 * abs(numeric)


def test_relu_backprop_matches_network_py_with_relu_hidden_layers() -> None:
    weights, biases, x, y = problem(m=5, seed=4)
    nabla_w, nabla_b = bp.backprop(weights, biases, x, y, activation="relu")

    net = book.Network([w.numpy() for w in weights], [b.numpy() for b in biases], "relu")
    book_b, book_w = net.summed_gradients(book.examples(x.numpy(), y.argmax(dim=1).numpy()))

    for ours, theirs in zip(nabla_w, book_w, strict=True):
        assert np.abs(ours.numpy() - theirs / len(x)).max() < 1e-14
    for ours, theirs in zip(nabla_b, book_b, strict=True):
        assert np.abs(ours.numpy() - theirs.reshape(-1) / len(x)).max() < 1e-14


def test_relu_prime_is_one_where_z_is_positive_and_zero_elsewhere() -> None:
    z = torch.tensor([-2.0, -0.0, 0.0, 1e-30, 3.0])
    assert bp.relu_prime(z).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert torch.equal(bp.activation_prime(bp.relu(z), "relu"), bp.relu_prime(z))


@pytest.mark.parametrize("backprop", sgd.BACKPROPS)
def test_a_relu_digitsmlp_steps_as_its_activation_says(backprop: str) -> None:
    """The model passes its activation through forward and the step: a ReLU model whose step
    used σ would move its weights elsewhere."""
    model = DigitsMLP(activation="relu", init="scaled", lr=0.5, backprop=backprop).double()
    weights = [p.detach().clone() for p in model.weights]
    biases = [p.detach().clone() for p in model.biases]
    _, _, x, y = problem()

    model.sgd_step(x, y)
    leaves = [p.clone().requires_grad_() for p in weights + biases]
    grads = torch.autograd.grad(cost_of(leaves[:3], leaves[3:], x, y), leaves)

    for p, before, g in zip([*model.weights, *model.biases], weights + biases, grads):
        torch.testing.assert_close(p.detach(), before - 0.5 * g, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        model(x), bp.feedforward(model.weights, model.biases, x, "relu")[0][-1]
    )


def test_an_unknown_activation_is_one_line_listing_the_allowed(capsys) -> None:
    with pytest.raises(SystemExit) as exit:
        cli.parse_train_args(["--activation", "tanh"])
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("usage:")  # the usage line, then the one error
    assert "--activation: invalid choice: 'tanh'" in err[1] and "'sigmoid', 'relu'" in err[1]


def test_a_relu_checkpoint_through_predict_py_and_evaluate_py(tmp_path: Path) -> None:
    """The checkpoint carries the activation: predict.py's outputs and evaluate.py's count are
    those of the ReLU forward pass written here (a σ forward would give others)."""
    data = write_mnist(tmp_path / "data", n_train=300, n_test=100)
    x, targets = load_mnist(data, "train")
    torch.manual_seed(0)
    model = train_by_sgd(DigitsMLP(activation="relu", init="scaled", lr=0.3), x, targets, 2)
    path = save_checkpoint(model, tmp_path / "relu.ckpt")
    loaded = load_model(path)
    assert loaded.hparams.activation == "relu"

    def relu_forward(pixels: Tensor) -> Tensor:
        ws = [w.detach().double() for w in loaded.weights]
        bs = [b.detach().double() for b in loaded.biases]
        return torch.sigmoid(cost_free_hidden(ws, bs, pixels.double()) @ ws[-1].T + bs[-1])

    image = Image.fromarray((x[0].view(28, 28).numpy() * 255).astype("uint8"))
    image.save(tmp_path / "digit.png")
    (result,) = predict_files(loaded, [tmp_path / "digit.png"])
    expected = relu_forward(image_to_mnist(Image.open(tmp_path / "digit.png"))[None])[0]
    assert np.abs(np.array(result["activations"]) - expected.numpy()).max() < 1e-5

    test_x, test_targets = load_mnist(data, "test")
    correct = int((relu_forward(test_x).argmax(dim=1) == test_targets).sum())
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "evaluate.py"), "--checkpoint", str(path),
         "--data-dir", str(data), "--no-download", "--accelerator", "cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1].startswith(f"Test: {correct} / {len(test_x)} correct")


def cost_free_hidden(weights: list[Tensor], biases: list[Tensor], x: Tensor) -> Tensor:
    """The last hidden layer's activations with ReLU hidden layers, written out here."""
    a = x
    for w, b in zip(weights[:-1], biases[:-1]):
        a = torch.clamp(a @ w.T + b, min=0)
    return a

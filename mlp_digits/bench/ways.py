"""The ways to train this network, each timed on the same images from the same start.

Samples/s and µs per SGD step, with ``scripts/train.py``'s hyperparameters (its defaults:
784-16-16-10, sigmoid, quadratic cost, η = 3.0, N(0, 1) init), of:

    project           scripts/train.py's path: build_run(args), then Trainer.fit; whole epochs,
                      validation, checkpoints and pictures included (autograd, manual backprop)
    Lightning         torchvision MNIST + ToTensor in a DataLoader, a LightningModule with
                      automatic optimization, self.log every step, torch.optim.SGD
    PyTorch           the same DataLoader; backward, step, zero_grad in a plain loop
    NumPy, book       mlp_digits.book, network.py: column vectors, one example at a time, float64
    tight loop        the fastest plain eager PyTorch, independent of the project's code: the
                      data in one tensor, a permutation + slices; autograd + optim.SGD, or
                      BP1-BP4 by hand with addmm, σ' = a(1 - a) and no per-step cost

Every way trains on the training images of the project's own split (the first
``len - val_size`` of the file: ``data.split_indices``) from the weights
``DigitsMLP`` draws from the seed, and the plain loops take the project's epoch order
(``sgd.EpochPermutation``). Each is warmed up first; all but the project stop a timed epoch
after ``max_seconds``, and samples/s comes from the steps done.

Here: the ways by name, and which code times each. The project's way is ``bench.project``,
the usual ones and the book's ``bench.idiomatic``, the reference written for speed
``bench.tight``; what they share (settings, images, start, timing) ``bench.timing``.
"""

from __future__ import annotations

from torch import Tensor

from mlp_digits import book
from mlp_digits.bench.idiomatic import BookLoop, PyTorchLoop, idiomatic_lightning
from mlp_digits.bench.project import project
from mlp_digits.bench.tight import TightLoop
from mlp_digits.bench.timing import Epoch, Loop, Settings, initial_params, time_epochs

WAYS = {
    "project_autograd": "project, autograd",
    "project_manual": "project, manual backprop",
    "lightning": "Lightning, idiomatic (DataLoader)",
    "pytorch": "PyTorch, idiomatic (DataLoader)",
    "numpy": "NumPy, book's network.py",
    "tight_autograd": "tight loop, autograd + SGD",
    "tight_manual": "tight loop, BP1-BP4 by hand",
}
PROJECT_WAYS = ("project_autograd", "project_manual")


def make_loop(s: Settings, way: str, x: Tensor, targets: Tensor, train: Tensor) -> Loop:
    """A plain loop's way, from the project's start (``initial_params``)."""
    weights, biases = initial_params(s)
    if way == "pytorch":
        return PyTorchLoop(s, train)
    if way == "numpy":
        net = book.Network([w.numpy() for w in weights], [b.numpy() for b in biases])
        return BookLoop(x, targets, net, s.lr, s.batch_size, s.seed)
    manual = way == "tight_manual"
    x, targets = x.to(s.device), targets.to(s.device)
    return TightLoop(x, targets, weights, biases, s.lr, s.batch_size, manual, s.seed)


def measure(s: Settings, way: str, x: Tensor, targets: Tensor, train: Tensor) -> list[Epoch]:
    """The timed epochs of one way on the training images x (``train``: their indices)."""
    if way in PROJECT_WAYS:
        return project(s, way.removeprefix("project_"), len(x))
    if way == "lightning":
        return idiomatic_lightning(s, train)
    return time_epochs(s, make_loop(s, way, x, targets, train))

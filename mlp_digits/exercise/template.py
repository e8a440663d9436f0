"""The starter file a teacher hands out: the book's ``Network`` class with the equations left
as TODOs, each a ``raise NotImplementedError("TODO ...")`` that the checker reports by its
line until the learner has replaced it.

Written here from the equations of chapters 1 and 2; what is given is only what is not the
exercise (the starting weights, σ and σ').
"""

from __future__ import annotations

import os
from pathlib import Path

TEMPLATE = '''\
"""The network of chapters 1 and 2 of Nielsen's book, to be completed.

Replace every `raise NotImplementedError("TODO ...")` by the code it asks for, then check it:

    python scripts/check_backprop.py THIS_FILE.py

Shapes, as in the book: weights[k] is (n_out, n_in), biases[k] is (n_out, 1), an input x is a
column (784, 1) and its desired output y a column (10, 1). The cost of one example is
C_x = 1/2 ||y - a||^2.
"""

import numpy as np


def sigmoid(z):
    """The sigmoid function: 1 / (1 + e^-z), elementwise."""
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    """The derivative of the sigmoid at z: sigmoid(z) * (1 - sigmoid(z))."""
    return sigmoid(z) * (1 - sigmoid(z))


class Network:
    def __init__(self, sizes):
        """sizes: the neurons of each layer, input first, e.g. [784, 16, 16, 10]."""
        self.num_layers = len(sizes)
        self.sizes = sizes
        self.biases = [np.random.randn(n, 1) for n in sizes[1:]]
        self.weights = [np.random.randn(m, n) for n, m in zip(sizes[:-1], sizes[1:])]

    def feedforward(self, a):
        """The network's output for the input column a."""
        for b, w in zip(self.biases, self.weights):
            raise NotImplementedError("TODO feedforward: a = sigmoid(w a + b)")
        return a

    def backprop(self, x, y):
        """(nabla_b, nabla_w): the gradient of the cost C_x of the one example (x, y), as two
        lists shaped like self.biases and self.weights."""
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        # The forward pass, keeping every layer's weighted input z and activation.
        activation = x
        activations = [x]  # activations[k] is the input of weights[k]; activations[-1] is a^L
        zs = []  # zs[k] = weights[k] activations[k] + biases[k]
        for b, w in zip(self.biases, self.weights):
            raise NotImplementedError("TODO forward pass: z = w a + b and a = sigmoid(z), kept")
        # The backward pass, from the output layer L back to the first hidden layer.
        raise NotImplementedError("TODO BP1: delta = (a^L - y) * sigma'(z^L)")
        raise NotImplementedError("TODO BP3, BP4 of layer L: nabla_b, nabla_w from delta")
        for l in range(2, self.num_layers):  # the l-th layer from the end
            raise NotImplementedError(
                "TODO BP2: delta = (w of the layer after)^T delta * sigma'(z), then BP3 and BP4"
            )
        return nabla_b, nabla_w

    def update_mini_batch(self, mini_batch, eta):
        """One step of gradient descent on mini_batch, a list of (x, y) pairs:
        w -> w - (eta/m) * sum of the examples' dC_x/dw, and b likewise, m = len(mini_batch)."""
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        for x, y in mini_batch:
            raise NotImplementedError("TODO: add backprop(x, y)'s gradients to nabla_b, nabla_w")
        raise NotImplementedError("TODO: step self.weights and self.biases by -(eta/m) * nabla")
'''


def write_template(path: str | os.PathLike) -> Path:
    """Write the starter file to ``path``; FileExistsError rather than overwrite a file."""
    path = Path(path)
    with open(path, "x", encoding="utf-8") as f:
        f.write(TEMPLATE)
    return path

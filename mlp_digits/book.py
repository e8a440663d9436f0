"""The book's network.py in NumPy: the reference that DigitsMLP is tested and timed against.

Chapter 1's ``update_mini_batch`` and chapter 2's ``backprop`` as the book writes them:
column vectors, one training example at a time, float64, the mini-batch's gradients summed
and the step scaled by η/m. No PyTorch here, so that it is an independent check of
``mlp_digits.backprop`` and of ``DigitsMLP``. Shapes: weights[l] (n_out, n_in), biases[l]
(n_out, 1); an input x (784, 1) and its desired output y (10, 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Example = tuple[np.ndarray, np.ndarray]  # (x, y) as column vectors


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) = 1 / (1 + e⁻ᶻ); e⁻ᶻ may overflow to inf for very negative z, and σ is then 0."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z: np.ndarray) -> np.ndarray:
    """σ'(z) = σ(z)(1 − σ(z))."""
    return sigmoid(z) * (1 - sigmoid(z))


def relu(z: np.ndarray) -> np.ndarray:
    """ReLU(z) = max(0, z): not in network.py; the hidden layers' alternative to σ."""
    return np.maximum(z, 0.0)


def relu_prime(z: np.ndarray) -> np.ndarray:
    """ReLU'(z) = 1 where z > 0, else 0."""
    return (z > 0).astype(np.float64)


class Network:
    """network.py's ``Network``, started from given weights and biases instead of a draw.

    Biases may be given as (n,) or (n, 1); every array is copied as float64. With
    ``activation="relu"`` the hidden layers are ReLU (the output layer stays σ).
    """

    def __init__(
        self,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        activation: str = "sigmoid",
    ) -> None:
        self.weights = [np.array(w, dtype=np.float64) for w in weights]
        self.biases = [np.array(b, dtype=np.float64).reshape(-1, 1) for b in biases]
        self.num_layers = len(self.weights) + 1
        relu_hidden = activation == "relu"
        self.hidden, self.hidden_prime = (
            (relu, relu_prime) if relu_hidden else (sigmoid, sigmoid_prime)
        )

    def feedforward(self, a: np.ndarray) -> np.ndarray:
        """The output for input a: a ← σ(w a + b), layer by layer. ``a`` may hold several
        examples as columns, (784, m)."""
        for l, (b, w) in enumerate(zip(self.biases, self.weights)):
            z = np.dot(w, a) + b
            a = sigmoid(z) if l == len(self.weights) - 1 else self.hidden(z)
        return a

    def update_mini_batch(self, mini_batch: Sequence[Example], eta: float) -> None:
        """One step of gradient descent on one mini-batch: w ← w − (η/m) Σ_x ∂C_x/∂w."""
        nabla_b, nabla_w = self.summed_gradients(mini_batch)
        m = len(mini_batch)
        self.weights = [w - (eta / m) * nw for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b - (eta / m) * nb for b, nb in zip(self.biases, nabla_b)]

    def summed_gradients(
        self, mini_batch: Sequence[Example]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(Σ_x ∂C_x/∂b, Σ_x ∂C_x/∂w)`` over the mini-batch, one example at a time."""
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        for x, y in mini_batch:
            delta_nabla_b, delta_nabla_w = self.backprop(x, y)
            nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b)]
            nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_nabla_w)]
        return nabla_b, nabla_w

    def backprop(self, x: np.ndarray, y: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(nabla_b, nabla_w)``: the gradient of C_x = ½‖y − a‖² for one example."""
        nabla_b: list[np.ndarray] = [np.zeros(b.shape) for b in self.biases]
        nabla_w: list[np.ndarray] = [np.zeros(w.shape) for w in self.weights]
        activation, activations, zs = x, [x], []  # every layer's a and z, layer by layer
        for l, (b, w) in enumerate(zip(self.biases, self.weights)):
            z = np.dot(w, activation) + b
            zs.append(z)
            activation = sigmoid(z) if l == len(self.weights) - 1 else self.hidden(z)
            activations.append(activation)
        delta = (activations[-1] - y) * sigmoid_prime(zs[-1])  # BP1
        nabla_b[-1] = delta  # BP3
        nabla_w[-1] = np.dot(delta, activations[-2].T)  # BP4
        for l in range(2, self.num_layers):  # l = 2: the second-to-last layer, as in the book
            delta = np.dot(self.weights[-l + 1].T, delta) * self.hidden_prime(zs[-l])  # BP2
            nabla_b[-l] = delta
            nabla_w[-l] = np.dot(delta, activations[-l - 1].T)
        return nabla_b, nabla_w


def examples(x: np.ndarray, labels: np.ndarray, n_classes: int = 10) -> list[Example]:
    """Rows of pixels x (m, 784) and their labels (m,) as the book's (x, y) column pairs."""
    ys = np.eye(n_classes)[labels]
    return [(xi.reshape(-1, 1), yi.reshape(-1, 1)) for xi, yi in zip(x, ys)]

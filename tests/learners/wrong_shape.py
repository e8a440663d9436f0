"""Weights stored (n_in, n_out), the transpose of the book's (n_out, n_in)."""

import numpy as np


class Network:
    def __init__(self, sizes):
        self.weights = [np.random.randn(n, m) for n, m in zip(sizes[:-1], sizes[1:])]
        self.biases = [np.random.randn(m, 1) for m in sizes[1:]]

    def feedforward(self, a):
        for w, b in zip(self.weights, self.biases):
            a = 1 / (1 + np.exp(-(w.T @ a + b)))
        return a

    def backprop(self, x, y):
        raise NotImplementedError

    def update_mini_batch(self, mini_batch, eta):
        raise NotImplementedError

"""backprop ends the whole process, as a crash in a C extension would."""

import os

import numpy as np


class Network:
    def __init__(self, sizes):
        self.weights = [np.random.randn(m, n) for n, m in zip(sizes[:-1], sizes[1:])]
        self.biases = [np.random.randn(m, 1) for m in sizes[1:]]

    def feedforward(self, a):
        for w, b in zip(self.weights, self.biases):
            a = 1 / (1 + np.exp(-(w @ a + b)))
        return a

    def backprop(self, x, y):
        os._exit(3)

    def update_mini_batch(self, mini_batch, eta):
        pass

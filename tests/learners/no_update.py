"""A network without update_mini_batch."""

import numpy as np


class Network:
    def __init__(self, sizes):
        self.weights = [np.random.randn(m, n) for n, m in zip(sizes[:-1], sizes[1:])]
        self.biases = [np.random.randn(m, 1) for m in sizes[1:]]

    def feedforward(self, a):
        return a

    def backprop(self, x, y):
        return [], []

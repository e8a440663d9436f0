"""A network under another name: the checker needs the class Network."""

import numpy as np


class Net:
    def __init__(self, sizes):
        self.weights = [np.random.randn(m, n) for n, m in zip(sizes[:-1], sizes[1:])]

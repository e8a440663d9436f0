"""BP1 with y − a in place of a − y, so every gradient points the wrong way. np.matmul, one
example at a time, the backward pass walked with positive indices."""

import numpy as np


class Network:
    def __init__(self, sizes):
        self.weights = [np.random.randn(b, a) for a, b in zip(sizes[:-1], sizes[1:])]
        self.biases = [np.random.randn(b, 1) for b in sizes[1:]]

    @staticmethod
    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    def sigmoid_prime(self, z):
        return self.sigmoid(z) * (1.0 - self.sigmoid(z))

    def feedforward(self, a):
        for w, b in zip(self.weights, self.biases):
            a = self.sigmoid(np.matmul(w, a) + b)
        return a

    def backprop(self, x, y):
        a, activations, zs = x, [x], []
        for w, b in zip(self.weights, self.biases):
            z = np.matmul(w, a) + b
            a = self.sigmoid(z)
            zs.append(z)
            activations.append(a)
        n = len(self.weights)
        nabla_b, nabla_w = [None] * n, [None] * n
        delta = (y - activations[n]) * self.sigmoid_prime(zs[n - 1])
        k = n - 1
        while k >= 0:
            nabla_b[k] = delta
            nabla_w[k] = np.matmul(delta, activations[k].T)
            if k > 0:
                delta = np.matmul(self.weights[k].T, delta) * self.sigmoid_prime(zs[k - 1])
            k -= 1
        return nabla_b, nabla_w

    def update_mini_batch(self, mini_batch, eta):
        total_b = [np.zeros_like(b) for b in self.biases]
        total_w = [np.zeros_like(w) for w in self.weights]
        for x, y in mini_batch:
            nabla_b, nabla_w = self.backprop(x, y)
            for k in range(len(total_b)):
                total_b[k] += nabla_b[k]
                total_w[k] += nabla_w[k]
        for k in range(len(total_b)):
            self.weights[k] = self.weights[k] - eta / len(mini_batch) * total_w[k]
            self.biases[k] = self.biases[k] - eta / len(mini_batch) * total_b[k]

"""A correct network, one example at a time: np.dot, the layers walked back by index."""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    return sigmoid(z) * (1.0 - sigmoid(z))


class Network:
    def __init__(self, sizes):
        self.sizes = sizes
        self.num_layers = len(sizes)
        self.weights = [np.random.randn(n_out, n_in) for n_in, n_out in zip(sizes, sizes[1:])]
        self.biases = [np.random.randn(n_out, 1) for n_out in sizes[1:]]

    def feedforward(self, a):
        for w, b in zip(self.weights, self.biases):
            a = sigmoid(np.dot(w, a) + b)
        return a

    def backprop(self, x, y):
        zs, activations = [], [x]
        for w, b in zip(self.weights, self.biases):
            zs.append(np.dot(w, activations[-1]) + b)
            activations.append(sigmoid(zs[-1]))
        nabla_b = [None] * len(self.weights)
        nabla_w = [None] * len(self.weights)
        delta = (activations[-1] - y) * sigmoid_prime(zs[-1])
        for k in reversed(range(len(self.weights))):
            if k < len(self.weights) - 1:
                delta = np.dot(self.weights[k + 1].T, delta) * sigmoid_prime(zs[k])
            nabla_b[k] = delta
            nabla_w[k] = np.dot(delta, activations[k].T)
        return nabla_b, nabla_w

    def update_mini_batch(self, mini_batch, eta):
        sum_b = [np.zeros(b.shape) for b in self.biases]
        sum_w = [np.zeros(w.shape) for w in self.weights]
        for x, y in mini_batch:
            nabla_b, nabla_w = self.backprop(x, y)
            sum_b = [s + g for s, g in zip(sum_b, nabla_b)]
            sum_w = [s + g for s, g in zip(sum_w, nabla_w)]
        m = len(mini_batch)
        self.weights = [w - (eta / m) * g for w, g in zip(self.weights, sum_w)]
        self.biases = [b - (eta / m) * g for b, g in zip(self.biases, sum_b)]

"""The weights stepped after every example of the mini-batch, each by (η/m) ∂C_x/∂w: the
gradients of later examples are taken at weights that have moved. np.dot, one example at a
time, a recursive backward pass."""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    return sigmoid(z) * (1 - sigmoid(z))


class Network:
    def __init__(self, sizes):
        self.num_layers = len(sizes)
        self.biases = [np.random.randn(y, 1) for y in sizes[1:]]
        self.weights = [np.random.randn(y, x) for x, y in zip(sizes[:-1], sizes[1:])]

    def feedforward(self, a):
        for b, w in zip(self.biases, self.weights):
            a = sigmoid(np.dot(w, a) + b)
        return a

    def backprop(self, x, y):
        zs, activations = [], [x]
        for b, w in zip(self.biases, self.weights):
            zs.append(np.dot(w, activations[-1]) + b)
            activations.append(sigmoid(zs[-1]))
        nabla_b = [None] * len(self.weights)
        nabla_w = [None] * len(self.weights)

        def back(k, delta):
            nabla_b[k] = delta
            nabla_w[k] = np.dot(delta, activations[k].T)
            if k > 0:
                back(k - 1, np.dot(self.weights[k].T, delta) * sigmoid_prime(zs[k - 1]))

        back(len(self.weights) - 1, (activations[-1] - y) * sigmoid_prime(zs[-1]))
        return nabla_b, nabla_w

    def update_mini_batch(self, mini_batch, eta):
        for x, y in mini_batch:
            nabla_b, nabla_w = self.backprop(x, y)
            self.weights = [
                w - (eta / len(mini_batch)) * nw for w, nw in zip(self.weights, nabla_w)
            ]
            self.biases = [b - (eta / len(mini_batch)) * nb for b, nb in zip(self.biases, nabla_b)]

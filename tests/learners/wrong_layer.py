"""BP4 with the layer's own activation in place of its input's, ∂C/∂wˡ = δˡ (aˡ)ᵀ: the output
layer's nabla_w comes out 10×10, and the 16×16 layer's is silently wrong. @, one example at a
time, lists built by appending from the output back."""

import numpy as np


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


class Network:
    def __init__(self, sizes):
        self.sizes = list(sizes)
        self.weights = [np.random.randn(j, i) for i, j in zip(sizes, sizes[1:])]
        self.biases = [np.random.randn(j, 1) for j in sizes[1:]]

    def feedforward(self, a):
        for w, b in zip(self.weights, self.biases):
            a = sigmoid(w @ a + b)
        return a

    def backprop(self, x, y):
        activations, zs = [x], []
        for w, b in zip(self.weights, self.biases):
            zs.append(w @ activations[-1] + b)
            activations.append(sigmoid(zs[-1]))
        nabla_b, nabla_w = [], []
        a = activations[-1]
        delta = (a - y) * a * (1 - a)
        for k in range(len(self.weights) - 1, -1, -1):
            nabla_b.insert(0, delta)
            nabla_w.insert(0, delta @ activations[k + 1].T)
            if k > 0:
                s = activations[k]
                delta = (self.weights[k].T @ delta) * s * (1 - s)
        return nabla_b, nabla_w

    def update_mini_batch(self, mini_batch, eta):
        grads_b = [0 * b for b in self.biases]
        grads_w = [0 * w for w in self.weights]
        for x, y in mini_batch:
            nabla_b, nabla_w = self.backprop(x, y)
            grads_b = [g + n for g, n in zip(grads_b, nabla_b)]
            grads_w = [g + n for g, n in zip(grads_w, nabla_w)]
        rate = eta / len(mini_batch)
        self.weights = [w - rate * g for w, g in zip(self.weights, grads_w)]
        self.biases = [b - rate * g for b, g in zip(self.biases, grads_b)]

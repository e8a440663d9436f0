"""w + (η/m) ∂C/∂w: a step uphill. The chapter-2 exercise's form, np.dot on the mini-batch's
matrices, the backward pass in a while loop."""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


class Network:
    def __init__(self, sizes):
        self.sizes = sizes
        self.weights = [np.random.randn(n_out, n_in) for n_in, n_out in zip(sizes, sizes[1:])]
        self.biases = [np.random.randn(n_out, 1) for n_out in sizes[1:]]

    def feedforward(self, a):
        for w, b in zip(self.weights, self.biases):
            a = sigmoid(np.dot(w, a) + b)
        return a

    def backprop(self, X, Y):
        A = [X]
        for w, b in zip(self.weights, self.biases):
            A.append(sigmoid(np.dot(w, A[-1]) + b))
        n = len(self.weights)
        nabla_b, nabla_w = [None] * n, [None] * n
        delta = (A[-1] - Y) * A[-1] * (1 - A[-1])
        k = n - 1
        while True:
            nabla_b[k] = delta.sum(axis=1).reshape(-1, 1)
            nabla_w[k] = np.dot(delta, A[k].T)
            if k == 0:
                break
            delta = np.dot(self.weights[k].T, delta) * A[k] * (1 - A[k])
            k -= 1
        return nabla_b, nabla_w

    def update_mini_batch(self, mini_batch, eta):
        X = np.column_stack([x[:, 0] for x, _ in mini_batch])
        Y = np.column_stack([y[:, 0] for _, y in mini_batch])
        nabla_b, nabla_w = self.backprop(X, Y)
        m = X.shape[1]
        self.weights = [w + (eta / m) * nw for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b + (eta / m) * nb for b, nb in zip(self.biases, nabla_b)]

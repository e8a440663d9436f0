"""A correct network in the form of chapter 2's exercise: the whole mini-batch at once, one
column per example, gradients summed over the columns, with the @ operator."""

import numpy as np


def sigma(z):
    return 1 / (1 + np.exp(-z))


def sigma_prime(z):
    s = sigma(z)
    return s * (1 - s)


class Network:
    def __init__(self, sizes):
        self.num_layers = len(sizes)
        self.biases = [np.random.randn(n, 1) for n in sizes[1:]]
        self.weights = [np.random.randn(m, n) for n, m in zip(sizes[:-1], sizes[1:])]

    def feedforward(self, a):
        for b, w in zip(self.biases, self.weights):
            a = sigma(w @ a + b)
        return a

    def backprop(self, X, Y):
        A, As, Zs = X, [X], []
        for b, w in zip(self.biases, self.weights):
            Z = w @ A + b
            A = sigma(Z)
            Zs.append(Z)
            As.append(A)
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        D = (As[-1] - Y) * sigma_prime(Zs[-1])
        nabla_b[-1] = D.sum(axis=1, keepdims=True)
        nabla_w[-1] = D @ As[-2].T
        for l in range(2, self.num_layers):
            D = (self.weights[-l + 1].T @ D) * sigma_prime(Zs[-l])
            nabla_b[-l] = D.sum(axis=1, keepdims=True)
            nabla_w[-l] = D @ As[-l - 1].T
        return nabla_b, nabla_w

    def update_mini_batch(self, mini_batch, eta):
        X = np.hstack([x for x, _ in mini_batch])
        Y = np.hstack([y for _, y in mini_batch])
        nabla_b, nabla_w = self.backprop(X, Y)
        step = eta / len(mini_batch)
        self.weights = [w - step * nw for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b - step * nb for b, nb in zip(self.biases, nabla_b)]

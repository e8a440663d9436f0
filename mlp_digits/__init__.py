"""mlp_digits: the 784-16-16-10 sigmoid network of 3Blue1Brown's videos and Nielsen's book.

The book's core needs only torch: ``network`` (sizes, initial weights), ``backprop``
(feedforward, BP1–BP4, the cost), ``sgd`` (the step and the epochs), ``data`` (MNIST files,
the book's split). The machinery comes after it: ``lightning`` (the LightningModule, the
run), ``sweep`` (many networks at once), ``page`` (predict and draw), ``bench``.
"""


def __getattr__(name: str) -> object:
    # ``from mlp_digits import DigitsMLP``, loaded when asked for, so that ``import
    # mlp_digits.backprop`` does not load Lightning.
    if name == "DigitsMLP":
        from mlp_digits.lightning.model import DigitsMLP

        return DigitsMLP
    raise AttributeError(f"module 'mlp_digits' has no attribute {name!r}")

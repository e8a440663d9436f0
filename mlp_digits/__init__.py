"""mlp_digits: the 784-16-16-10 sigmoid network of 3Blue1Brown's videos and Nielsen's book."""

from mlp_digits.model import DigitsMLP

__all__ = ["DigitsMLP"]

"""A file that needs the book's own loader, which is not beside it."""

import mnist_loader  # noqa: F401

training_data, validation_data, test_data = mnist_loader.load_data_wrapper()

"""Every tensor the package makes says on which device: a lint over every .py of mlp_digits/.

A factory call (``torch.zeros``, ``torch.arange``, ``torch.tensor``, ``torch.Generator``, ...)
names its ``device`` (``device=`` or, for a Generator, its one argument), or is in
``ON_THE_HOST`` with the reason it makes host data on purpose. A call that takes the device
from a tensor (``x.new_zeros``, ``torch.zeros_like(x)``) is no factory here. Without a
device, PyTorch makes a CPU tensor: on a GPU run that is a mix of devices (an error), or a
copy to the device at every step (a host sync), or a generator that draws another order.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import NamedTuple

from conftest import REPO

PACKAGE = REPO / "mlp_digits"
FACTORIES = frozenset(
    {"empty", "empty_strided", "zeros", "ones", "full", "eye", "arange", "range", "linspace",
     "logspace", "tensor", "as_tensor", "asarray", "from_numpy", "frombuffer", "scalar_tensor",
     "rand", "randn", "randint", "randperm", "normal", "tril_indices", "triu_indices",
     "Generator"}
)  # fmt: skip
# (file, function, factory): why it makes its tensors on the host.
ON_THE_HOST = {
    ("mlp_digits/network.py", "initial_parameters", "Generator"):
        "the start is drawn on the CPU, so that a seed gives the same weights on any device",
    ("mlp_digits/network.py", "initial_parameters", "empty"):
        "the start is drawn on the CPU, so that a seed gives the same weights on any device",
    ("mlp_digits/gradcheck.py", "central_differences", "tensor"):
        "finite differences of Python floats, compared with gradients copied to the host",
    ("mlp_digits/gradcheck.py", "compare_gradients", "Generator"):
        "the sampled coordinates: the same for a seed on any device, read as Python ints",
    ("mlp_digits/gradcheck.py", "compare_gradients", "randperm"):
        "the sampled coordinates: the same for a seed on any device, read as Python ints",
    ("mlp_digits/gradcheck_cli.py", "load_batch", "rand"):
        "a seed's random batch, the same on any device; check() moves it",
    ("mlp_digits/gradcheck_cli.py", "load_batch", "randint"):
        "a seed's random batch, the same on any device; check() moves it",
    ("mlp_digits/exercise/reference.py", "as_row", "from_numpy"):
        "the exercise's reference runs on NumPy's arrays, on the CPU",
    ("mlp_digits/exercise/reference.py", "reference", "from_numpy"):
        "the exercise's reference runs on NumPy's arrays, on the CPU",
    ("mlp_digits/exercise/reference.py", "fd_error", "Generator"):
        "the exercise's reference runs on NumPy's arrays, on the CPU",
    ("mlp_digits/exercise/reference.py", "fd_error", "randperm"):
        "the exercise's reference runs on NumPy's arrays, on the CPU",
    ("mlp_digits/lightning/pictures.py", "labelled_digit", "from_numpy"):
        "a picture for TensorBoard, drawn by Pillow on the host",
    ("mlp_digits/lightning/pictures.py", "write_histogram", "linspace"):
        "a histogram's bucket limits, handed to TensorBoard as Python floats",
    ("mlp_digits/book_format.py", "checkpoint_of", "from_numpy"):
        "the book's JSON read as a state dict on the CPU, as read_checkpoint reads every file",
    ("mlp_digits/page/predict.py", "image_to_mnist", "zeros"):
        "a picture's pixels, converted by NumPy; predict.py and the page run on the CPU",
    ("mlp_digits/page/predict.py", "image_to_mnist", "from_numpy"):
        "a picture's pixels, converted by NumPy; predict.py and the page run on the CPU",
}  # fmt: skip


class Call(NamedTuple):
    file: str
    function: str
    factory: str
    line: int
    names_device: bool


def factory_calls(source: str, file: str) -> Iterator[Call]:
    """Every ``torch.<factory>(...)`` call of ``source`` (or of a factory imported from torch
    by name), with the function it is in and whether it names a device."""
    tree = ast.parse(source)
    imported = {
        alias.asname or alias.name: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "torch"
        for alias in node.names
    }

    def visit(node: ast.AST, function: str) -> Iterator[Call]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from visit(child, child.name)
                continue
            if isinstance(child, ast.Call):
                factory = factory_name(child.func, imported)
                if factory is not None:
                    device = any(k.arg == "device" for k in child.keywords)
                    device |= factory == "Generator" and bool(child.args)
                    yield Call(file, function, factory, child.lineno, device)
            yield from visit(child, function)

    yield from visit(tree, "<module>")


def factory_name(func: ast.expr, imported: dict[str, str]) -> str | None:
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        name = func.attr if func.value.id == "torch" else None
    elif isinstance(func, ast.Name):
        name = imported.get(func.id)
    else:
        name = None
    return name if name in FACTORIES else None


def package_calls() -> list[Call]:
    return [
        call
        for path in sorted(PACKAGE.rglob("*.py"))
        for call in factory_calls(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    ]


def test_every_tensor_factory_in_the_package_names_its_device() -> None:
    unnamed = [
        f"{c.file}:{c.line} torch.{c.factory} in {c.function}() names no device"
        for c in package_calls()
        if not c.names_device and (c.file, c.function, c.factory) not in ON_THE_HOST
    ]
    assert not unnamed, "\n".join(unnamed)


def test_every_host_exception_is_still_in_the_code() -> None:
    found = {(c.file, c.function, c.factory) for c in package_calls() if not c.names_device}
    assert set(ON_THE_HOST) <= found, sorted(set(ON_THE_HOST) - found)


def test_the_lint_finds_a_factory_without_a_device_and_passes_the_others() -> None:
    source = """
import torch
from torch import zeros as z

def good(x):
    a = torch.zeros(3, device=x.device)
    g = torch.Generator("cpu")
    return x.new_zeros(3), torch.ones_like(x), torch.stack([a, a]), g

def bad(x):
    return torch.arange(3), z(2), torch.Generator(), torch.tensor([1.0], **{"dtype": None})
"""
    calls = list(factory_calls(source, "example.py"))
    assert [(c.function, c.factory, c.names_device) for c in calls] == [
        ("good", "zeros", True),
        ("good", "Generator", True),
        ("bad", "arange", False),
        ("bad", "zeros", False),
        ("bad", "Generator", False),
        ("bad", "tensor", False),
    ]

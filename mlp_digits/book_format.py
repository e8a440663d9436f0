"""The book's network format: the JSON that network2.py's ``save()`` writes and ``load()``
reads, written here from its description, so that a network moves between this project and
the book's code (or a learner's own network.py).

    {"sizes": [784, 30, 10],
     "weights": [W¹, W²],      each Wˡ as n_out rows of n_in numbers: row j feeds neuron j
     "biases": [b¹, b²],       each bˡ as a column: n_out rows of one number
     "cost": "QuadraticCost"}

Every neuron is σ. network2.py's ``load()`` finds the cost's class by its name; this project
trains and tests with the quadratic cost C = ½‖y − a‖², so it writes "QuadraticCost" and
reads nothing else.

    save(net, path)            any object with the book's ``weights`` and ``biases`` lists
    save_model(model, path)    a DigitsMLP (sigmoid hidden layers; ReLU is refused)
    read(path)                 a checked Network2; anything else is a one-line FormatError
    is_network2_file(path)     whether a ``--checkpoint`` file is meant as this JSON
    checkpoint_of(network)     as ``lightning.checkpoint.read_checkpoint`` returns a file
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mlp_digits.config import layers, mnist_problem
from mlp_digits.data import DataError

if TYPE_CHECKING:
    from mlp_digits.lightning.model import DigitsMLP

COST = "QuadraticCost"  # network2.py's name for C = ½‖y − a‖²
KEYS = ("sizes", "weights", "biases", "cost")
WHAT = "give a network saved by network2.py's save(), the page or scripts/export.py"


class FormatError(DataError):
    """A ``--checkpoint`` file that is not the book's network: the user's flag, so exit 2."""

    exit_status = 2


@dataclass(frozen=True)
class Network2:
    """A network in the book's shapes, float64: weights[l] (n_out, n_in), biases[l] (n_out, 1)."""

    sizes: tuple[int, ...]
    weights: list[np.ndarray]
    biases: list[np.ndarray]


# --- writing -------------------------------------------------------------------------------


def network2_json(weights: list[np.ndarray], biases: list[np.ndarray]) -> dict[str, Any]:
    """The JSON object of a network given as the book's float64 arrays; a ValueError naming
    the array for shapes that do not chain or a value that is not finite (JSON has no NaN)."""
    if not weights or len(weights) != len(biases):
        raise ValueError(f"{len(weights)} weight matrices and {len(biases)} bias vectors")
    for l, (w, b) in enumerate(zip(weights, biases)):
        if w.ndim != 2:
            raise ValueError(f"weights[{l}] has shape {w.shape}; the book's are (n_out, n_in)")
        if l and w.shape[1] != weights[l - 1].shape[0]:
            raise ValueError(
                f"weights[{l}] has shape {w.shape}: its {w.shape[1]} inputs are not the "
                f"{weights[l - 1].shape[0]} outputs of weights[{l - 1}]"
            )
        if b.shape not in ((w.shape[0],), (w.shape[0], 1)):
            raise ValueError(f"biases[{l}] has shape {b.shape}; expected ({w.shape[0]}, 1)")
        for name, array in ((f"weights[{l}]", w), (f"biases[{l}]", b)):
            if not np.isfinite(array).all():
                raise ValueError(f"{name} holds NaN or infinity, which JSON cannot hold")
    return {
        "sizes": [weights[0].shape[1], *(w.shape[0] for w in weights)],
        "weights": [w.tolist() for w in weights],
        "biases": [b.reshape(-1, 1).tolist() for b in biases],
        "cost": COST,
    }


def write(data: dict[str, Any], path: str | os.PathLike) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, allow_nan=False)
    except OSError as e:
        raise DataError(f"cannot write {path} ({type(e).__name__}: {e.strerror})") from None


def save(net: Any, path: str | os.PathLike) -> None:
    """Write ``net`` as network2.py's ``save()`` does: any object with the book's ``weights``
    (each (n_out, n_in)) and ``biases`` (each (n_out, 1)) lists of NumPy arrays, e.g. a
    learner's own ``Network``, which the page and every script can then open."""
    weights = [np.array(w, dtype=np.float64) for w in net.weights]
    biases = [np.array(b, dtype=np.float64) for b in net.biases]
    write(network2_json(weights, biases), path)


def save_model(model: DigitsMLP, path: str | os.PathLike) -> None:
    """Write a DigitsMLP in the book's format; FormatError for one the format cannot describe:
    ReLU hidden layers (its neurons are all σ), or weights that are no longer finite."""
    activation = model.activation
    if activation != "sigmoid":
        raise FormatError(
            f"a network with {activation.replace('relu', 'ReLU')} hidden layers cannot be "
            "written in network2's format, whose neurons are all σ; export a sigmoid network"
        )
    weights = [w.detach().cpu().double().numpy() for w in model.weights]
    biases = [b.detach().cpu().double().numpy() for b in model.biases]
    try:
        data = network2_json(weights, biases)
    except ValueError as e:
        raise FormatError(f"the network cannot be written in network2's format: {e}") from None
    write(data, path)


# --- reading -------------------------------------------------------------------------------


def is_network2_file(path: Path) -> bool:
    """A ``.json`` name, or text that opens as a JSON object; torch's files start otherwise
    (a zip archive's ``PK``, or a pickle's byte 0x80)."""
    if path.suffix.lower() == ".json":
        return True
    with open(path, "rb") as f:
        return f.read(64).lstrip().startswith(b"{")


def read(path: str | os.PathLike) -> Network2:
    """The network in a network2 JSON file, checked: JSON, the four keys, sizes 784 → ... →
    10, every matrix of the shape the sizes give, finite numbers, the quadratic cost. Any
    problem is one FormatError line naming the file (a missing file: DataError)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise FormatError(f"{path} is not JSON (not UTF-8 text); {WHAT}") from None
    except OSError as e:
        raise DataError(f"cannot read {path} ({type(e).__name__}: {e.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        where = f"{e.msg} at line {e.lineno}, column {e.colno}"
        raise FormatError(f"{path} is not JSON ({where}); {WHAT}") from None
    return parse(data, str(path))


def parse(data: Any, name: str) -> Network2:
    """``read``'s checks of a decoded JSON value; ``name`` starts each message."""
    if not isinstance(data, dict):
        raise FormatError(
            f"{name} holds a JSON {json_kind(data)}, not network2's object of "
            f"{', '.join(KEYS)}; {WHAT}"
        )
    missing = [key for key in KEYS if key not in data]
    if missing:
        raise FormatError(
            f"{name} lacks {', '.join(missing)}: network2's save() writes {', '.join(KEYS)}; {WHAT}"
        )
    if data["cost"] != COST:
        raise FormatError(
            f"{name}: the cost is {short(data['cost'])}; this project trains and tests with the "
            f"quadratic cost, so it reads {json.dumps(COST)} networks only"
        )
    sizes = data["sizes"]
    if not (isinstance(sizes, list) and sizes and all(is_count(n) for n in sizes)):
        raise FormatError(
            f"{name}: sizes must be a list of whole numbers such as "
            f"[784, 30, 10]; found {short(sizes)}"
        )
    problem = mnist_problem(sizes)
    if problem:
        raise FormatError(f"{name}: sizes {layers(sizes)}: {problem}")
    weights = arrays(data["weights"], "weights", sizes, name)
    biases = arrays(data["biases"], "biases", sizes, name)
    return Network2(tuple(sizes), weights, biases)


def json_kind(value: Any) -> str:
    """A decoded JSON value's kind, as JSON names it (and the page's messages do)."""
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def is_count(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 1


def short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def arrays(value: Any, key: str, sizes: list[int], name: str) -> list[np.ndarray]:
    """``value`` as the float64 arrays that ``sizes`` give: weights n_out rows of n_in, biases
    a column of n_out rows of one, each checked; else a FormatError naming ``key[l]``."""
    shapes = [(o, i if key == "weights" else 1) for i, o in zip(sizes, sizes[1:])]
    if not isinstance(value, list) or len(value) != len(shapes):
        found = len(value) if isinstance(value, list) else f"a JSON {json_kind(value)}"
        raise FormatError(
            f"{name}: sizes {layers(sizes)} need {len(shapes)} {key} arrays; found {found}"
        )
    out = []
    for l, (matrix, (rows, cols)) in enumerate(zip(value, shapes)):
        what = f"{rows} rows of {cols} numbers" if cols > 1 else f"a column of {rows} rows of one"
        found = shape_of(matrix)
        if found != (rows, cols):
            hint = " (transposed?)" if found == (cols, rows) else ""
            found = f"{found[0]} rows of {found[1]}" if isinstance(found, tuple) else found
            raise FormatError(
                f"{name}: {key}[{l}] must be {what} for sizes {layers(sizes)}; found {found}{hint}"
            )
        try:
            array = np.array(matrix, dtype=np.float64)
        except OverflowError:  # a whole number beyond float64
            array = np.full((rows, cols), np.inf)
        bad = np.argwhere(~np.isfinite(array))
        if len(bad):
            r, c = bad[0]
            value = "NaN" if np.isnan(array[r, c]) else "an infinity"
            raise FormatError(
                f"{name}: {key}[{l}] holds {value} at row {r}, column {c}: the network had "
                "diverged (a smaller η trains it)"
            )
        out.append(array)
    return out


def shape_of(matrix: Any) -> tuple[int, int] | str:
    """(rows, columns) of a list of equally long lists of numbers; else what it is instead."""
    if not isinstance(matrix, list) or not matrix:
        return f"{short(matrix)}, not a list of rows"
    if not all(isinstance(row, list) for row in matrix):
        return f"a flat list of {len(matrix)}"
    cols = len(matrix[0])
    for r, row in enumerate(matrix):
        if len(row) != cols:
            return f"rows of unequal length (row 0 has {cols} numbers, row {r} has {len(row)})"
        for c, v in enumerate(row):
            if type(v) not in (int, float):  # true, "1", null: not numbers
                return f"{short(v)} at row {r}, column {c}, which is not a number"
    return len(matrix), cols


def checkpoint_of(network: Network2) -> dict[str, Any]:
    """The network as the dict ``read_checkpoint`` gives for a file: DigitsMLP(sizes) with
    its default η and σ, its weights float64 (the book's), and no run behind it."""
    state_dict = {}
    for l, (w, b) in enumerate(zip(network.weights, network.biases)):
        state_dict[f"layers.{l}.weight"] = torch.from_numpy(w)
        state_dict[f"layers.{l}.bias"] = torch.from_numpy(b[:, 0].copy())
    return {"state_dict": state_dict, "hyper_parameters": {"sizes": list(network.sizes)}}

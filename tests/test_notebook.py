"""notebooks/: stored without outputs, and run from top to bottom, offline, by a kernel of
this Python on the shared 5k subset, in under three minutes. What the notebook printed is
checked against what a probe, run in the same kernel afterwards, recomputes from the
notebook's own variables: the counts against ``sgd.evaluate`` and the book's NumPy network
on the same weights, the page against the trained weights."""

from __future__ import annotations

import html
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, SHARED_MNIST, needs_shared_data, require_shared_data
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

NOTEBOOKS = REPO / "notebooks"
FIRST_NETWORK = NOTEBOOKS / "first_network.ipynb"
TIME_LIMIT = 180  # seconds for the whole run, the kernel's start included
GRADIENT_TOLERANCE = 1e-5  # BP1-BP4 vs autograd in float32: rounding is near 1e-7
NEAR_TIE = 1e-4  # top-two outputs closer than this may swap between float32 and float64
KERNEL = "mlp_digits-test"
UNREACHABLE_PROXY = "http://127.0.0.1:9"  # the discard port: any download fails at once

# Run in the notebook's kernel after its last cell: one line of JSON, recomputed from the
# notebook's variables (the weights after the epoch, the data, the checker's report).
PROBE = """
import base64 as probe_base64
import json as probe_json
import sys as probe_sys

import numpy as probe_np

import mlp_digits as probe_package
from mlp_digits import book as probe_book
from mlp_digits.network import initial_parameters as probe_initial

probe_net = probe_book.Network(
    [w.detach().numpy() for w in weights], [b.detach().numpy() for b in biases]
)
probe_out = probe_net.feedforward(x_test.double().numpy().T)  # (10, n), float64
probe_top = probe_np.sort(probe_out, axis=0)
probe_start = probe_initial(settings.sizes, settings.init, settings.seed)
probe_first = weights[0].detach().numpy().astype("<f4").tobytes()
print(probe_json.dumps({
    "python": probe_sys.executable,
    "package": probe_package.__file__,
    "val_size": VAL_SIZE,
    "n_val": len(x_val),
    "n_test": len(x_test),
    "evaluate_val": sgd.evaluate(weights, biases, x_val, y_val),
    "evaluate_test": sgd.evaluate(weights, biases, x_test, y_test),
    "book_test": int((probe_out.argmax(axis=0) == y_test.numpy()).sum()),
    "near_ties": int((probe_top[-1] - probe_top[-2] < NEAR_TIE).sum()),
    "untrained_val": sgd.evaluate(*probe_start, x_val, y_val),
    "first_layer": probe_base64.b64encode(probe_first).decode(),
    "report_passed": report.passed,
    "report_passed_checks": [c.name for c in report.checks if c.passed],
}))
""".replace("NEAR_TIE", repr(NEAR_TIE))


def code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def tagged(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return cell


def stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def html_outputs(cell: nbformat.NotebookNode) -> list[str]:
    return [o.data["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]


def count(text: str, what: str) -> tuple[int, int]:
    """``what: N / M`` in the printed text, as (N, M)."""
    match = re.search(rf"^{what}: (\d+) / (\d+)$", text, re.MULTILINE)
    assert match, f"no '{what}: N / M' line in:\n{text}"
    return int(match[1]), int(match[2])


def test_notebooks_are_stored_without_outputs() -> None:
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert FIRST_NETWORK in notebooks
    for path in notebooks:
        nbformat.validate(nbformat.read(path, as_version=4))
        for index, cell in enumerate(code_cells(path)):
            where = f"{path.name}, code cell {index}"
            assert cell.outputs == [], f"{where} is stored with outputs: clear them"
            assert cell.execution_count is None, f"{where} is stored with an execution count"


def this_python_kernel(root: Path) -> str:
    """A kernel spec under ``root`` that starts this interpreter (not whichever ``python`` is
    first on PATH) with this repository first on its path, and no route to the internet."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": python_path, "MPLBACKEND": "agg"}
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[proxy] = UNREACHABLE_PROXY
    env["no_proxy"] = env["NO_PROXY"] = ""
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"mlp_digits tests ({sys.executable})",
        "language": "python",
        "env": env,
    }
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    return KERNEL


@pytest.fixture(scope="module")
def first_network_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The notebook executed once in memory (the file is not written), in notebooks/ as
    Jupyter runs it, with the probe after its last cell. Without the shared data its tests
    skip (fail under CI) before the kernel starts."""
    require_shared_data(SHARED_MNIST)
    root = tmp_path_factory.mktemp("jupyter")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(root))
        patch.setenv("JUPYTER_RUNTIME_DIR", str(root / "runtime"))
        patch.setenv("JUPYTER_PLATFORM_DIRS", "1")
        patch.setenv("IPYTHONDIR", str(root / "ipython"))
        nb = nbformat.read(FIRST_NETWORK, as_version=4)
        nb.cells.append(new_code_cell(PROBE))
        client = NotebookClient(
            nb,
            kernel_name=this_python_kernel(root),
            timeout=TIME_LIMIT,
            resources={"metadata": {"path": str(NOTEBOOKS)}},
        )
        start = time.monotonic()
        client.execute()  # a cell that raises fails here, with its traceback
        seconds = time.monotonic() - start
    probe = json.loads(stdout(nb.cells[-1]).strip().splitlines()[-1])
    return {"nb": nb, "seconds": seconds, "probe": probe}


@needs_shared_data(SHARED_MNIST)
def test_notebook_runs_every_cell_without_error_within_three_minutes(
    first_network_run: dict,
) -> None:
    nb = first_network_run["nb"]
    for index, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"code cell {index} raised {errors[0].ename}: {errors[0].evalue}"
    probe = first_network_run["probe"]
    assert probe["python"] == sys.executable
    assert Path(probe["package"]).is_relative_to(REPO)  # this repository's mlp_digits
    seconds = first_network_run["seconds"]
    print(f"notebook run: {seconds:.1f} s")
    assert seconds < TIME_LIMIT, f"the notebook took {seconds:.0f} s, over {TIME_LIMIT} s"


@needs_shared_data(SHARED_MNIST)
def test_notebook_prints_the_counts_of_its_trained_weights(first_network_run: dict) -> None:
    printed = stdout(tagged(first_network_run["nb"], "epoch"))
    probe = first_network_run["probe"]
    val, n_val = count(printed, "validation")
    test, n_test = count(printed, "test")
    assert n_val == probe["n_val"] == probe["val_size"]
    assert n_test == probe["n_test"]
    assert (val, test) == (probe["evaluate_val"], probe["evaluate_test"])
    # The book's network, float64 NumPy, at the same weights: only near ties may read otherwise.
    assert abs(test - probe["book_test"]) <= probe["near_ties"]
    # One epoch has taught it something: it reads more than it did at its start.
    assert val > probe["untrained_val"]


@needs_shared_data(SHARED_MNIST)
def test_notebook_backprop_agrees_with_autograd(first_network_run: dict) -> None:
    printed = stdout(tagged(first_network_run["nb"], "gradients"))
    match = re.search(r"BP1-BP4 vs autograd: (\S+)$", printed, re.MULTILINE)
    assert match, printed
    assert float(match[1]) < GRADIENT_TOLERANCE


@needs_shared_data(SHARED_MNIST)
def test_notebook_network_class_passes_the_checker(first_network_run: dict) -> None:
    probe = first_network_run["probe"]
    assert probe["report_passed"]
    assert probe["report_passed_checks"] == [
        "feedforward", "BP1", "BP2", "BP3", "BP4", "update_mini_batch"
    ]  # fmt: skip
    (shown,) = html_outputs(tagged(first_network_run["nb"], "check"))
    assert "PASS" in shown


@needs_shared_data(SHARED_MNIST)
def test_notebook_shows_the_page_of_the_trained_network(first_network_run: dict) -> None:
    (shown,) = html_outputs(tagged(first_network_run["nb"], "page"))
    match = re.search(r'<iframe srcdoc="([^"]*)"', shown)
    assert match, shown[:200]
    page = html.unescape(match[1])
    assert page.lstrip().lower().startswith("<!doctype html>")
    # The first layer's weights after the epoch, as the page stores them (float32, base64).
    assert f'"{first_network_run["probe"]["first_layer"]}"' in page

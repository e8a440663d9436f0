"""The house rules a newcomer can rely on: files with one job, functions that fit a screen,
scripts that only parse flags and call the package (see ../shared/STYLE.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "mlp_digits"
MODULE_LINES, FUNCTION_LINES, SCRIPT_LINES = 400, 60, 100


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def function_bodies(path: Path) -> list[tuple[str, int]]:
    """(name, lines of its body) of every function and method in a Python file."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body[1:] if ast.get_docstring(node) else node.body
            if body:
                found.append((node.name, body[-1].end_lineno - body[0].lineno + 1))
    return found


def js_function_bodies(text: str) -> list[tuple[str, int]]:
    """(name, lines between its braces) of every named function or arrow function whose body
    is a block, by matching braces (the page's scripts hold no braces in strings that would
    unbalance them: checked by the count of opening and closing ones)."""
    assert text.count("{") == text.count("}")
    found = []
    pattern = re.compile(
        r"(?:function\s+(\w+)\s*\([^)]*\)|(\w+)\s*[:=]\s*(?:async\s*)?(?:function\s*)?"
        r"\([^)]*\)\s*(?:=>)?)\s*\{"
    )
    for match in pattern.finditer(text):
        start, depth = match.end() - 1, 0
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found.append((match[1] or match[2], text.count("\n", start, i) - 1))
                break
    return found


def test_no_module_of_the_package_is_over_400_lines() -> None:
    long = {str(p.relative_to(REPO)): n for p in python_files(PACKAGE)
            if (n := len(p.read_text().splitlines())) > MODULE_LINES}  # fmt: skip
    assert long == {}


@pytest.mark.parametrize("folder", ["mlp_digits", "scripts"])
def test_no_function_body_is_over_60_lines(folder: str) -> None:
    long = {
        f"{p.relative_to(REPO)}:{name}": n
        for p in python_files(REPO / folder)
        for name, n in function_bodies(p)
        if n > FUNCTION_LINES
    }
    assert long == {}


def test_no_function_of_the_pages_javascript_is_over_60_lines() -> None:
    long = {
        f"{p.name}:{name}": n
        for p in sorted((PACKAGE / "page").glob("*.js"))
        for name, n in js_function_bodies(p.read_text())
        if n > FUNCTION_LINES
    }
    assert long == {}


def test_every_script_is_under_100_lines() -> None:
    long = {p.name: n for p in python_files(REPO / "scripts")
            if (n := len(p.read_text().splitlines())) >= SCRIPT_LINES}  # fmt: skip
    assert long == {}


def test_the_measure_of_a_function_counts_its_body() -> None:
    """The checkers themselves, on constructed code: a docstring and the def line are not body."""
    source = 'def f():\n    """Doc."""\n    a = 1\n    return a\n'
    path = Path(__file__).with_name("layout_probe.py")
    try:
        path.write_text(source)
        assert function_bodies(path) == [("f", 2)]
    finally:
        path.unlink()
    assert js_function_bodies("function g(a) {\n  x;\n  y;\n}\nconst h = (b) => {\n  z;\n};") == [
        ("g", 2),
        ("h", 1),
    ]

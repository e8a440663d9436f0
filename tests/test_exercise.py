"""mlp_digits.exercise and scripts/check_backprop.py: a learner's Network graded equation by
equation. Each known mistake, in a learner's file of its own (tests/learners/), is named at
the check and layer where it is made; correct files and the project's own book.py pass; a
file that cannot be checked is one line and exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import REPO, load_script

from mlp_digits import book, cli, exercise
from mlp_digits.exercise import child, grading, variants
from mlp_digits.exercise.problem import (
    MAIN_SIZES,
    SQUARE_SIZES,
    TOLERANCE,
    Reference,
    draw,
    relative_error,
)
from mlp_digits.exercise.reference import reference, references
from mlp_digits.exercise.report import CHECKS, Report

LEARNERS = REPO / "tests" / "learners"
SCRIPT = REPO / "scripts" / "check_backprop.py"
CHECK_KEYS = {"name", "layer", "passed", "mistake", "consequence", "message"}


def grade_file(name: str) -> Report:
    """A learner's file graded in this process (no child: fast, for files that return)."""
    path = LEARNERS / name
    cls = child.load_network_class(path, name)
    return grading.grade_class(cls, references(), str(path), name)


def line_of(path: Path, text: str) -> int:
    """The line number of the first line of ``path`` holding ``text``."""
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


# --- the reference and the variants ----------------------------------------------------


@pytest.mark.parametrize("sizes", [MAIN_SIZES, SQUARE_SIZES])
def test_the_reference_is_the_book_network_and_finite_differences_agree(
    sizes: tuple[int, ...],
) -> None:
    ref = reference(sizes)
    assert ref.fd_rel_error < 1e-6
    net = book.Network(ref.weights, ref.biases)
    for e, (x, y) in enumerate(zip(ref.xs, ref.ys)):
        nabla_b, nabla_w = net.backprop(x, y)
        for k in range(ref.n_layers):
            np.testing.assert_allclose(nabla_b[k], ref.nabla_b[e][k], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(nabla_w[k], ref.nabla_w[e][k], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(net.feedforward(x), ref.activations[e][-1], rtol=1e-12)


def book_online(ref: Reference, scale: float) -> list[np.ndarray]:
    """The parameters after stepping by −scale ∂C_x/∂w after each example, by book.py."""
    net = book.Network(ref.weights, ref.biases)
    for x, y in zip(ref.xs, ref.ys):
        nabla_b, nabla_w = net.backprop(x, y)
        net.weights = [w - scale * g for w, g in zip(net.weights, nabla_w)]
        net.biases = [b - scale * g for b, g in zip(net.biases, nabla_b)]
    return [*net.weights, *net.biases]


@pytest.mark.parametrize("sizes", [MAIN_SIZES, SQUARE_SIZES])
def test_every_known_variant_differs_clearly_from_the_right_answer_and_the_others(
    sizes: tuple[int, ...],
) -> None:
    """The checker's draw keeps the mistakes apart: each variant is far (> 1000 x the
    tolerance) from the right value and from every other variant of the same equation."""
    ref = reference(sizes)
    n = ref.n_layers
    deltas = {k: ref.columns(ref.nabla_b, k) for k in range(n)}
    params = [*ref.weights, *ref.biases]
    summed = [sum(g[k] for g in ref.nabla_w) for k in range(n)]
    summed += [sum(g[k] for g in ref.nabla_b) for k in range(n)]
    m = len(ref.xs)
    families = {"BP1": (variants.bp1(ref), deltas[n - 1])}
    for k in range(n):
        right_w = np.stack([g[k] for g in ref.nabla_w])
        families[f"BP3 {k}"] = (variants.bp3(ref, k, deltas), deltas[k])
        families[f"BP4 {k}"] = (variants.bp4(ref, k, deltas[k]), right_w)
        if k < n - 1:
            families[f"BP2 {k}"] = (variants.bp2(ref, k, deltas[k + 1]), deltas[k])
    step = variants.stepped(params, summed, ref.eta / m)
    found = variants.update(params, summed, lambda s: book_online(ref, s), ref.eta, m)
    families["update"] = (found, step)
    for name, (found, right) in families.items():
        values = [variants.flat(right), *(variants.flat(v.value) for v in found)]
        for i, a in enumerate(values):
            for b in values[i + 1 :]:
                assert relative_error(a, b) > 1000 * TOLERANCE, name
    ids = {v.mistake for found, _ in families.values() for v in found}
    if sizes == SQUARE_SIZES:  # every mistake can be told where every shape fits
        assert set(variants.MISTAKES) <= ids


# --- learners' files -----------------------------------------------------------------


MISTAKEN = [
    ("missing_sigma_prime.py", "BP1", 4),
    ("sigma_prime_of_activation.py", "BP2", 3),
    ("wrong_sign.py", "BP1", 4),
    ("not_transposed.py", "BP2", 3),
    ("wrong_layer.py", "BP4", 4),
    ("missing_bias_gradient.py", "BP3", 4),
    ("eta_not_divided.py", "update_mini_batch", 4),
    ("wrong_direction.py", "update_mini_batch", 4),
    ("online_update.py", "update_mini_batch", 4),
]


def test_there_is_a_learner_file_for_every_known_mistake() -> None:
    assert sorted(Path(f).stem for f, _, _ in MISTAKEN) == sorted(variants.MISTAKES)


@pytest.mark.parametrize(("name", "check", "layer"), MISTAKEN, ids=[m[0] for m in MISTAKEN])
def test_a_mistake_is_named_at_the_first_failing_check_and_the_rest_are_consequences(
    name: str, check: str, layer: int
) -> None:
    report = grade_file(name)
    assert [c.name for c in report.checks] == list(CHECKS)
    assert report.status == 1 and not report.passed
    first = CHECKS.index(check)
    assert all(c.passed for c in report.checks[:first]), str(report)
    failed = report.checks[first]
    assert (failed.passed, failed.layer, failed.consequence) == (False, layer, False)
    assert failed.mistake == Path(name).stem, str(report)
    for c in report.checks[first + 1 :]:  # later checks: right, or wrong only because of it
        assert c.passed or (c.consequence and c.mistake is None), str(report)
        if c.consequence and c.name.startswith("BP") and check.startswith("BP"):
            assert f"(see {check})" in c.message, str(report)  # the equation that failed
    assert report.mistakes == [failed]


def test_a_mistake_says_which_equation_and_what_it_should_be() -> None:
    message = grade_file("missing_sigma_prime.py").checks[1].message
    assert "BP1 is δᴸ = (aᴸ − y) ⊙ σ'(zᴸ)" in message and "sigmoid_prime(zs[-1])" in message
    bp2 = grade_file("missing_sigma_prime.py").checks[2]
    assert bp2.consequence and bp2.layer == 3 and "(see BP1)" in bp2.message


def test_a_transpose_that_raises_on_784_16_16_10_is_named_on_the_square_network() -> None:
    report = grade_file("not_transposed.py")
    bp2 = report.checks[2]
    path = LEARNERS / "not_transposed.py"
    line = line_of(path, "delta = np.dot(self.weights[-l + 1], delta)")
    assert "seen on a 12-12-12-12 network, where every shape fits" in bp2.message
    assert f"not_transposed.py:{line}: delta = np.dot(self.weights[-l + 1], delta)" in bp2.message
    assert "— ValueError: shapes (10,16) and (10,1) not aligned" in bp2.message
    assert "Traceback" not in str(report) and "mlp_digits" not in bp2.message
    assert report.checks[1].passed  # BP1 is right, seen on the square network


def test_the_16x16_layer_hides_a_wrong_activation_that_the_output_layer_shows() -> None:
    bp4 = grade_file("wrong_layer.py").checks[4]
    assert "on 784-16-16-10: nabla_w[2] has shape (10, 10); it should be (10, 16)" in bp4.message


@pytest.mark.parametrize("name", ["correct_loops.py", "correct_matrix.py"])
def test_correct_files_pass(name: str) -> None:
    report = grade_file(name)
    assert report.passed and report.status == 0, str(report)
    assert all(c.layer is None and c.mistake is None for c in report.checks)


class BookNetwork(book.Network):
    """The project's own book.py, built as a learner's Network(sizes) is."""

    def __init__(self, sizes: list[int]) -> None:
        weights, biases, _, _ = draw(tuple(sizes), seed=1)
        super().__init__(weights, biases)


def test_the_projects_own_book_network_passes_in_process() -> None:
    report = exercise.check(BookNetwork)
    assert report.passed, str(report)
    assert (
        str(report)
        .splitlines()[0]
        .endswith("PASS: feedforward, BP1-BP4 and update_mini_batch are right")
    )
    assert "<table>" in report._repr_html_() and report._repr_html_().count("<tr") == 7


def test_the_exercise_form_must_sum_over_the_mini_batchs_columns(tmp_path: Path) -> None:
    """backprop(X, Y) that leaves nabla_b as one column per example: right for one example,
    wrong for the mini-batch update_mini_batch gives it."""
    source = (LEARNERS / "correct_matrix.py").read_text()
    assert source.count("D.sum(axis=1, keepdims=True)") == 2
    path = tmp_path / "unsummed.py"
    path.write_text(source.replace("D.sum(axis=1, keepdims=True)", "D"))
    report = grading.grade_class(
        child.load_network_class(path, path.name), references(), str(path), path.name
    )
    bp3 = report.checks[3]
    assert (bp3.passed, bp3.layer, bp3.consequence) == (False, 4, False)
    assert "nabla_b[2] = Σₓ δˣ, the sum over the columns" in bp3.message
    assert [c.passed for c in report.checks[:3]] == [True] * 3 and report.checks[4].passed


# --- files that cannot be checked, in a child process --------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "no_class.py",
            "no class Network in it (it defines Net); the checker needs the book's Network(sizes)",
        ),
        (
            "no_update.py",
            "class Network has no update_mini_batch method; the checker calls feedforward, "
            "backprop, update_mini_batch",
        ),
        (
            "wrong_shape.py",
            "Network([784, 16, 16, 10]).weights[0] has shape (784, 16) (transposed); the "
            "book's is (n_out, n_in) = (16, 784)",
        ),
        (
            "raises_on_load.py",
            "the file raises while it is loaded: {path}:3: import mnist_loader # noqa: F401 — "
            "ModuleNotFoundError: No module named 'mnist_loader' (put what runs the network "
            'under if __name__ == "__main__":)',
        ),
        (
            "exits.py",
            "the file exits while it is loaded: {path}:14: SystemExit: done (put what runs the "
            'network under if __name__ == "__main__":)',
        ),
        ("crashes.py", "the process ended with exit status 3 in backprop(x, y)"),
        ("no_such_file.py", "no such file"),
    ],
)
def test_a_file_that_cannot_be_checked_is_one_line(name: str, expected: str) -> None:
    path = LEARNERS / name
    report = child.run_file(path, references())
    assert report.status == 2 and not report.passed
    text = str(report)
    assert text == f"{path}: cannot be checked: {expected.format(path=path)}"
    assert report.to_json()["checks"][0]["message"] == report.error


def test_a_syntax_error_is_one_line_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "typo.py"
    path.write_text("import numpy as np\n\n\nclass Network:\n    def feedforward(self, a)\n")
    report = child.run_file(path, references())
    assert report.status == 2
    assert report.error == f"{path}:5: SyntaxError: expected ':': def feedforward(self, a)"


def test_an_endless_loop_is_stopped_and_named(tmp_path: Path) -> None:
    report = child.run_file(LEARNERS / "endless_loop.py", references(), timeout=1.0)
    assert report.status == 2
    assert report.error == (
        "stopped after 1 s in backprop(x, y), which had not returned (an endless loop?)"
    )


def test_a_file_is_checked_in_a_child_process_as_in_this_one() -> None:
    by_child = exercise.check(LEARNERS / "missing_bias_gradient.py")
    assert by_child.to_json() == grade_file("missing_bias_gradient.py").to_json()


# --- the template --------------------------------------------------------------------


def test_the_template_fails_naming_each_todo_by_its_line(tmp_path: Path) -> None:
    path = exercise.write_template(tmp_path / "starter.py")
    with pytest.raises(FileExistsError):
        exercise.write_template(path)
    report = child.run_file(path, references())
    assert report.status == 1
    by_name = {c.name: c for c in report.checks}
    todo = line_of(path, 'raise NotImplementedError("TODO feedforward')
    assert by_name["feedforward"].message == (
        f"{path}:{todo}: NotImplementedError: TODO feedforward: a = sigmoid(w a + b)"
    )
    todo = line_of(path, 'raise NotImplementedError("TODO forward pass')
    assert by_name["BP1"].message.startswith(f"{path}:{todo}: NotImplementedError: TODO forward")
    assert all(by_name[n].consequence for n in ("BP2", "BP3", "BP4"))
    todo = line_of(path, "raise NotImplementedError(\"TODO: add backprop(x, y)'s")
    update = by_name["update_mini_batch"]
    assert (
        update.message.startswith(f"{path}:{todo}: NotImplementedError") and not update.consequence
    )


# --- the script ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script("check_backprop")


def run_in_process(script: ModuleType, *argv: str) -> int:
    p = cli.check_backprop_parser()
    return script.main(p.parse_args(argv), p)


def test_json_is_one_object_per_file_in_order_with_exactly_the_keys(
    script: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    files = ["correct_loops.py", "missing_sigma_prime.py", "no_class.py"]
    status = run_in_process(script, *(str(LEARNERS / f) for f in files), "--json")
    assert status == 2  # the worst of 0, 1 and 2
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["passed"] for o in objects] == [True, False, False]
    for o in objects:
        assert set(o) == {"passed", "checks"}
        assert all(set(c) == CHECK_KEYS for c in o["checks"])
    assert [c["name"] for c in objects[1]["checks"]] == list(CHECKS)
    bp1 = objects[1]["checks"][1]
    assert (bp1["layer"], bp1["mistake"], bp1["consequence"]) == (4, "missing_sigma_prime", False)
    assert [c["name"] for c in objects[2]["checks"]] == ["file"]


def test_the_exit_status_says_passed_failed_or_cannot_be_checked(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_in_process(script, str(LEARNERS / "correct_matrix.py")) == 0
    assert run_in_process(script, str(LEARNERS / "wrong_sign.py")) == 1
    assert "wrong_sign.py: FAIL, 1 mistake: BP1 wrong_sign" in capsys.readouterr().out
    starter = tmp_path / "starter.py"
    assert run_in_process(script, "--template", str(starter)) == 0
    assert capsys.readouterr().out.startswith(f"wrote {starter}")
    for argv in (["--template", str(starter)], []):  # an existing file; nothing to do
        with pytest.raises(SystemExit) as e:
            run_in_process(script, *argv)
        assert e.value.code == 2


def test_the_command_checks_several_files() -> None:
    files = [str(LEARNERS / f) for f in ("correct_loops.py", "eta_not_divided.py")]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *files, "--timeout", "30"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stderr == ""
    headlines = [line for line in result.stdout.splitlines() if line and line[0] != " "]
    assert headlines == [
        f"{files[0]}: PASS: feedforward, BP1-BP4 and update_mini_batch are right",
        f"{files[1]}: FAIL, 1 mistake: update_mini_batch eta_not_divided",
    ]

"""What the checker found: one ``Check`` per equation, in the order of the book's chapter 2,
and the ``Report`` of a file, readable as text, in Jupyter, or as JSON.

``--json`` prints ``Report.to_json()``: ``{"passed": bool, "checks": [{"name", "layer",
"passed", "mistake", "consequence", "message"}]}``. ``layer`` is the book's layer number l
(2 is the first hidden layer, L the output; weights[l - 2] feeds it), or null. A file that
cannot be checked has the one check ``"file"`` saying why.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any

CHECKS = ("feedforward", "BP1", "BP2", "BP3", "BP4", "update_mini_batch")
WHAT = {
    "feedforward": "aˡ = σ(wˡ aˡ⁻¹ + bˡ)",
    "BP1": "δᴸ = (aᴸ − y) ⊙ σ'(zᴸ)",
    "BP2": "δˡ = ((wˡ⁺¹)ᵀ δˡ⁺¹) ⊙ σ'(zˡ)",
    "BP3": "∂C/∂bˡ = δˡ",
    "BP4": "∂C/∂wˡ = δˡ (aˡ⁻¹)ᵀ",
    "update_mini_batch": "w → w − (η/m) Σₓ ∂Cₓ/∂w",
    "file": "",
}


@dataclass
class Check:
    """One equation's verdict: the first layer that fails (from the output back), the
    mistake's id when it is recognised, and whether it fails only because an earlier check
    did (``consequence``)."""

    name: str
    layer: int | None
    passed: bool
    mistake: str | None
    consequence: bool
    message: str
    by_shape: bool = field(default=False, repr=False)  # failed on a shape: worth the square net

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "by_shape"}

    def line(self) -> str:
        """The check as one line of the text report."""
        verdict = "pass" if self.passed else "FAIL"
        where = [f"layer {self.layer}"] if self.layer is not None and not self.passed else []
        if self.mistake:
            where.append(self.mistake)
        if self.consequence:
            where.append("a consequence")
        head = f"{', '.join(where)}: " if where else ""
        return f"  {self.name:<18} {verdict}  {head}{self.message}"


@dataclass
class Report:
    """The checks of one learner's file (or class); ``error`` when it cannot be checked."""

    source: str
    checks: list[Check] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.checks)

    @property
    def status(self) -> int:
        """The exit status: 0 every check passed, 1 one failed, 2 it cannot be checked."""
        return 2 if self.error is not None else 0 if self.passed else 1

    @property
    def mistakes(self) -> list[Check]:
        """The failed checks that are mistakes of their own (not consequences)."""
        return [c for c in self.checks if not c.passed and not c.consequence]

    def to_json(self) -> dict[str, Any]:
        """``--json``'s object: exactly ``passed`` and ``checks``."""
        if self.error is not None:
            checks = [Check("file", None, False, None, False, self.error).to_json()]
        else:
            checks = [c.to_json() for c in self.checks]
        return {"passed": self.passed, "checks": checks}

    def to_dict(self) -> dict[str, Any]:
        """Everything, for the child process to hand to its parent."""
        return {
            "source": self.source,
            "error": self.error,
            "checks": list(map(asdict, self.checks)),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        checks = [Check(**c) for c in data["checks"]]
        return cls(data["source"], checks, data["error"])

    def headline(self) -> str:
        if self.error is not None:
            return f"{self.source}: cannot be checked: {self.error}"
        if self.passed:
            return f"{self.source}: PASS: feedforward, BP1-BP4 and update_mini_batch are right"
        own = self.mistakes
        named = [f"{c.name} {c.mistake}" if c.mistake else c.name for c in own]
        following = sum(not c.passed and c.consequence for c in self.checks)
        tail = (
            "" if not following
            else "; 1 more check fails only as a consequence" if following == 1
            else f"; {following} more fail only as consequences"
        )  # fmt: skip
        mistakes = "1 mistake" if len(own) == 1 else f"{len(own)} mistakes"
        return f"{self.source}: FAIL, {mistakes}: {', '.join(named)}{tail}"

    def __str__(self) -> str:
        if self.error is not None:
            return self.headline()
        return "\n".join([self.headline(), *(c.line() for c in self.checks)])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython's plain text
        printer.text(str(self))

    def _repr_html_(self) -> str:  # Jupyter: a table, a failed check in red
        rows = []
        for c in self.checks:
            colour = "#1a7f37" if c.passed else "#b35900" if c.consequence else "#cf222e"
            verdict = "pass" if c.passed else "FAIL"
            details = [str(c.layer) if c.layer is not None else "", c.mistake or ""]
            cells = [c.name, html.escape(WHAT.get(c.name, "")), verdict, *details]
            cells.append(html.escape(c.message))
            rows.append(
                f'<tr style="color:{colour}">' + "".join(f"<td>{x}</td>" for x in cells) + "</tr>"
            )
        head = "".join(f"<th>{h}</th>" for h in ("check", "", "", "layer", "mistake", ""))
        table = f"<table><tr>{head}</tr>{''.join(rows)}</table>" if rows else ""
        return f"<p><b>{html.escape(self.headline())}</b></p>{table}"

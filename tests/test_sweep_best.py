"""Which epoch a sweep calls each network's best, and what its figures show of it.

The references are written here: a sequence of validation counts with ties and a later drop,
and results whose best epoch is not the last, so that "the last epoch" or "the latest of a
tie" would give other numbers.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from mlp_digits.sweep import report
from mlp_digits.sweep.grid import Config, Network
from mlp_digits.sweep.stack import StackedMLP


def validate(model: StackedMLP, val_correct: list[int], epoch_weight: float) -> None:
    """One epoch's end as the Trainer drives it: the counts, then the stack's bookkeeping.
    Every weight is set to ``epoch_weight`` first, so the kept weights name their epoch."""
    with torch.no_grad():
        for w in model.weights:
            w.fill_(epoch_weight)
    n = model.n_networks
    model.counts = {"val": torch.tensor(val_correct), "test": torch.zeros(n, dtype=torch.long)}
    model.cost_sums = {k: torch.zeros(n, dtype=torch.float64) for k in ("val", "test")}
    model.totals = {"val": 100, "test": 100}
    model.alive = torch.ones(n, sum(model.hparams.sizes[1:-1]), dtype=torch.bool)
    model.on_validation_epoch_end()


def test_each_network_keeps_the_first_epoch_of_its_highest_validation_count(
    monkeypatch,
) -> None:
    """Planted bug this catches: a tie replacing a network's best epoch (``>=`` for ``>``),
    as train.py's best checkpoint never does."""
    model = StackedMLP((784, 4, 10), [1.0, 1.0], [0, 1])
    trainer = SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn="validate"))
    monkeypatch.setattr(StackedMLP, "trainer", property(lambda self: trainer))
    # network 0: 50, 70, 70, 60 -> epoch 1; network 1: 40, 40, 90, 90 -> epoch 2
    for epoch, counts in enumerate([[50, 40], [70, 40], [70, 90], [60, 90]]):
        validate(model, counts, epoch_weight=float(epoch))

    assert model.best_epoch.tolist() == [1, 2]
    assert model.best_val_correct.tolist() == [70, 90]
    best_w, _ = model.best_parameters(0)
    assert float(best_w[0].unique()) == 1.0 and float(best_w[1].unique()) == 2.0


def result(index: int, test: list[float], val: list[float]) -> report.Result:
    net = Network(index, Config((784, 30, 10), 3.0, 10), seed=index)
    n = len(test)
    best = max(range(n), key=lambda e: (val[e], -e))
    return report.Result(
        net=net, val_accuracy=val, test_accuracy=test, val_cost=[0.1] * n, test_cost=[0.1] * n,
        train_cost=[0.1] * n, best_epoch=best, diverged_at=-1, steps_per_epoch=10, record={},
        position=index,
    )  # fmt: skip


def test_the_spread_shows_the_test_accuracy_at_the_best_validation_epoch() -> None:
    """Planted bug this catches: the spread figure plotting the final epoch's accuracy.
    Network 0 is best at epoch 1 (91.5 %) and ends at 80 %; network 1 is best at its last."""
    results = [
        result(0, test=[88.0, 91.5, 80.0], val=[89.0, 92.0, 81.0]),
        result(1, test=[85.0, 87.0, 90.25], val=[86.0, 88.0, 91.0]),
    ]
    figures = report.figures(results)
    (points,) = figures["spread"].axes[0].collections
    assert sorted(float(x) for x, _ in points.get_offsets()) == [90.25, 91.5]
    for fig in figures.values():
        report.plt.close(fig)

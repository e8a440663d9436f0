"""What a sweep leaves behind: the table, results.csv, figures, TensorBoard runs, an export
(``sweep.export``).

Two numbers per network, because the book quotes the second one:
    test accuracy at the best validation epoch   what a run honestly reaches (train.py's)
    best test accuracy over the epochs            "at its best epoch", the book's way
"""

from __future__ import annotations

import csv
import statistics
from argparse import Namespace
from dataclasses import dataclass, fields
from pathlib import Path

import matplotlib
from lightning.pytorch.loggers import TensorBoardLogger

from mlp_digits.config import Settings, layers
from mlp_digits.lightning.hparams import write_hparams
from mlp_digits.sweep.export import export
from mlp_digits.sweep.grid import Config, Network

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator  # noqa: E402

SETTINGS_COLUMNS = tuple(f.name for f in fields(Settings))  # each network's run
CSV_COLUMNS = (
    "network", "name", *SETTINGS_COLUMNS,
    "epochs", "best_epoch", "val_accuracy", "test_accuracy", "best_test_accuracy",
    "best_test_epoch", "final_test_accuracy", "train_cost", "diverged", "diverged_at_step",
)  # fmt: skip


@dataclass
class Result:
    """One network's record: per-epoch accuracies in %, costs, and where to find its weights."""

    net: Network
    val_accuracy: list[float]
    test_accuracy: list[float]
    val_cost: list[float]
    test_cost: list[float]
    train_cost: list[float]
    best_epoch: int  # by validation accuracy, the first of the highest; -1: none
    diverged_at: int  # SGD step; -1: never
    steps_per_epoch: int
    record: dict
    position: int  # the network's row in its record
    dead_fraction: float = float("nan")  # of its hidden neurons at the end, on validation

    @property
    def stalled(self) -> bool:
        """Diverged, or never above 20% on validation: stuck near the 10% of a guess."""
        return self.diverged or max(self.val_accuracy[: self.good_epochs], default=0) < 20

    def epochs_to(self, percent: float) -> int | None:
        """Epochs trained until validation accuracy first reached ``percent`` (None: never)."""
        reached = [e for e, a in enumerate(self.val_accuracy[: self.good_epochs]) if a >= percent]
        return reached[0] + 1 if reached else None

    @property
    def diverged(self) -> bool:
        return self.diverged_at >= 0

    @property
    def test_at_best(self) -> float:
        return self.test_accuracy[self.best_epoch] if self.best_epoch >= 0 else float("nan")

    @property
    def good_epochs(self) -> int:
        """Epochs finished before the network diverged (all of them if it did not)."""
        if not self.diverged:
            return len(self.test_accuracy)
        return (self.diverged_at - 1) // self.steps_per_epoch

    @property
    def best_test(self) -> tuple[float, int]:
        epochs = self.test_accuracy[: self.good_epochs]
        if not epochs:
            return float("nan"), -1
        best = max(range(len(epochs)), key=lambda e: (epochs[e], -e))
        return epochs[best], best


def collect(networks: list[Network], records: list[dict]) -> list[Result]:
    """Every network's Result, in grid order, from the stacks' saved records."""
    by_index = {}
    for record in records:
        history = record["history"]
        for j, index in enumerate(record["networks"]):
            by_index[index] = Result(
                net=networks[index],
                val_accuracy=(
                    history["val_correct"][:, j].double() * 100 / record["n_val"]
                ).tolist(),
                test_accuracy=(
                    history["test_correct"][:, j].double() * 100 / record["n_test"]
                ).tolist(),
                val_cost=history["val_cost"][:, j].tolist(),
                test_cost=history["test_cost"][:, j].tolist(),
                train_cost=history["train_cost"][:, j].tolist(),
                best_epoch=int(record["best_epoch"][j]),
                diverged_at=int(record["diverged_at"][j]),
                steps_per_epoch=record["steps_per_epoch"],
                record=record,
                position=j,
                dead_fraction=float(history["dead_fraction"][-1, j]),
            )
    return [by_index[n.index] for n in networks]


# --- the table ----------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    """``mean ± sd  min  max``, 28 characters."""
    if not values:
        return f"{'-':^28}"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):6.2f} ± {sd:5.2f} {min(values):6.2f} {max(values):6.2f}"


def by_config(results: list[Result]) -> dict[Config, list[Result]]:
    groups: dict[Config, list[Result]] = {}
    for r in results:
        groups.setdefault(r.net.config, []).append(r)
    return groups


def label_width(results: list[Result]) -> int:
    return max(30, *(len(r.net.config.label) for r in results))


def table(results: list[Result]) -> str:
    """One row per configuration: mean ± sd, min, max over its seeds of both numbers."""
    stats = f"{'mean ±    sd    min    max':>28}"
    w = label_width(results)
    lines = [
        f"{'':<{w}} {'':>5}  {'test % at best val epoch':^28}  {'best test % over epochs':^28}",
        f"{'configuration':<{w}} {'seeds':>5}  {stats}  {stats}  reference",
    ]
    for config, group in by_config(results).items():
        ok = [r for r in group if not r.diverged]
        honest = spread([r.test_at_best for r in ok])
        book = spread([r.best_test[0] for r in ok])
        note = f"{len(group) - len(ok)} diverged; " if len(ok) < len(group) else ""
        lines.append(
            f"{config.label:<{w}} {len(group):>5}  {honest}  {book}  {note}{config.reference}"
        )
    return "\n".join(lines)


def ease_table(results: list[Result], percent: float = 90.0) -> str:
    """What "easier to train" can mean, one row per configuration: epochs until validation
    first reached ``percent`` (median of the networks that did, and how many did), the best
    validation accuracy and the test accuracy at it, the networks that diverged or stalled
    (never above 20% on validation), and the hidden neurons dead at the end (a ReLU that
    no validation image activates)."""
    w = label_width(results)
    head = f"epochs to {percent:g}%"
    lines = [
        f"{'configuration':<{w}} {'seeds':>5}  {head:>15}  {'best val %':>10}  "
        f"{'test % at it':>15}  {'diverged/stalled':>16}  {'dead ReLU %':>11}"
    ]
    for config, group in by_config(results).items():
        reach = [e for r in group if (e := r.epochs_to(percent)) is not None]
        median = f"{statistics.median(reach):g}" if reach else "-"
        epochs = f"{median} ({len(reach)}/{len(group)})"
        ok = [r for r in group if not r.diverged and r.best_epoch >= 0]
        best_val = statistics.mean(r.val_accuracy[r.best_epoch] for r in ok) if ok else None
        tests = [r.test_at_best for r in ok]
        sd = statistics.stdev(tests) if len(tests) > 1 else 0.0
        test = f"{statistics.mean(tests):6.2f} ± {sd:5.2f}" if tests else "-"
        stalled = sum(r.stalled for r in group)
        dead = "-"
        if config.activation == "relu":
            dead = f"{100 * statistics.mean(r.dead_fraction for r in group):.1f}"
        lines.append(
            f"{config.label:<{w}} {len(group):>5}  {epochs:>15}  "
            f"{f'{best_val:.2f}' if best_val is not None else '-':>10}  {test:>15}  "
            f"{f'{stalled}/{len(group)}':>16}  {dead:>11}"
        )
    return "\n".join(lines)


def plain(settings: Settings) -> dict:
    """A network's settings for a table: the sizes written as the project writes them."""
    return {**settings.to_dict(), "sizes": layers(settings.sizes)}


def write_csv(path: Path, results: list[Result], args: Namespace) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in results:
            best_test, best_test_epoch = r.best_test
            val = r.val_accuracy[r.best_epoch] if r.best_epoch >= 0 else float("nan")
            settings = plain(r.net.settings(args))
            writer.writerow([
                r.net.index, r.net.name, *(settings[k] for k in SETTINGS_COLUMNS),
                len(r.test_accuracy),
                r.best_epoch, f"{val:.2f}", f"{r.test_at_best:.2f}", f"{best_test:.2f}",
                best_test_epoch, f"{r.test_accuracy[-1]:.2f}", f"{r.train_cost[-1]:.6f}",
                r.diverged, r.diverged_at if r.diverged else "",
            ])  # fmt: skip


# --- figures ------------------------------------------------------------------------------


def palette(i: int, n: int) -> tuple[float, ...]:
    """Colour i of n, each distinct: tab10 up to 10; beyond, tab20's ten strong colours first
    and then their pale pairs (in tab20's own order a colour's pair is its neighbour)."""
    if n <= 10:
        return plt.cm.tab10(i % 10)
    return plt.cm.tab20((2 * i) % 20 + (i // 10) % 2)


def figures(results: list[Result]) -> dict[str, plt.Figure]:
    """Test accuracy per epoch: each configuration's mean over its seeds with a min-max band,
    every network thin and faint behind it; the spread of the final (best-validation-epoch)
    accuracy per configuration; with several η, that accuracy against η on a log axis."""
    groups = by_config(results)
    colours = {c: palette(i, len(groups)) for i, c in enumerate(groups)}
    out = {
        "accuracy_per_epoch": accuracy_per_epoch(groups, colours),
        "spread": spread_figure(groups, colours),
    }
    if len({r.net.config.lr for r in results}) > 1:
        out["accuracy_vs_lr"] = accuracy_vs_lr(results)
    return out


def accuracy_per_epoch(groups: dict[Config, list[Result]], colours: dict) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for config, group in groups.items():
        colour = colours[config]
        for r in group:  # every network, thin and faint behind its configuration's band
            epochs = range(r.good_epochs)  # counted from 0, as train.py and results.csv do
            ax.plot(epochs, r.test_accuracy[: r.good_epochs], color=colour, lw=0.5, alpha=0.25,
                    gid="network")  # fmt: skip
        curves = [r.test_accuracy for r in group if not r.diverged]
        if not curves:
            continue
        by_epoch = list(zip(*curves))  # every network of the configuration, epoch by epoch
        epochs = range(len(by_epoch))
        mean = [statistics.mean(values) for values in by_epoch]
        ax.fill_between(epochs, [min(v) for v in by_epoch], [max(v) for v in by_epoch],
                        color=colour, alpha=0.2, lw=0, gid="band")  # fmt: skip
        ax.plot(epochs, mean, color=colour, lw=2, gid="mean",
                label=f"{config.label} (mean of {len(curves)}, band min-max)")  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set(xlabel="epoch", ylabel="test accuracy (%)",
           title="Test accuracy per epoch: each configuration's mean over its seeds")  # fmt: skip
    if len(groups) > 6:  # a long legend beside the curves, not over them
        fig.set_size_inches(13, 5.5)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
    else:
        ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def spread_figure(groups: dict[Config, list[Result]], colours: dict) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(groups) + 1.5))
    for y, (config, group) in enumerate(groups.items()):
        values = [r.test_at_best for r in group if not r.diverged]
        ax.scatter(values, [y] * len(values), color=colours[config], alpha=0.8, s=25)
    ax.set_yticks(range(len(groups)), [c.label for c in groups], fontsize=8)
    ax.set(xlabel="test accuracy at the best validation epoch (%)",
           title="Spread over seeds, one point per network")  # fmt: skip
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def accuracy_vs_lr(results: list[Result]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(8, 5))
    kinds = sorted({kind(r.net.config) for r in results})
    for i, name in enumerate(kinds):
        points = [(r.net.config.lr, r.test_at_best) for r in results
                  if kind(r.net.config) == name and not r.diverged]  # fmt: skip
        if points:
            ax.scatter(*zip(*points), label=name, alpha=0.7, s=20,
                       color=palette(i, len(kinds)))  # fmt: skip
    ax.set_xscale("log")
    # A tick at each η of the sweep, written as it was given: 0.3, 1, 3, not 3×10⁻¹.
    ax.set_xticks(sorted({r.net.config.lr for r in results}))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda lr, _: f"{lr:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set(xlabel="learning rate η", ylabel="test accuracy at best validation epoch (%)",
           title="Accuracy against η, one point per network")  # fmt: skip
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def kind(c: Config) -> str:
    """A configuration without its η: what one series of the accuracy-against-η plot shares."""
    return c.label.split(" η=")[0] + f" batch {c.batch_size}"


# --- TensorBoard, the whole report -------------------------------------------------------


def tensorboard_runs(folder: Path, results: list[Result], args: Namespace, pictures: dict) -> None:
    """A run per network (hyperparameters, per-epoch curves, test/accuracy at the end) and a
    ``summary`` run with the figures."""
    for r in results:
        logger = TensorBoardLogger(folder / "tensorboard", name="", version=r.net.name,
                                   default_hp_metric=False)  # fmt: skip
        writer = logger.experiment
        for e in range(len(r.val_accuracy)):
            step = (e + 1) * r.steps_per_epoch
            writer.add_scalar("val/accuracy", r.val_accuracy[e] / 100, step)
            writer.add_scalar("val/cost", r.val_cost[e], step)
            writer.add_scalar("train/epoch_cost", r.train_cost[e], step)
        writer.add_scalar(
            "test/accuracy", r.test_at_best / 100, len(r.val_accuracy) * r.steps_per_epoch
        )
        hparams = {**plain(r.net.settings(args)), "diverged": r.diverged}
        write_hparams(logger, hparams, ["val/accuracy", "val/cost", "test/accuracy"])
        writer.close()
    summary = TensorBoardLogger(folder / "tensorboard", name="", version="summary")
    for name, fig in pictures.items():
        summary.experiment.add_figure(f"sweep/{name}", fig, close=False)
    summary.experiment.close()


def report(folder: Path, results: list[Result], args: Namespace) -> None:
    """Print the table; write results.csv, the figures, the TensorBoard runs, the export."""
    text = table(results)
    if len({r.net.config.activation for r in results}) > 1 or args.preset == "relu":
        text += "\n\n" + ease_table(results)
    print(text, flush=True)
    (folder / "table.txt").write_text(text + "\n")
    write_csv(folder / "results.csv", results, args)
    pictures = figures(results)
    for name, fig in pictures.items():
        fig.savefig(folder / f"{name}.png", dpi=100)
    tensorboard_runs(folder, results, args, pictures)
    for fig in pictures.values():
        plt.close(fig)
    alive = [r for r in results if r.best_epoch >= 0 and not r.diverged] or results
    if args.export is not None:
        chosen = results[args.export]
    else:
        chosen = max(alive, key=lambda r: (r.val_accuracy[r.best_epoch], -r.net.index))
    path = folder / "export" / f"{chosen.net.name}.ckpt"
    export(chosen, path, args)
    print(f"Results: {folder / 'results.csv'}; figures: {folder}/*.png")
    print(f"Exported {chosen.net.name} (best validation epoch {chosen.best_epoch}): {path}")
    print(f"View them: tensorboard --logdir {folder / 'tensorboard'}")

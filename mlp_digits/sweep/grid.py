"""The sweep's grid: every combination of the listed values, one network each.

The grid is the product of ``--sizes``, ``--activation``, ``--init``, ``--lr``,
``--batch-size`` and ``--seeds``, in that order (or a preset's configurations, each at every
``--batch-size`` given, times the seeds); ``Network.index`` is a network's place in it, the
first column of results.csv. Networks with the same sizes, batch size and activation train
together as one stack (``group_stacks``, ``mlp_digits.sweep.stack``), whatever their η, init
and seed.
"""

from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass, replace

from mlp_digits.config import Settings, layers, lr_problem


@dataclass(frozen=True)
class Config:
    """What the networks of one row of the table share: everything but the seed."""

    sizes: tuple[int, ...]
    lr: float
    batch_size: int
    reference: str = ""  # the book's or the video's figure for it, if any
    activation: str = "sigmoid"  # of the hidden layers
    init: str = "gaussian"

    @property
    def layers(self) -> str:
        return layers(self.sizes)

    @property
    def label(self) -> str:
        extra = "" if self.activation == "sigmoid" else f" {self.activation}"
        extra += "" if self.init == "gaussian" else f" {self.init}"
        return f"{self.layers}{extra} η={self.lr:g} batch {self.batch_size}"


@dataclass(frozen=True)
class Network:
    index: int
    config: Config
    seed: int

    def settings(self, args: Namespace) -> Settings:
        """This network's run: the ``scripts/train.py`` settings it trains with (the rest of
        them are the sweep's flags, shared by every network)."""
        c = self.config
        return Settings(
            sizes=c.sizes, lr=c.lr, batch_size=c.batch_size, max_epochs=args.max_epochs,
            seed=self.seed, init=c.init, activation=c.activation, backprop=args.backprop,
            precision=str(args.precision), val_size=args.val_size,
        )  # fmt: skip

    @property
    def name(self) -> str:
        c = self.config
        extra = "" if c.activation == "sigmoid" else f"_{c.activation}"
        extra += "" if c.init == "gaussian" else f"_{c.init}"
        return f"net{self.index:04d}_{c.layers}{extra}_lr{c.lr:g}_b{c.batch_size}_seed{self.seed}"


BOOK_30 = "95.42% (book: best of 3 runs, best epoch)"
PRESETS: dict[str, list[Config]] = {
    "chapter1": [
        Config((784, 30, 10), 3.0, 10, BOOK_30),
        Config((784, 100, 10), 3.0, 10, "96.59% (book: one run, best epoch)"),
        Config((784, 100, 10), 0.001, 10, "11% -> 21% (book: epochs 0 -> 29)"),
        Config((784, 30, 10), 100.0, 10, "about 10% (book)"),
        Config((784, 10), 3.0, 10, "- (book's exercise: no hidden layer)"),
        Config((784, 16, 16, 10), 3.0, 10, "about 96% (video)"),
    ]
}
PRESETS["relu"] = [  # "ReLU is easier to train": sigmoid or ReLU hidden layers, each from the
    # book's N(0, 1) start and from the scaled one, over the η that suit each
    Config((784, 16, 16, 10), lr, 10, activation=f, init=init)
    for f, lrs in (("sigmoid", (0.3, 1.0, 3.0)), ("relu", (0.03, 0.1, 0.3, 1.0)))
    for init in ("gaussian", "scaled")
    for lr in lrs
]
# "About 96 %" (video 1): the book's defaults beside the recipe that a sweep within the book's
# method (quadratic cost, plain SGD, 60 epochs at most) chose by validation accuracy alone:
# η, batch size, init and activation were free (README, "What the videos claim, measured").
PRESETS["video"] = [
    Config((784, 16, 16, 10), 3.0, 10, "about 96% (video); the book's settings"),
    Config((784, 16, 16, 10), 0.1, 10, "chosen by validation", activation="relu", init="scaled"),
]
PRESET_SETS = ("sizes", "lr", "activation", "init")  # flags a preset replaces
PRESET_EPOCHS = {"video": 60}  # a preset's own --max-epochs, when the user gives none


def preset_epochs(args: Namespace) -> int:
    """The sweep's epochs: --max-epochs when given, else the preset's own, else the flag's."""
    given = "max_epochs" in getattr(args, "given", set())
    return args.max_epochs if given else PRESET_EPOCHS.get(args.preset or "", args.max_epochs)


# --- the grid -----------------------------------------------------------------------------


def parse_seeds(tokens: list[str]) -> list[int]:
    """``0-19 25`` -> 0, 1, ..., 19, 25; ValueError names the bad token."""
    seeds: list[int] = []
    for token in tokens:
        first, sep, last = token.partition("-")
        try:
            span = range(int(first), int(last) + 1) if sep and first else [int(token)]
        except ValueError:
            raise ValueError(f"--seeds {token}: give whole numbers or ranges like 0-19") from None
        if sep and first and not span:
            raise ValueError(f"--seeds {token}: an empty range (the first is above the last)")
        seeds.extend(span)
    return seeds


def no_duplicates(flag: str, values: list) -> None:
    seen = set()
    for v in values:
        if v in seen:
            shown = ",".join(map(str, v)) if isinstance(v, tuple) else f"{v:g}"
            raise ValueError(f"{flag}: {shown} is listed twice; list each value once")
        seen.add(v)


def build_grid(args: Namespace) -> list[Network]:
    """The networks of the sweep, in order; ValueError with one sentence for a bad grid.

    ``args`` as ``cli.sweep_parser`` parses them: every axis a list, ``args.given`` the flags
    the command line set.
    """
    seeds = parse_seeds(args.seeds)
    no_duplicates("--seeds", seeds)
    if args.preset:
        given = [f"--{k.replace('_', '-')}" for k in PRESET_SETS if k in args.given]
        if given:
            raise ValueError(
                f"--preset {args.preset} sets --sizes, --lr, --activation and --init, and the "
                f"preset wins: leave out {', '.join(given)}"
            )
        batch_sizes = args.batch_size if "batch_size" in args.given else None
        configs = [
            replace(c, batch_size=b)
            for c in PRESETS[args.preset]
            for b in batch_sizes or [c.batch_size]
        ]
    else:
        sizes = [tuple(s) for s in args.sizes]  # lists, when read back from sweep.json
        axes = [("--sizes", sizes), ("--lr", args.lr), ("--batch-size", args.batch_size),
                ("--activation", args.activation), ("--init", args.init)]  # fmt: skip
        for flag, values in axes:
            no_duplicates(flag, values)
        configs = [
            Config(s, lr, b, activation=f, init=i)
            for s in sizes
            for f in args.activation
            for i in args.init
            for lr in args.lr
            for b in args.batch_size
        ]
    for config in configs:
        problem = lr_problem(config.lr, str(args.precision))
        if problem:
            raise ValueError(problem)
    networks = [Network(0, c, s) for c in configs for s in seeds]
    if not networks:
        raise ValueError("the grid has no networks: give at least one value for every flag")
    return [Network(i, n.config, n.seed) for i, n in enumerate(networks)]


def group_stacks(networks: list[Network]) -> list[list[Network]]:
    """Networks with the same sizes, batch size and activation, in grid order: one stack each
    (η, the init and the seed may differ within a stack)."""
    stacks: dict[tuple, list[Network]] = {}
    for net in networks:
        c = net.config
        stacks.setdefault((c.sizes, c.batch_size, c.activation), []).append(net)
    return list(stacks.values())

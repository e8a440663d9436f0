"""Command-line flags, defined once for every script, with their defaults from ``config``.

A user's mistake ends in one line on stderr and exit status 2 (argparse's convention), and a
problem with the data in one line and exit status 1 — never in a traceback. Flags are parsed
before torch or Lightning is imported, so ``--help`` and a typo answer at once; a flag must
be spelt out (no abbreviations), and a misspelt one gets the closest matches.
"""

from mlp_digits.cli.checks import (
    check_accelerator,
    check_device_args,
    check_train_args,
    processes,
    run,
    uses_gpu,
)
from mlp_digits.cli.flags import (
    ACTIVATION_HELP,
    INIT_HELP,
    add_accelerator_flag,
    add_checkpoint_flag,
    add_data_flags,
    add_device_flags,
    add_logging_flags,
    add_model_flags,
    add_num_threads_flag,
    add_resume_flag,
    add_sizes_flag,
    add_val_size_flag,
)
from mlp_digits.cli.parser import (
    Formatter,
    Parser,
    SizesAction,
    count_or_fraction,
    non_negative_int,
    parse_sizes,
    positive_float,
    positive_int,
)
from mlp_digits.cli.parsers import (
    check_backprop_parser,
    draw_parser,
    evaluate_parser,
    export_parser,
    parse_evaluate_args,
    parse_train_args,
    predict_parser,
    sweep_parser,
    train_parser,
)

__all__ = [
    "ACTIVATION_HELP", "INIT_HELP", "Formatter", "Parser", "SizesAction", "add_accelerator_flag",
    "add_checkpoint_flag", "add_data_flags", "add_device_flags", "add_logging_flags",
    "add_model_flags", "add_num_threads_flag", "add_resume_flag", "add_sizes_flag",
    "add_val_size_flag", "check_accelerator", "check_backprop_parser", "draw_parser",
    "export_parser", "predict_parser", "check_device_args", "check_train_args",
    "count_or_fraction", "evaluate_parser", "non_negative_int", "parse_evaluate_args",
    "parse_sizes", "parse_train_args", "positive_float", "positive_int", "processes", "run",
    "sweep_parser", "train_parser", "uses_gpu",
]  # fmt: skip

"""``unstuck demo``: a few optimizers on the digits task, a table."""

from __future__ import annotations

import argparse
import sys

from unstuck.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    UsageError,
    name_list,
    positive_float,
    positive_int,
)

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unstuck demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="train a digits classifier with several optimizers and compare them",
        description=(
            "Train a small MLP on scikit-learn's 8x8 digits (no download) once per optimizer, "
            "from the same initial weights and batch order, and print final training loss, "
            "validation and test accuracy and time. Needs scikit-learn (pip install "
            "'unstuck[demo]')."
        ),
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=50,
        help="passes over the training data (default: 50)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of initial weights and batch order (default: 0)"
    )
    parser.add_argument(
        "--optimizers",
        type=name_list,
        default=None,
        metavar="NAMES",
        help="comma-separated subset of SGD,Adam,AdamW,RAdam,Ranger,LARS (default: all)",
    )
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="use this learning rate for every optimizer (default: a tuned one for each)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="mini-batch size (default: 64)"
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="print only the table, no progress"
    )
    parser.set_defaults(handler=run, command_parser=parser)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unstuck demo``."""
    from unstuck.lab import demo

    available = demo.default_optimizers(lr=args.lr)
    if args.optimizers is None:
        chosen = available
    else:
        by_lower = {name.lower(): name for name in available}
        unknown = [name for name in args.optimizers if name.lower() not in by_lower]
        if unknown:
            raise UsageError(
                f"--optimizers: unknown {', '.join(unknown)}; choose from {', '.join(available)}"
            )
        chosen = {by_lower[n.lower()]: available[by_lower[n.lower()]] for n in args.optimizers}

    def progress(report: demo.EpochReport) -> None:
        if report.epoch == report.epochs:
            print(
                f"  {report.optimizer}: {report.epochs} epochs, "
                f"last epoch loss {report.train_loss:.4f}",
                file=sys.stderr,
            )

    try:
        from unstuck.lab.tasks import digits_mlp

        task = digits_mlp()
    except ImportError as error:
        print(f"unstuck demo: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if not args.quiet:
        print(
            f"Training {task.name} ({task.description}) for {args.epochs} epochs with "
            f"{len(chosen)} optimizer(s)...",
            file=sys.stderr,
        )
    results = demo.run_demo(
        chosen,
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        task=task,
        progress=None if args.quiet else progress,
    )
    print(demo.format_table(results))
    return EXIT_OK

"""The ``unstuck`` command: ``unstuck demo`` now; ``compare``, ``surface``, ``doctor`` later.

Each subcommand is registered by one small ``_add_<name>`` function, listed in :data:`COMMANDS`,
that adds its parser and sets ``handler`` (a ``_run_<name>`` function) and ``command_parser``.
Handlers import what they need (the lab, scikit-learn) inside their body, so building the parser
stays cheap. Handlers return the exit status: 0 ok, 1 failure, 2 usage error (raise
:class:`UsageError` for that).

This is the only module that prints: progress to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from unstuck import __version__

__all__ = ["UsageError", "build_parser", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
unstuck: optimizers, schedules and diagnostics for PyTorch training that does not work yet.

The library (import unstuck) gives drop-in torch.optim optimizers (SGD, Adam, AdamW, RAdam,
Ranger, LARS, ...), gradient centralization and gradient tools. This command runs its
experiments from the shell.
"""

EPILOG = "Run 'unstuck COMMAND --help' for the options of one command."


class UsageError(Exception):
    """A command-line argument is invalid; ``main`` reports it and exits with status 2."""


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _name_list(text: str) -> list[str]:
    """argparse type: a comma-separated list of names (blanks dropped)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must name at least one, got {text!r}")
    return names


# --- demo -----------------------------------------------------------------------------------


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
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
        type=_positive_int,
        default=50,
        help="passes over the training data (default: 50)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of initial weights and batch order (default: 0)"
    )
    parser.add_argument(
        "--optimizers",
        type=_name_list,
        default=None,
        metavar="NAMES",
        help="comma-separated subset of SGD,Adam,AdamW,RAdam,Ranger,LARS (default: all)",
    )
    parser.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help="use this learning rate for every optimizer (default: a tuned one for each)",
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=64, help="mini-batch size (default: 64)"
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="print only the table, no progress"
    )
    parser.set_defaults(handler=_run_demo, command_parser=parser)


def _run_demo(args: argparse.Namespace) -> int:
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


# --- entry point ----------------------------------------------------------------------------

COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_demo,)
"""The registration functions of every subcommand, in ``--help`` order."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand in :data:`COMMANDS` registered."""
    parser = argparse.ArgumentParser(
        prog="unstuck",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"unstuck {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (``sys.argv[1:]`` when None); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and argparse's usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        print("unstuck: error: a command is required (see 'unstuck --help')", file=sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except UsageError as error:
        command_parser = getattr(args, "command_parser", parser)
        command_parser.print_usage(sys.stderr)
        print(f"{command_parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("unstuck: interrupted", file=sys.stderr)
        return 130

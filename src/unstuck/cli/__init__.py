"""The ``unstuck`` command: one module per subcommand (``demo``, ``schedule``, ``lr_find``, ...).

Each subcommand module has an ``add_parser(subparsers)`` function, listed in :data:`COMMANDS`,
that adds its parser and sets ``handler`` (the module's ``run(args)``) and ``command_parser``.
:mod:`unstuck.cli.common` holds what they share (exit codes, argument types, figure output).
Handlers import what they need (the lab, scikit-learn) inside their body, so building the parser
stays cheap. Handlers return the exit status: 0 ok, 1 failure, 2 usage error (raise
:class:`UsageError` for that).

The CLI is the only part of unstuck that prints: progress to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from unstuck import __version__
from unstuck.cli import compare, demo, doctor, lr_find, schedule, surface
from unstuck.cli.common import EXIT_USAGE, UsageError

__all__ = ["UsageError", "build_parser", "main"]

DESCRIPTION = """\
unstuck: optimizers, schedules and diagnostics for PyTorch training that does not work yet.

The library (import unstuck) gives drop-in torch.optim optimizers (SGD, Adam, AdamW, RAdam,
Ranger, LARS, ...), learning-rate schedules, gradient centralization and gradient tools. This
command runs its experiments from the shell.
"""

EPILOG = "Run 'unstuck COMMAND --help' for the options of one command."

COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    compare.add_parser,
    demo.add_parser,
    schedule.add_parser,
    lr_find.add_parser,
    surface.add_parser,
    doctor.add_parser,
)
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
    except BrokenPipeError:  # the reader went away (``unstuck ... | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that flushing at exit does not fail again
        return 141  # 128 + SIGPIPE, as a shell reports it

"""What every ``unstuck`` subcommand shares: exit codes, argument types, figure output."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from unstuck.files import figure_format, save_figure

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "add_figure_output",
    "check_output",
    "name_list",
    "non_negative_float",
    "positive_float",
    "positive_int",
    "write_figure",
]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

class UsageError(Exception):
    """A command-line argument is invalid; ``main`` reports it and exits with status 2."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    value = _number(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    value = _number(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def name_list(text: str) -> list[str]:
    """argparse type: a comma-separated list of names (blanks dropped)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must name at least one, got {text!r}")
    return names




def check_output(path: str, force: bool, *, figure: bool = True) -> None:
    """Refuse an output path that cannot be written, before any work is done (``figure``: it
    must also end in .png, .svg or .pdf)."""
    if os.path.isdir(path):
        raise UsageError(f"-o {path}: is a directory")
    if os.path.exists(path) and not force:
        raise UsageError(f"-o {path}: file exists; pass --force to overwrite it")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise UsageError(f"-o {path}: directory {directory} does not exist")
    if figure and figure_format(path) not in ("png", "svg", "pdf"):
        raise UsageError(f"-o {path}: must end in .png, .svg or .pdf")


def add_figure_output(parser: argparse.ArgumentParser) -> None:
    """The ``-o FILE`` and ``--force`` options of a command that draws a figure."""
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=None,
        help="write the figure to FILE (PNG; .svg and .pdf also work)",
    )
    parser.add_argument("--force", action="store_true", help="with -o, overwrite FILE if it exists")


def write_figure(command: str, draw: Callable[[], Any], path: str) -> bool:
    """Draw a figure and save it atomically to ``path``; on failure say why on stderr."""
    try:
        figure = draw()
    except ImportError as error:  # matplotlib missing: the message says what to install
        print(f"unstuck {command}: {error}", file=sys.stderr)
        return False
    try:
        save_figure(figure, path, overwrite=True)
    except OSError as error:
        print(f"unstuck {command}: cannot write {path}: {error}", file=sys.stderr)
        return False
    print(f"wrote {path}", file=sys.stderr)
    return True



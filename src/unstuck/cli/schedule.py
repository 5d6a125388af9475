"""``unstuck schedule``: evaluate, draw or print learning-rate schedules in the text form."""

from __future__ import annotations

import argparse
import csv
import sys
from typing import Any

from unstuck.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_figure_output,
    check_output,
    positive_float,
    positive_int,
    write_figure,
)

__all__ = ["add_parser"]


_SCHEDULE_NAMES = "@SCHEDULE_NAMES@"
"""Placeholder in ``unstuck schedule --help``, filled with the schedule names only when printed."""

SCHEDULE_DESCRIPTION = """\
Evaluate one or several learning-rate schedules, written in the text form below, at
optimizer steps 0..N-1. With -o, draw them in one figure (one labelled curve each, warm-up
shaded); with --csv, print step,lr rows (one lr column per schedule) on standard output; with
neither, print a short summary of each. Drawing needs matplotlib (pip install 'unstuck[plot]').
"""

SCHEDULE_EPILOG = f"""\
The text form:
  A schedule is written as a call, NAME(ARG, ..., KEY=VALUE, ...): the same text that
  repr() of a schedule prints. Combinators such as warmup take another schedule as their
  first argument. Each schedule gives a multiplier of the base learning rate at every
  optimizer step; the learning rate drawn is BASE * multiplier(step), for steps 0..N-1.
  Quote each TEXT for your shell: it holds parentheses, commas and spaces.

Examples:
  unstuck schedule "warmup(cosine(10000), 500)" --steps 10000 --lr 1e-3
  unstuck schedule "noam(d_model=512, warmup=4000)" --steps 20000 --lr 1 --csv
  unstuck schedule "one_cycle(1000)" "step_decay(100, gamma=0.5)" --steps 1000 \\
      --lr 0.1 --log -o schedules.png

Schedules (arguments by position or by name; defaults shown):
  {_SCHEDULE_NAMES}
"""


def _schedule_signatures() -> list[str]:
    """``NAME(ARG, KEY=DEFAULT, ...)`` of every schedule the text form can call, sorted."""
    import inspect

    from unstuck.schedules import SCHEDULES

    signatures = []
    for name, schedule in sorted(SCHEDULES.items()):
        arguments = [
            parameter.name
            if parameter.default is inspect.Parameter.empty
            else f"{parameter.name}={parameter.default!r}"
            for parameter in inspect.signature(schedule).parameters.values()
        ]
        signatures.append(f"{name}({', '.join(arguments)})")
    return signatures


class _ScheduleHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Fills in the schedule names when help is printed, so building the parser stays cheap."""

    def add_text(self, text: str | None) -> None:
        if text is not None and _SCHEDULE_NAMES in text:
            try:
                names = "\n  ".join(_schedule_signatures()) or "(none found)"
            except ImportError as error:  # a broken install should not break --help
                names = f"(unavailable: {error})"
            text = text.replace(_SCHEDULE_NAMES, names)
        super().add_text(text)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unstuck schedule``."""
    parser = subparsers.add_parser(
        "schedule",
        help="draw learning-rate schedules, or print them as CSV",
        description=SCHEDULE_DESCRIPTION,
        epilog=SCHEDULE_EPILOG,
        formatter_class=_ScheduleHelpFormatter,
    )
    parser.add_argument(
        "texts", nargs="+", metavar="TEXT", help="a schedule in the text form, e.g. 'cosine(1000)'"
    )
    parser.add_argument(
        "--steps", type=positive_int, required=True, metavar="N", help="evaluate steps 0..N-1"
    )
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=1.0,
        metavar="BASE",
        help="base learning rate the schedules multiply (default: 1, i.e. the multipliers)",
    )
    add_figure_output(parser)
    parser.add_argument(
        "--csv", action="store_true", help="print step,lr rows as CSV on standard output"
    )
    parser.add_argument("--log", action="store_true", help="draw the learning rate on a log axis")
    parser.add_argument("--title", default=None, help="title of the figure")
    parser.set_defaults(handler=run, command_parser=parser)




def run(args: argparse.Namespace) -> int:
    """Handler of ``unstuck schedule``."""
    from unstuck.schedules import ScheduleSyntaxError, parse

    if args.output is not None:
        check_output(args.output, args.force)

    schedules = {}
    for text in args.texts:
        try:
            schedules[text] = parse(text)
        except ScheduleSyntaxError as error:
            print(f"unstuck schedule: {error}", file=sys.stderr)
            return EXIT_USAGE
        except ValueError as error:  # a well-formed call with a bad argument (gamma <= 0, ...)
            print(f"unstuck schedule: {text}: {error}", file=sys.stderr)
            return EXIT_USAGE

    curves = {
        text: [args.lr * float(schedule(step)) for step in range(args.steps)]
        for text, schedule in schedules.items()
    }

    if args.output is not None:

        def draw() -> Any:
            from unstuck.plots import schedule_figure

            return schedule_figure(curves, base_lr=args.lr, log_scale=args.log, title=args.title)

        if not write_figure("schedule", draw, args.output):
            return EXIT_FAILURE

    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["step", *curves])
        for step in range(args.steps):
            writer.writerow([step, *(repr(curve[step]) for curve in curves.values())])
    elif args.output is None:
        print(_schedule_summary(curves))
    return EXIT_OK


def _schedule_summary(curves: dict[str, list[float]]) -> str:
    """One block per schedule: lr at step 0, the largest lr and its step, the final lr."""
    lines = []
    for text, curve in curves.items():
        peak_step = max(range(len(curve)), key=curve.__getitem__)
        lines += [
            text,
            f"  step 0: {curve[0]:.6g}   max: {curve[peak_step]:.6g} at step {peak_step}   "
            f"final (step {len(curve) - 1}): {curve[-1]:.6g}",
        ]
    return "\n".join(lines)
